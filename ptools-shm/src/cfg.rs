//! What an array is to be: [`ShmCfg`] (name, element type, dims), [`Dims`], and the
//! [`Prefix`] that keeps jobs apart. Everything here is checked before any system call.

use std::sync::OnceLock;

use crate::error::{Result, ShmError};
use crate::{ElemType, ShmElem, sys};

/// Most axes an array may have.
pub const MAX_RANK: usize = 8;

/// Longest array name accepted, in bytes, so that a name valid on one system is valid on
/// every one (the full segment name must also fit the system's limit).
pub const MAX_NAME_LEN: usize = 200;

/// Longest prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 32;

/// The environment variable that sets the job prefix, read once per process by
/// [`Prefix::job`]. Worker runtimes set it for their workers so that a job's processes
/// share one prefix.
pub const PREFIX_ENV: &str = "PTOOLS_SHM_PREFIX";

/// The dims of an array, row-major: the last axis varies fastest.
///
/// Built from a `usize` (one axis), an array, a slice or a `Vec`.
///
/// ```
/// use ptools_shm::Dims;
/// assert_eq!(Dims::from(5).as_slice(), &[5]);
/// assert_eq!(Dims::from([2, 3]).as_slice(), &[2, 3]);
/// assert_eq!(Dims::from(vec![4, 1, 2]).len(), 8);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dims(Vec<usize>);

impl Dims {
    /// The axes' lengths.
    pub fn as_slice(&self) -> &[usize] {
        &self.0
    }

    /// The number of elements (the product of the axes), saturating on overflow; a
    /// [`ShmCfg`] never holds dims whose product overflows.
    pub fn len(&self) -> usize {
        self.0
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the dims for `elem` and returns the data size in bytes.
    pub(crate) fn checked_bytes(&self, elem: ElemType) -> Result<u64> {
        let bad = |reason| ShmError::InvalidDims {
            dims: self.0.clone(),
            reason,
        };
        if self.0.is_empty() {
            return Err(bad("an array needs at least one axis"));
        }
        if self.0.len() > MAX_RANK {
            return Err(bad("more than 8 axes"));
        }
        if self.0.contains(&0) {
            return Err(bad("an axis of length zero"));
        }
        let len = self
            .0
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| bad("the element count overflows"))?;
        let bytes = len
            .checked_mul(elem.size() as u64)
            .filter(|b| b.checked_add(crate::header::HEADER_LEN as u64).is_some())
            .filter(|b| usize::try_from(*b).is_ok() && *b <= isize::MAX as u64)
            .ok_or_else(|| bad("the byte size overflows"))?;
        Ok(bytes)
    }
}

impl From<usize> for Dims {
    fn from(n: usize) -> Dims {
        Dims(vec![n])
    }
}

impl<const N: usize> From<[usize; N]> for Dims {
    fn from(d: [usize; N]) -> Dims {
        Dims(d.to_vec())
    }
}

impl From<&[usize]> for Dims {
    fn from(d: &[usize]) -> Dims {
        Dims(d.to_vec())
    }
}

impl From<Vec<usize>> for Dims {
    fn from(d: Vec<usize>) -> Dims {
        Dims(d)
    }
}

impl From<&Vec<usize>> for Dims {
    fn from(d: &Vec<usize>) -> Dims {
        Dims(d.clone())
    }
}

/// One shared array to create or attach: its name, element type and dims
/// (PTools.jl's `ShmCfg(name, type, dims)`).
///
/// ```
/// use ptools_shm::{ElemType, ShmCfg};
/// let cfg = ShmCfg::new::<f64>("temperature", [100, 200])?;
/// assert_eq!(cfg.elem(), ElemType::F64);
/// assert_eq!(cfg.len(), 20_000);
/// assert!(ShmCfg::new::<u8>("a/b", 10).is_err());
/// assert!(ShmCfg::new::<u8>("zero", [3, 0]).is_err());
/// # Ok::<(), ptools_shm::ShmError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShmCfg {
    name: String,
    elem: ElemType,
    dims: Dims,
    bytes: u64,
}

