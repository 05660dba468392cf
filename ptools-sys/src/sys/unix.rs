//! The Linux and macOS backend: every system call of this crate. Through nix where its
//! wrapper is the bare call (and, for what the signal handler calls, allocates nothing);
//! raw `libc` where nix 0.32 has no wrapper, or its wrapper would lose information or is
//! not async-signal-safe:
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

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

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

/// `poll(fd, POLLIN, ms)` from the signal handler: whether `fd` turned readable (false:
/// the time ran out); `EINTR` is `ErrorKind::Interrupted`. Async-signal-safe: an error
/// from errno holds the number only.
pub(crate) fn poll_in(fd: RawFd, ms: libc::c_int) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, writable pollfd for the whole call; a bad descriptor is reported
    // in `revents`, not undefined behaviour.
    match unsafe { libc::poll(&mut p, 1, ms) } {
        r if r < 0 => Err(io::Error::last_os_error()),
        r => Ok(r > 0),
    }
}

/// `poll` for `POLLIN` on one descriptor for at most `ms` milliseconds (`0..=i32::MAX`);
/// whether it is ready (an error counts as not).
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, ms: i32) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
    // `ms` is in 0..=i32::MAX, which PollTimeout takes as is.
    let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
    // One descriptor: a positive count means it has events.
    matches!(nix::poll::poll(&mut p, timeout), Ok(n) if n > 0)
}

/// The calling process's pid. nix's getpid is the bare call: async-signal-safe.
pub(crate) fn getpid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// `kill(pid, sig)`. nix's kill is the bare kill(2): async-signal-safe.
pub(crate) fn kill(pid: i32, sig: libc::c_int) -> io::Result<()> {
    let signal = Signal::try_from(sig)?;
    Ok(nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        signal,
    )?)
}

/// Closes a descriptor the caller owns and never uses again. Async-signal-safe.
pub(crate) fn close(fd: RawFd) {
    let _ = nix::unistd::close(fd);
}

/// The monotonic clock in milliseconds. nix's clock_gettime is the bare call,
/// async-signal-safe; it cannot fail for the monotonic clock.
pub(crate) fn now_ms() -> i64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    // Both fields are narrower than i64 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let ms = ts.tv_sec() as i64 * 1000 + ts.tv_nsec() as i64 / 1_000_000;
    ms
}

/// Installs `handler` for `sig` with `SA_NODEFER`; whether it was installed.
///
/// # Safety
///
/// `handler` makes async-signal-safe calls only: it may interrupt any code of the process.
pub(crate) unsafe fn install_handler(
    sig: libc::c_int,
    handler: extern "C" fn(libc::c_int),
) -> bool {
    let Ok(signal) = Signal::try_from(sig) else {
        return false;
    };
    let sa = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::SA_NODEFER,
        SigSet::empty(),
    );
    // SAFETY: `handler` only makes async-signal-safe calls (the caller's promise).
    unsafe { sigaction(signal, &sa) }.is_ok()
}

/// Restores the default action of `sig`.
pub(crate) fn restore_default(sig: libc::c_int) {
    let Ok(signal) = Signal::try_from(sig) else {
        return;
    };
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: restoring the default action installs no handler.
    let _ = unsafe { sigaction(signal, &dfl) };
}

/// Unlinks the segment file at `path` (`/dev/shm/<name>`) if it is still the object with
/// this device and inode. Called from the signal handler: stat(2) and unlink(2) are
/// async-signal-safe, and nix passes the `CStr` as is (no copy).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unlink_if_same(path: &CStr, dev: u64, ino: u64) {
    let Ok(st) = nix::sys::stat::stat(path) else {
        return; // gone already
    };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    if (st.st_dev as u64, st.st_ino as u64) == (dev, ino) {
        let _ = nix::unistd::unlink(path);
    }
}

/// Unlinks the segment `name` (its `shm_open` name) by name: macOS has no path to `stat`.
/// Called from the signal handler: shm_unlink is not on POSIX's list of async-signal-safe
/// functions, but it makes one system call and takes no lock; nix passes the `CStr` as is.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn unlink_if_same(name: &CStr, _dev: u64, _ino: u64) {
    let _ = nix::sys::mman::shm_unlink(name);
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
