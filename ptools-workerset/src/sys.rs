//! The operating-system calls this crate makes (Linux; macOS lacks `PR_SET_PDEATHSIG` and
//! `close_range`, so it is not supported yet).

#[cfg(not(target_os = "linux"))]
compile_error!("ptools-workerset supports Linux only for now");

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Termination;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A connected pair of stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: the call succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends all of `buf`, without raising `SIGPIPE` when the peer is gone.
pub(crate) fn send_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for its length.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads what is available (at least one byte, or 0 at end of stream).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable slice for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes; false on timeout.
pub(crate) fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `p` is one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r > 0 {
            return Ok(true);
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

/// Sends `sig` to `pid`; a process already gone is not an error.
pub(crate) fn kill(pid: i32, sig: i32) {
    // SAFETY: plain syscall; `pid` is a child of ours that we have not reaped yet.
    unsafe { libc::kill(pid, sig) };
}

fn termination(status: libc::c_int) -> Termination {
    if libc::WIFEXITED(status) {
        Termination::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Termination::Signaled(libc::WTERMSIG(status))
    } else {
        Termination::Unknown
    }
}

/// Reaps `pid` if it has ended; `None` while it runs.
pub(crate) fn try_wait(pid: i32) -> Option<Termination> {
    let mut status = 0;
    // SAFETY: `status` is a valid int; we only wait on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r == pid {
        ptools_sys::signals::forget_process(pid); // reaped: out of the signal handler's table
    }
    match r {
        0 => None,
        r if r == pid => Some(termination(status)),
        _ => Some(Termination::Unknown),
    }
}

/// Reaps `pid`: waits up to `grace`, then kills it with `SIGKILL` and waits for it.
pub(crate) fn reap(pid: i32, grace: Duration) -> Termination {
    let deadline = Instant::now() + grace;
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(t) = try_wait(pid) {
            return t;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    kill(pid, libc::SIGKILL);
    let mut status = 0;
    loop {
        // SAFETY: as in `try_wait`; after SIGKILL the child ends, so this returns.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            ptools_sys::signals::forget_process(pid);
            return termination(status);
        }
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Termination::Unknown;
    }
}

/// What makes this build this build: the identity of the running executable file and the
/// place of the anchor in its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct BuildId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    anchor_in_image: u64,
}

impl BuildId {
    pub(crate) fn of_self() -> io::Result<BuildId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/exe")?;
        let mut info: libc::Dl_info = dl_info_zeroed();
        let anchor = crate::func::anchor_addr();
        // SAFETY: `info` is a valid out-parameter; `anchor` is an address in our image.
        let found = unsafe { libc::dladdr(anchor as *const libc::c_void, &mut info) };
        let base = if found != 0 {
            info.dli_fbase as usize
        } else {
            0
        };
        Ok(BuildId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            anchor_in_image: anchor.wrapping_sub(base) as u64,
        })
    }
}

fn dl_info_zeroed() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

/// `PR_SET_PDEATHSIG(SIGKILL)`: the kernel kills us when the thread that forked us ends.
/// Returns false when the parent is already not `parent`.
pub(crate) fn die_with_parent(parent: i32) -> bool {
    // SAFETY: plain prctl with integer arguments; async-signal-safe.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // The parent may have died before the prctl: then we were re-parented already and no
    // signal will come (prctl(2), "PR_SET_PDEATHSIG").
    // SAFETY: plain syscall.
    unsafe { libc::getppid() == parent }
}

/// Marks every descriptor from 3 up close-on-exec, except those in `keep` (sorted).
///
/// Called between fork and exec: async-signal-safe calls only.
fn cloexec_all_but(keep: &[RawFd]) {
    let mut lo: libc::c_uint = 3;
    for &k in keep {
        let k = k as libc::c_uint;
        if k > lo {
            cloexec_range(lo, k - 1);
        }
        lo = k + 1;
    }
    cloexec_range(lo, libc::c_uint::MAX);
}

fn cloexec_range(lo: libc::c_uint, hi: libc::c_uint) {
    // close_range(2) with CLOSE_RANGE_CLOEXEC (Linux 5.11): std's own exec-error pipe is
    // close-on-exec already, so this never disturbs `Command`.
    // SAFETY: raw syscall with integer arguments; async-signal-safe.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            lo,
            hi,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r == 0 {
        return;
    }
    // Older kernels: mark each descriptor up to a sane bound.
    let hi = hi.min(65_535);
    for fd in lo..=hi {
        // SAFETY: fcntl on a descriptor that may not be open; EBADF is harmless.
        unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// A started worker process, not yet reaped.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: i32,
}

/// Starts `program` as a worker holding `data` and `ctl` (the child ends of two socket
/// pairs); every other descriptor but stdio is closed at exec.
pub(crate) fn spawn_worker(
    program: &Path,
    args: &[OsString],
    data: &OwnedFd,
    ctl: &OwnedFd,
) -> io::Result<Spawned> {
    let master = std::process::id() as i32;
    let (d, c) = (data.as_raw_fd(), ctl.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(crate::worker::ENV_FDS, format!("{d},{c},{master}"))
        .stdin(Stdio::null());
    let mut keep = [d, c];
    keep.sort_unstable();
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
    // calls (prctl, getppid, fcntl, close_range); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if !die_with_parent(master) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for fd in keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            cloexec_all_but(&keep);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // SIGINT/SIGTERM cleanup stops it (by pidfd) until it is reaped.
    ptools_sys::signals::register_process(child.id() as i32);
    Ok(Spawned {
        pid: child.id() as i32,
    })
}
