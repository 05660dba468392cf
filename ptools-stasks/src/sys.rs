//! The one system call of this crate: allocating and mapping a task's share of an array
//! (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+).

use std::io;

/// What reserving a share can report besides success.
#[derive(Debug)]
pub(crate) enum PopulateError {
    /// The kernel does not know `MADV_POPULATE_WRITE` (Linux before 5.14): `EINVAL`.
    Unsupported,
    /// The pages could not be allocated: `/dev/shm` is full (`EFAULT`, where a write
    /// would have raised `SIGBUS`; `ENOSPC`) or memory is short (`ENOMEM`).
    NoSpace,
    /// Any other failure.
    Failed(io::Error),
}

/// Allocates the pages under `[ptr, ptr + len)` (rounded out to whole pages) and maps them
/// writable in this process, without writing them. Unlike touching the pages, a full
/// `/dev/shm` is an error here, never a `SIGBUS` (madvise(2), `MADV_POPULATE_WRITE`).
///
/// # Safety
///
/// `[ptr, ptr + len)`, rounded out to whole pages, must lie within one live shared
/// mapping of this process (a mapping covers whole pages, so rounding out stays in it).
#[cfg(target_os = "linux")]
pub(crate) unsafe fn populate_write(ptr: *mut u8, len: usize) -> Result<(), PopulateError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    let start = ptr.map_addr(|a| a & !(page - 1));
    let end = (ptr.addr() + len).next_multiple_of(page);
    // SAFETY: the range is page-aligned and lies within a live mapping of this process
    // (the caller's promise); MADV_POPULATE_WRITE only faults pages in, it neither
    // changes their contents nor unmaps anything.
    let r = unsafe {
        libc::madvise(
            start.cast::<libc::c_void>(),
            end - start.addr(),
            libc::MADV_POPULATE_WRITE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) => Err(PopulateError::Unsupported),
        Some(libc::EFAULT | libc::ENOSPC | libc::ENOMEM) => Err(PopulateError::NoSpace),
        _ => Err(PopulateError::Failed(e)),
    }
}

/// Elsewhere the master reserves: report "unsupported" so that it does.
///
/// # Safety
///
/// None needed; the signature matches the Linux version.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn populate_write(_ptr: *mut u8, _len: usize) -> Result<(), PopulateError> {
    Err(PopulateError::Unsupported)
}
