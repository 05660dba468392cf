//! The backend of targets ptools does not support (and of any target built with
//! `--cfg ptools_stub`): no system call of its own (the pid and a clock come from the
//! standard library). Whatever would act on the system fails with
//! `ErrorKind::Unsupported` or does nothing, so that the crates above compile and report
//! a typed error at run time instead of failing the build.
//!
//! Nothing here can be reached with real state: no handler is installed
//! ([`install_handler`] refuses), so the signal tables stay out of use, and the crates
//! that start children (ptools-fork, ptools-workerset) fail on their own stubs before a
//! child exists to be adopted.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Instant;

fn unsupported() -> io::Error {
    io::Error::from(io::ErrorKind::Unsupported)
}

/// No pidfds.
pub(crate) fn pidfd_open(_pid: libc::pid_t) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// No pidfds, so nothing to signal through one.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn pidfd_send_signal(_fd: RawFd, _sig: libc::c_int) -> io::Result<()> {
    Err(unsupported())
}

/// No child to wait for.
pub(crate) fn waitpid_nohang(_pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    Err(unsupported())
}

/// What `waitid` reported for an ended child: `(si_pid, si_code, si_status)`.
pub(crate) type ChildInfo = (libc::pid_t, libc::c_int, libc::c_int);

/// No pidfds, so nothing to wait on through one.
#[cfg(target_os = "linux")]
pub(crate) fn waitid_pidfd_nohang(_fd: RawFd) -> io::Result<ChildInfo> {
    Err(unsupported())
}

/// No child to look at.
pub(crate) fn waitid_pid_peek(_pid: libc::pid_t) -> io::Result<ChildInfo> {
    Err(unsupported())
}

/// Unknown: so ptools never takes a signal over.
pub(crate) fn current_handler(_sig: libc::c_int) -> Option<libc::sighandler_t> {
    None
}

/// Installs nothing.
///
/// # Safety
///
/// None needed here; the signature matches the real backend's.
pub(crate) unsafe fn install_handler(
    _sig: libc::c_int,
    _handler: extern "C" fn(libc::c_int),
) -> bool {
    false
}

/// Nothing was installed, so nothing to restore.
pub(crate) fn restore_default(_sig: libc::c_int) {}

/// Nothing to wait on.
pub(crate) fn poll_in(_fd: RawFd, _ms: libc::c_int) -> io::Result<bool> {
    Err(unsupported())
}

/// Nothing to wait on: not ready.
pub(crate) fn wait_readable(_fd: BorrowedFd<'_>, _ms: i32) -> bool {
    false
}

/// This process's id, from the standard library.
pub(crate) fn getpid() -> i32 {
    std::process::id() as i32
}

/// No signals are sent.
pub(crate) fn kill(_pid: i32, _sig: libc::c_int) -> io::Result<()> {
    Err(unsupported())
}

/// This backend opens no descriptor, so none is ever handed here to close.
pub(crate) fn close(_fd: RawFd) {}

/// Milliseconds since the first call, from the standard library's monotonic clock.
pub(crate) fn now_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    i64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// No segment is ever created on this backend, so none is unlinked.
pub(crate) fn unlink_if_same(_path: &CStr, _dev: u64, _ino: u64) {}

/// Never called from a handler (none is installed); ends the process at once.
pub(crate) fn die_by(_sig: libc::c_int) -> ! {
    std::process::abort()
}
