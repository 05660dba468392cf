//! The raw `libc` calls of this crate, in one place: those that nix 0.32 has no wrapper
//! for, or whose wrapper would lose information or is not async-signal-safe.
//!
//! - `pidfd_open(2)` and `pidfd_send_signal(2)`: nix has no wrapper; `libc::syscall`.
//!   `pidfd_send_signal` is also called from the signal handler: it is a bare system
//!   call, and the error path only reads `errno` (an `io::Error` from an OS code does not
//!   allocate).
//! - `waitpid` and `waitid`: nix's `WaitStatus` holds a `Signal` enum, which has no value
//!   for real-time signals; nix then fails the call with `EINVAL` after the child is
//!   reaped, and its status would be lost. These keep the raw signal number.
//! - For `signals`: the query-only `sigaction` (nix's always installs an action), `poll`
//!   on the signal table's raw descriptors from the handler (nix's takes a `BorrowedFd`,
//!   which would need an `unsafe` of its own there), and the handler's last act,
//!   `die_by`.

use std::io;
use std::os::fd::{OwnedFd, RawFd};

/// `pidfd_open(pid, 0)`: a close-on-exec pidfd for `pid`.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this open descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// No pidfds outside Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn pidfd_open(_pid: libc::pid_t) -> io::Result<OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// `pidfd_send_signal(fd, sig, NULL, 0)`. Async-signal-safe.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn pidfd_send_signal(fd: RawFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a null siginfo (the kernel fills it as kill does)
    // and no flags; the caller passes a pidfd it owns. A bad descriptor is an EBADF, not
    // undefined behaviour.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `waitpid(pid, &status, WNOHANG)`: the raw status if it was reaped, `None` while it runs.
/// `EINTR` is retried.
pub(crate) fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return Ok(Some(status));
        }
        if rc == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What `waitid` reported for an ended child: `(si_pid, si_code, si_status)`; `si_pid` is 0
/// while the child runs.
pub(crate) type ChildInfo = (libc::pid_t, libc::c_int, libc::c_int);

/// `waitid(idtype, id, &info, flags)`, retried on `EINTR`.
fn waitid(idtype: libc::idtype_t, id: libc::id_t, flags: libc::c_int) -> io::Result<ChildInfo> {
    // SAFETY: `siginfo_t` is plain data for which all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid with a valid, writable out-parameter; the id is checked by the
        // kernel (ECHILD or EINVAL for one that is not ours).
        if unsafe { libc::waitid(idtype, id, &mut info, flags) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // SAFETY: waitid filled `info` for a child event, or left it zeroed (still running);
    // both make these fields valid to read.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    Ok((pid, info.si_code, status))
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOHANG)`: reaps the child of the pidfd if it ended.
#[cfg(target_os = "linux")]
pub(crate) fn waitid_pidfd_nohang(fd: RawFd) -> io::Result<ChildInfo> {
    let id = libc::id_t::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    waitid(libc::P_PIDFD, id, libc::WEXITED | libc::WNOHANG)
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`: whether the child ended, leaving it
/// unreaped.
pub(crate) fn waitid_pid_peek(pid: libc::pid_t) -> io::Result<ChildInfo> {
    let id = libc::id_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ECHILD))?;
    waitid(
        libc::P_PID,
        id,
        libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
    )
}

/// The current handler of `sig` (`SIG_DFL`, `SIG_IGN` or a function address).
///
/// Raw libc: nix's `sigaction` always installs a new action, and a query must leave the
/// action untouched (a signal between a set and a restore would be handled wrongly).
pub(crate) fn current_handler(sig: libc::c_int) -> Option<libc::sighandler_t> {
    // SAFETY: an all-zero sigaction is a valid out-parameter.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying only (null new action); `old` is valid writable memory.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return None;
    }
    Some(old.sa_sigaction)
}

/// `poll(fd, POLLIN, ms)` from the signal handler: the raw result, `errno` left for the
/// caller. Async-signal-safe.
pub(crate) fn poll_in(fd: RawFd, ms: libc::c_int) -> libc::c_int {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, writable pollfd for the whole call; a bad descriptor is reported
    // in `revents`, not undefined behaviour.
    unsafe { libc::poll(&mut p, 1, ms) }
}

/// Dies by `sig` as if it had not been handled: default action, unblocked, raised again.
/// Called from the signal handler. Raw libc: each step must run even if one before it
/// failed, ending in `_exit`, with nothing that could allocate or unwind.
pub(crate) fn die_by(sig: libc::c_int) -> ! {
    // SAFETY: all async-signal-safe calls with valid arguments: an all-zero sigaction is
    // SIG_DFL; `set` is initialised by sigemptyset before use. `_exit` is the fallback in
    // case the raised signal did not end the process.
    unsafe {
        let sa: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &sa, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig)
    }
}
