//! Listing our segments and removing the stale ones (owner dead).

use crate::cfg::{Prefix, split_segment_name};
use crate::error::{Result, ShmError};
use crate::header::Header;
use crate::segment::{Found, header_bytes, inspect_object, remove_if_abandoned};
use crate::{ElemType, sys};

/// One ptools segment found in the system, as [`list_shm`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The system name, e.g. `/ptools_job-1_temps`.
    pub segment: String,
    /// The prefix part of the name.
    pub prefix: String,
    /// The array name part.
    pub name: String,
    /// The object's size in bytes, header included.
    pub size: u64,
    /// The element type, once the header is complete.
    pub elem: Option<ElemType>,
    /// The dims, once the header is complete.
    pub dims: Option<Vec<usize>>,
    /// The creator's pid.
    pub owner_pid: u32,
    /// Whether the creator is still running (same pid and same start time).
    pub owner_alive: bool,
}

/// Lists the ptools segments of this machine: objects named `ptools_*` that carry our
/// header. Anything else is not listed (and never touched by [`remove_stale_shm`]).
///
/// # Errors
///
/// [`ShmError::Unsupported`] where the system cannot enumerate shared memory (macOS);
/// [`ShmError::Os`] if `/dev/shm` cannot be read.
pub fn list_shm() -> Result<Vec<SegmentInfo>> {
    let names = sys::list_names()
        .ok_or(ShmError::Unsupported {
            what: "listing shared memory segments",
        })?
        .map_err(|e| ShmError::os("read_dir", "/dev/shm", e))?;
    let mut found: Vec<SegmentInfo> = names.iter().filter_map(|n| inspect(n)).collect();
    found.sort_by(|a, b| a.segment.cmp(&b.segment));
    Ok(found)
}

fn inspect(entry: &str) -> Option<SegmentInfo> {
    let (prefix, name) = split_segment_name(entry)?;
    let segment = format!("/{entry}");
    let fd = sys::open_existing(&segment, false).ok()?;
    let st = sys::stat(&fd).ok()?;
    let raw = header_bytes(&fd, st.size)?;
    let (owner_pid, owner_start) = Header::decode_owner(&raw)?;
    let (elem, dims) = Header::decode(&raw)
        .map(|h| (Some(h.elem), Some(h.dims)))
        .unwrap_or((None, None));
    Some(SegmentInfo {
        prefix: prefix.to_owned(),
        name: name.to_owned(),
        size: st.size,
        elem,
        dims,
        owner_pid,
        owner_alive: sys::process_alive(owner_pid, owner_start),
        segment,
    })
}

/// Removes the ptools segments whose owner is dead (its pid is gone, is a zombie, or
/// belongs to a newer process), optionally only those under `prefix`, and returns what it
/// removed. Segments of live owners and objects without our header are never touched.
///
/// A segment whose creator was told to [keep](crate::ShmArray::keep_on_drop) it counts as
/// stale once the creator has exited.
///
/// ```
/// use ptools_shm::{Prefix, remove_stale_shm};
/// // Nothing of this job is stale while the job runs.
/// let removed = remove_stale_shm(Some(&Prefix::job()))?;
/// assert!(removed.is_empty());
/// # Ok::<(), ptools_shm::ShmError>(())
/// ```
///
/// # Errors
///
/// As [`list_shm`]; a segment that vanishes meanwhile is not an error.
pub fn remove_stale_shm(prefix: Option<&Prefix>) -> Result<Vec<SegmentInfo>> {
    let mut removed = Vec::new();
    for info in list_shm()? {
        if info.owner_alive || prefix.is_some_and(|p| p.as_str() != info.prefix) {
            continue;
        }
        let Ok(fd) = sys::open_existing(&info.segment, false) else {
            continue;
        };
        // Under the object's lock, `remove_if_abandoned` re-checks that it is still ours
        // and stale and that the name still refers to it: a new owner may have taken the
        // name since we listed it. Only segments with our header were listed.
        let same_owner = sys::stat(&fd).is_ok_and(|st| {
            matches!(inspect_object(&fd, st.size),
                Found::Ours { pid, .. } if pid == info.owner_pid)
        });
        if same_owner && remove_if_abandoned(&info.segment, &fd)? {
            removed.push(info);
        }
    }
    Ok(removed)
}
