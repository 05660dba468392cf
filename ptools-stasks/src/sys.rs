//! The one system call of this crate: allocating and mapping a task's share of an array
//! (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14+), through nix; no raw libc is left here.
//! Elsewhere, and with `--cfg ptools_stub` (the stub backends of the crates below), the
//! call is reported as unsupported and the master reserves the pages itself.

use std::io;

#[cfg(all(not(ptools_stub), target_os = "linux"))]
use nix::errno::Errno;

/// What reserving a share can report besides success.
#[derive(Debug)]
#[cfg_attr(
    any(ptools_stub, not(target_os = "linux")),
    expect(
        dead_code,
        reason = "only Linux reserves in the tasks; elsewhere: Unsupported"
    )
)]
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
#[cfg(all(not(ptools_stub), target_os = "linux"))]
pub(crate) unsafe fn populate_write(ptr: *mut u8, len: usize) -> Result<(), PopulateError> {
    if len == 0 {
        return Ok(());
    }
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    let start = ptr.map_addr(|a| a & !(page - 1));
    let end = (ptr.addr() + len).next_multiple_of(page);
    let Some(start) = std::ptr::NonNull::new(start.cast::<std::ffi::c_void>()) else {
        // Address 0 is never part of a live mapping: the caller broke the contract.
        return Err(PopulateError::Failed(io::Error::from(Errno::EFAULT)));
    };
    // SAFETY: the range is page-aligned and lies within a live mapping of this process
    // (the caller's promise); MADV_POPULATE_WRITE only faults pages in, it neither
    // changes their contents nor unmaps anything.
    let r = unsafe {
        nix::sys::mman::madvise(
            start,
            end - start.as_ptr().addr(),
            nix::sys::mman::MmapAdvise::MADV_POPULATE_WRITE,
        )
    };
    match r {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(PopulateError::Unsupported),
        Err(Errno::EFAULT | Errno::ENOSPC | Errno::ENOMEM) => Err(PopulateError::NoSpace),
        Err(e) => Err(PopulateError::Failed(e.into())),
    }
}

/// Elsewhere the master reserves: report "unsupported" so that it does.
///
/// # Safety
///
/// None needed; the signature matches the Linux version.
#[cfg(any(ptools_stub, not(target_os = "linux")))]
pub(crate) unsafe fn populate_write(_ptr: *mut u8, _len: usize) -> Result<(), PopulateError> {
    Err(PopulateError::Unsupported)
}
