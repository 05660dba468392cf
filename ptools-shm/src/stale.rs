//! Listing our segments and removing the stale ones (owner dead).

use crate::cfg::{Prefix, split_segment_name};
use crate::error::{Result, ShmError};
use crate::header::{HEADER_LEN, Header};
use crate::segment::{read_owner, remove_if_same};
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
    let (owner_pid, owner_start) = read_owner(&fd)?;
    let st = sys::stat(&fd).ok()?;
    let (elem, dims) = full_header(&fd, st.size)
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

fn full_header(fd: &std::os::fd::OwnedFd, size: u64) -> Option<Header> {
    if size < HEADER_LEN as u64 {
        return None;
    }
    let base = sys::map(fd, HEADER_LEN, false, false).ok()?;
    let mut raw = [0u8; HEADER_LEN];
    // SAFETY: a fresh read-only mapping of HEADER_LEN bytes of an object at least that
    // long; the bytes are copied out (any bytes are valid u8) and the mapping is dropped.
    unsafe {
        std::ptr::copy_nonoverlapping(base.as_ptr(), raw.as_mut_ptr(), HEADER_LEN);
        let _ = sys::unmap(base, HEADER_LEN);
    }
    Header::decode(&raw).ok()
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
        // Re-check under the object's lock that it is still the same, still ours and still
        // stale: a new owner may have taken the name since we listed it.
        let still_stale = read_owner(&fd)
            .is_some_and(|(pid, start)| pid == info.owner_pid && !sys::process_alive(pid, start));
        if still_stale && remove_if_same(&info.segment, &fd)? {
            removed.push(info);
        }
    }
    Ok(removed)
}