impl ShmCfg {
    /// A configuration for an array of `T` named `name` with the given dims.
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`] for an empty name or one holding `/` or NUL, or one longer
    /// than [`MAX_NAME_LEN`]; [`ShmError::InvalidDims`] for no axis, more than
    /// [`MAX_RANK`] axes, an axis of length zero, or a size that overflows.
    pub fn new<T: ShmElem>(name: impl Into<String>, dims: impl Into<Dims>) -> Result<ShmCfg> {
        ShmCfg::with_elem(name, T::ELEM, dims)
    }

    /// Like [`ShmCfg::new`], with the element type given as a value.
    ///
    /// # Errors
    ///
    /// As [`ShmCfg::new`].
    pub fn with_elem(
        name: impl Into<String>,
        elem: ElemType,
        dims: impl Into<Dims>,
    ) -> Result<ShmCfg> {
        let name = name.into();
        check_name(&name)?;
        let dims = dims.into();
        let bytes = dims.checked_bytes(elem)?;
        Ok(ShmCfg {
            name,
            elem,
            dims,
            bytes,
        })
    }

    /// The array's name (without prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The element type.
    pub fn elem(&self) -> ElemType {
        self.elem
    }

    /// The dims, row-major.
    pub fn dims(&self) -> &[usize] {
        self.dims.as_slice()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.dims.len()
    }

    /// Always false: a configuration has at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The size of the data in bytes (the segment adds a small header).
    pub fn data_bytes(&self) -> u64 {
        self.bytes
    }
}

fn check_name(name: &str) -> Result<()> {
    let bad = |reason| ShmError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.contains('/') {
        return Err(bad("contains '/'"));
    }
    if name.contains('\0') {
        return Err(bad("contains NUL"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 200 bytes"));
    }
    Ok(())
}

/// The prefix that keeps the segments of one job apart from every other job's:
/// segments are named `/ptools_<prefix>_<name>`.
///
/// [`Prefix::job`] is unique per job by default; [`Prefix::new`] picks one explicitly so
/// that independent programs can meet on the same arrays.
///
/// ```
/// use ptools_shm::Prefix;
/// let p = Prefix::new("sim-42")?;
/// assert_eq!(p.as_str(), "sim-42");
/// assert!(Prefix::new("has_underscore").is_err());
/// assert_eq!(Prefix::job(), Prefix::job());
/// # Ok::<(), ptools_shm::ShmError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// An explicit prefix: 1 to 32 bytes of `[A-Za-z0-9.-]`. The underscore is excluded so
    /// that `ptools_<prefix>_<name>` splits back into prefix and name unambiguously.
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidPrefix`] for an empty or too long prefix or a character outside
    /// that set.
    pub fn new(prefix: impl Into<String>) -> Result<Prefix> {
        let prefix = prefix.into();
        let bad = |reason| ShmError::InvalidPrefix {
            prefix: prefix.clone(),
            reason,
        };
        if prefix.is_empty() {
            return Err(bad("empty"));
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(bad("longer than 32 bytes"));
        }
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(bad("only ASCII letters, digits, '.' and '-' are allowed"));
        }
        Ok(Prefix(prefix))
    }

    /// This job's prefix: the value of `PTOOLS_SHM_PREFIX` when it is set (an invalid
    /// value is reported on stderr and ignored), otherwise `j<pid>-<start time>` of this
    /// process in hex, which no other live or earlier process shares. Computed once per
    /// process; a forked child keeps its parent's (it belongs to the same job).
    pub fn job() -> Prefix {
        static JOB: OnceLock<Prefix> = OnceLock::new();
        JOB.get_or_init(|| {
            if let Some(v) = std::env::var_os(PREFIX_ENV) {
                match v.into_string().map(Prefix::new) {
                    Ok(Ok(p)) => return p,
                    // Workers that silently fell back to a private prefix would fail later
                    // with a puzzling NotFound; say why here, once.
                    Ok(Err(e)) => eprintln!("ptools-shm: ignoring {PREFIX_ENV}: {e}"),
                    Err(v) => eprintln!("ptools-shm: ignoring {PREFIX_ENV}={v:?}: not UTF-8"),
                }
            }
            let pid = std::process::id();
            let start = sys::process_start_time(pid).unwrap_or(0);
            Prefix(format!("j{pid:x}-{start:x}"))
        })
        .clone()
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The system name of array `name` under this prefix, e.g. `/ptools_sim-42_temps`.
    pub fn segment_name(&self, name: &str) -> String {
        // Pieces pushed into one allocation: `format!` costs a segment's creation about as
        // much as one of its system calls.
        let mut full = String::with_capacity(9 + self.0.len() + name.len());
        for piece in ["/ptools_", &self.0, "_", name] {
            full.push_str(piece);
        }
        sys::os_name(full)
    }
}

impl Default for Prefix {
    fn default() -> Prefix {
        Prefix::job()
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits a `/dev/shm` entry `ptools_<prefix>_<name>` into prefix and name.
pub(crate) fn split_segment_name(entry: &str) -> Option<(&str, &str)> {
    let rest = entry.strip_prefix("ptools_")?;
    let (prefix, name) = rest.split_once('_')?;
    (!prefix.is_empty() && !name.is_empty()).then_some((prefix, name))
}

/// Checks a whole set: every name valid (done by `ShmCfg`), no repeats, every full
/// segment name within the system's limit. Returns the segment names.
pub(crate) fn segment_names(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(cfgs.len());
    for (i, cfg) in cfgs.iter().enumerate() {
        if cfgs[..i].iter().any(|c| c.name == cfg.name) {
            return Err(ShmError::DuplicateName {
                name: cfg.name.clone(),
            });
        }
        names.push(segment_name(cfg, prefix)?);
    }
    Ok(names)
}

/// The segment name of one array, checked against the system's limit.
pub(crate) fn segment_name(cfg: &ShmCfg, prefix: &Prefix) -> Result<String> {
    let full = prefix.segment_name(&cfg.name);
    if full.len() - 1 > sys::MAX_NAME_LEN {
        return Err(ShmError::NameTooLong {
            name: full,
            max: sys::MAX_NAME_LEN,
        });
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(matches!(
            ShmCfg::new::<u8>("", 1),
            Err(ShmError::InvalidName { .. })
        ));
        assert!(matches!(
            ShmCfg::new::<u8>("a\0b", 1),
            Err(ShmError::InvalidName { .. })
        ));
        assert!(matches!(
            ShmCfg::new::<u8>("x".repeat(201), 1),
            Err(ShmError::InvalidName { .. })
        ));
        assert!(ShmCfg::new::<u8>("x".repeat(200), 1).is_ok());
        assert!(ShmCfg::new::<u8>("with_underscore and space", 1).is_ok());
    }

    #[test]
    fn dims_are_checked() {
        let err = |d: Vec<usize>| ShmCfg::new::<f64>("a", d).unwrap_err();
        assert!(matches!(err(vec![]), ShmError::InvalidDims { .. }));
        assert!(matches!(err(vec![1; 9]), ShmError::InvalidDims { .. }));
        assert!(matches!(err(vec![4, 0]), ShmError::InvalidDims { .. }));
        assert!(matches!(
            err(vec![usize::MAX, 2]),
            ShmError::InvalidDims { .. }
        ));
        // Fits as an element count, overflows as bytes.
        assert!(matches!(
            err(vec![usize::MAX / 4]),
            ShmError::InvalidDims { .. }
        ));
        assert_eq!(
            ShmCfg::new::<f64>("a", [3, 4]).unwrap().data_bytes(),
            3 * 4 * 8
        );
    }

    #[test]
    fn duplicate_names_in_a_set_are_refused() {
        let p = Prefix::new("t").unwrap();
        let cfgs = [
            ShmCfg::new::<u8>("a", 1).unwrap(),
            ShmCfg::new::<f32>("a", 2).unwrap(),
        ];
        assert!(matches!(
            segment_names(&cfgs, &p),
            Err(ShmError::DuplicateName { .. })
        ));
    }

    #[test]
    fn segment_names_split_back() {
        let p = Prefix::new("job-1.x").unwrap();
        let full = p.segment_name("my_array");
        if cfg!(target_os = "linux") {
            assert_eq!(full, "/ptools_job-1.x_my_array");
            assert_eq!(
                split_segment_name(&full[1..]),
                Some(("job-1.x", "my_array"))
            );
        }
        assert_eq!(split_segment_name("ptools_x"), None);
        assert_eq!(split_segment_name("other_x_y"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // reads /proc for the job prefix
    fn prefixes_are_checked() {
        for bad in ["", "a_b", "a/b", "é", &"p".repeat(33)] {
            assert!(
                matches!(Prefix::new(bad), Err(ShmError::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
        let job = Prefix::job();
        assert!(Prefix::new(job.as_str()).is_ok(), "the job prefix is valid");
    }
}
