//! `pfork_shm`: children write into shared arrays that the parent creates before forking and
//! gets back afterwards.
//!
//! The arrays are created by the parent as one `ShmSet` (all or none) under a prefix unique to
//! the run, before any fork. Every child inherits the mapping (`MAP_SHARED`), so its writes are
//! the parent's; a child never unlinks (it leaves with `_exit`, and a set's drop unlinks only in
//! the creating pid anyway). The parent's set unlinks the segments when it is dropped: at once
//! when the run fails, or when the caller drops what was returned.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use ptools_shm::{Prefix, ShmCfg, ShmSet};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ChildError, Pfork, PforkError, all_ok, parent};

/// Forks `n` children; child `i` runs `f(i, &mut set)` on shared arrays made from `cfgs`; returns
/// the arrays, holding every child's writes.
///
/// Children should write disjoint parts of the arrays (row `i`, a tile): the processes run in
/// parallel, and the borrow checker sees only one of them. A child uses the set it is given:
/// it already maps the arrays, so attaching them again by name is refused by ptools-shm
/// (`ShmError::AlreadyMapped`).
///
/// # Examples
///
/// ```
/// use ptools_shm::ShmCfg;
///
/// let cfgs = [ShmCfg::new::<f64>("out", [4, 100])?, ShmCfg::new::<u8>("done", 4)?];
/// let scale = 0.5; // captured, like any data of the parent
/// let set = ptools_fork::pfork_shm(&cfgs, 4, |i, set| {
///     let out = set.get_mut::<f64>("out").expect("configured above");
///     for (j, x) in out[i * 100..(i + 1) * 100].iter_mut().enumerate() {
///         *x = scale * (i * 100 + j) as f64;
///     }
///     set.get_mut::<u8>("done").expect("configured above")[i] = 1;
/// })?;
/// let out = set.get::<f64>("out")?;
/// assert_eq!(out.dims(), &[4, 100]);
/// assert_eq!(out[399], 199.5);
/// assert_eq!(&set.get::<u8>("done")?[..], &[1, 1, 1, 1]);
/// drop(set); // unlinks the segments
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`PforkError::Shm`] if the arrays cannot be created (nothing is forked then);
/// [`PforkError::Children`] with every outcome if any child failed (the arrays are unlinked
/// then: use [`Pfork::run_shm`] to keep them); [`PforkError::Threaded`],
/// [`PforkError::Nested`] and [`PforkError::Unsupported`] as for [`pfork`](crate::pfork).
pub fn pfork_shm<F>(cfgs: &[ShmCfg], n: usize, f: F) -> Result<ShmSet, PforkError<()>>
where
    F: Fn(usize, &mut ShmSet),
{
    let (set, outcomes) = Pfork::new().run_shm(cfgs, n, f)?;
    all_ok(outcomes)?;
    Ok(set)
}

impl Pfork {
    /// The prefix under which [`run_shm`](Self::run_shm) creates its arrays. Default: a prefix
    /// unique to each run, made from the job's prefix ([`Prefix::job`]), the pid and a counter,
    /// so runs never collide, even nested ones.
    pub fn shm_prefix(mut self, prefix: Prefix) -> Self {
        self.shm_prefix = Some(prefix);
        self
    }

    /// Creates shared arrays from `cfgs`, forks `n` children (child `i` runs `f(i, &mut set)`)
    /// and returns the arrays with one outcome per child. The arrays are returned whatever the
    /// children did, so what the successful ones wrote can be used.
    ///
    /// # Errors
    ///
    /// [`PforkError::Shm`] if the arrays cannot be created; the errors of
    /// [`run`](Self::run). Nothing is forked in these cases, and nothing is left in
    /// `/dev/shm`.
    #[allow(clippy::type_complexity)]
    pub fn run_shm<R, F>(
        &self,
        cfgs: &[ShmCfg],
        n: usize,
        f: F,
    ) -> Result<(ShmSet, Vec<Result<R, ChildError>>), PforkError<R>>
    where
        F: Fn(usize, &mut ShmSet) -> R,
        R: Serialize + DeserializeOwned,
    {
        self.check()?;
        let prefix = match &self.shm_prefix {
            Some(prefix) => prefix.clone(),
            None => run_prefix()?,
        };
        let set = RefCell::new(ShmSet::create(cfgs, &prefix)?);
        let outcomes = if n == 0 {
            Vec::new()
        } else {
            // Each child borrows its own copy of the cell; the parent holds no borrow while
            // forking, so the borrow cannot fail.
            parent::run(self, n, &|i| f(i, &mut set.borrow_mut()))
        };
        Ok((set.into_inner(), outcomes))
    }
}

/// A prefix unique to this run: the job's prefix, this process's pid (a nested run's pid
/// differs from its parent's) and a counter; a shorter form if that is over the length limit.
fn run_prefix() -> Result<Prefix, ptools_shm::ShmError> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Prefix::new(format!("{}.{pid:x}.{run:x}", Prefix::job().as_str()))
        .or_else(|_| Prefix::new(format!("pf.{pid:x}.{run:x}")))
}
