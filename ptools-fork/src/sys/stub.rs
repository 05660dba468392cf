//! The backend of targets pfork does not support (Unix targets other than Linux and macOS,
//! and any target built with `--cfg ptools_stub`): no system call. [`can_fork`] fails with
//! `ErrorKind::Unsupported`, and every run checks it before anything else, so nothing
//! below is reached; it fails or does nothing all the same.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::{Forked, pid_t};

fn unsupported() -> io::Error {
    io::Error::from(io::ErrorKind::Unsupported)
}

/// No fork here: every run fails with `PforkError::Unsupported`.
pub(crate) fn can_fork() -> io::Result<()> {
    Err(unsupported())
}

/// No fork here.
///
/// # Safety
///
/// None needed here; the signature matches the real backend's.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    Err(unsupported())
}

/// No child is ever forked here, so this is never a child's way out; it ends the process
/// with `code` all the same.
pub(crate) fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}

/// No pipes here.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Err(unsupported())
}

/// Unreachable without a pipe; fails like the rest.
pub(crate) fn read(_fd: BorrowedFd<'_>, _buf: &mut [u8]) -> io::Result<usize> {
    Err(unsupported())
}

/// Unreachable without a pipe; fails like the rest.
pub(crate) fn read_append(
    _fd: BorrowedFd<'_>,
    _buf: &mut Vec<u8>,
    _max: usize,
) -> io::Result<usize> {
    Err(unsupported())
}

/// Unreachable without a pipe; fails like the rest.
pub(crate) fn write_all(_fd: BorrowedFd<'_>, _buf: &[u8]) -> io::Result<()> {
    Err(unsupported())
}

/// A poll entry that is never polled.
#[derive(Debug)]
pub(crate) struct PollFd<'fd>(PhantomData<BorrowedFd<'fd>>);

/// A poll entry for `fd`.
pub(crate) fn poll_in(_fd: BorrowedFd<'_>) -> PollFd<'_> {
    PollFd(PhantomData)
}

/// Nothing was polled, so nothing was seen.
pub(crate) fn poll_saw(_pfd: &PollFd<'_>) -> bool {
    false
}

/// No poll here.
pub(crate) fn poll(_fds: &mut [PollFd<'_>], _timeout_ms: libc::c_int) -> io::Result<usize> {
    Err(unsupported())
}

/// A common page size; nothing is mapped here.
pub(crate) fn page_size() -> usize {
    4096
}

/// No mappings here: the caller keeps its state on the heap.
pub(crate) fn map_wipe_on_fork(_len: usize) -> Option<std::ptr::NonNull<u8>> {
    None
}

/// Never called: [`map_wipe_on_fork`] maps nothing here.
///
/// # Safety
///
/// None needed here; the signature matches the real backend's.
pub(crate) unsafe fn unmap(_base: std::ptr::NonNull<u8>, _len: usize) {}

/// This process's id, from the standard library.
pub(crate) fn getpid() -> pid_t {
    std::process::id() as pid_t
}

/// Never called: no child exists here. Says the parent is gone.
pub(crate) fn die_with_parent(_parent: pid_t) -> bool {
    false
}

/// Nothing is forked, so no C stdio output could be written twice.
pub(crate) fn flush_c_stdio() {}

/// Never called: no child exists here.
pub(crate) fn flush_c_stdout() {}

/// Unknown.
pub(crate) fn thread_count() -> Option<usize> {
    None
}
