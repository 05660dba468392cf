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

/// One worker process, owned: the shared handle of `ptools_sys::process` (pidfd, killed at
/// most once, reaped exactly once, killed and reaped on drop), with the status in this
/// crate's public [`Termination`]. A worker always has a pidfd (see [`spawn_worker`]).
///
/// Its death is visible as the pidfd turning readable, whoever holds the process's sockets
/// (a helper the worker forked keeps them open; the pidfd does not care).
#[derive(Debug)]
pub(crate) struct Process {
    inner: ptools_sys::process::Process,
    pidfd: RawFd,
}

impl Process {
    /// The process id (for messages and for the user; never used to signal or wait).
    pub(crate) fn pid(&self) -> i32 {
        self.inner.pid()
    }

    /// The pidfd, readable once the process has ended; open as long as `self` lives.
    pub(crate) fn pidfd(&self) -> RawFd {
        self.pidfd
    }

    /// Sends `SIGKILL`, once: later calls, and calls after the reap, do nothing.
    pub(crate) fn kill(&self) {
        self.inner.kill();
    }

    /// Reaps the process: waits up to `grace` for it to end, then kills it and waits.
    pub(crate) fn reap(&self, grace: Duration) -> Termination {
        termination(self.inner.reap(grace))
    }

    /// How the process ended, if it has (reaping it then); `None` while it runs.
    pub(crate) fn try_wait(&self) -> Option<Termination> {
        self.inner.try_wait().map(termination)
    }

    /// Takes over a child just spawned by this process (a launcher: an `ssh` client, an
    /// `mpirun`), stopped by the SIGINT/SIGTERM cleanup until it is reaped.
    pub(crate) fn adopt(pid: i32) -> io::Result<Process> {
        let mut child = ptools_sys::process::Child::adopt_with_pidfd(pid)?;
        child.register_with_signals();
        let inner = ptools_sys::process::Process::new(child);
        let pidfd = inner
            .pidfd()
            .map(|fd| fd.as_raw_fd())
            .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
        Ok(Process { inner, pidfd })
    }
}

fn termination(s: ptools_sys::process::ExitStatus) -> Termination {
    use ptools_sys::process::ExitStatus;
    match s {
        ExitStatus::Exited(c) => Termination::Exited(c),
        ExitStatus::Signaled { signal, .. } => Termination::Signaled(signal),
        ExitStatus::Unknown => Termination::Unknown,
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

/// Marks every descriptor from 3 up close-on-exec, except those in `keep` (sorted); on a
/// kernel without `CLOSE_RANGE_CLOEXEC` (before 5.11) only those below 65,536.
///
/// Called between fork and exec: no allocation, no locks, only system calls (a loop and
/// integer arithmetic besides).
fn cloexec_all_but(keep: &[RawFd]) {
    let mut lo: libc::c_uint = 3;
    for &k in keep {
        let Ok(k) = libc::c_uint::try_from(k) else {
            continue;
        };
        // A kept descriptor below `lo` (stdio, or a duplicate) must not move `lo` back.
        if k < lo {
            continue;
        }
        if k > lo {
            cloexec_range(lo, k - 1);
        }
        lo = k.saturating_add(1);
    }
    cloexec_range(lo, libc::c_uint::MAX);
}

fn cloexec_range(lo: libc::c_uint, hi: libc::c_uint) {
    if lo > hi {
        return;
    }
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
    // Older kernels: mark each descriptor up to a bound (a descriptor above it, possible
    // only with a raised RLIMIT_NOFILE, stays inheritable there).
    let hi = hi.min(65_535);
    for fd in lo..=hi {
        // SAFETY: fcntl on a descriptor that may not be open; EBADF is harmless.
        unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[cfg(test)]
mod cloexec_tests {
    use super::cloexec_all_but;
    use std::os::fd::{AsRawFd, OwnedFd};

    fn cloexec(fd: i32) -> bool {
        // SAFETY: F_GETFD on an open descriptor of this test.
        let f = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(f >= 0);
        f & libc::FD_CLOEXEC != 0
    }

    fn inheritable_pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = std::io::pipe().unwrap();
        let (r, w): (OwnedFd, OwnedFd) = (r.into(), w.into());
        for fd in [r.as_raw_fd(), w.as_raw_fd()] {
            // SAFETY: clears FD_CLOEXEC on a descriptor this test owns.
            assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        }
        (r, w)
    }

    /// Marks this test process's descriptors close-on-exec: harmless here (the unit tests
    /// start no process that inherits descriptors).
    #[test]
    fn kept_descriptors_stay_inheritable_even_after_a_low_one() {
        let (a, b) = inheritable_pipe();
        let (c, d) = inheritable_pipe();
        let mut keep = [1, b.as_raw_fd(), d.as_raw_fd()];
        keep.sort_unstable();
        cloexec_all_but(&keep);
        assert!(!cloexec(b.as_raw_fd()));
        assert!(!cloexec(d.as_raw_fd()));
        assert!(cloexec(a.as_raw_fd()));
        assert!(cloexec(c.as_raw_fd()));
        // Stdio is never touched, kept or not.
        assert!(!cloexec(2));
    }
}

/// Checks that `fd` is an open Unix stream socket (what the master passes a worker).
pub(crate) fn check_stream_socket(fd: RawFd) -> Result<(), String> {
    // SAFETY: `stat` is plain data; fstat only writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on an integer descriptor with a valid out-parameter; EBADF is an answer.
    if unsafe { libc::fstat(fd, &mut st) } == -1 {
        return Err(io::Error::last_os_error().to_string());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("not a socket".into());
    }
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt with a valid int out-parameter and its length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == -1 || ty != libc::SOCK_STREAM {
        return Err("not a stream socket".into());
    }
    Ok(())
}

/// What a worker is told at start: the frame cap of its link and how long it waits for the
/// master's answer to its handshake.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerLimits {
    pub(crate) max_frame: usize,
    pub(crate) handshake: Duration,
}

/// Starts `program` as a worker holding `data` and `ctl` (the child ends of two socket
/// pairs); every other descriptor but stdio is closed at exec (on kernels before 5.11:
/// every other one below 65,536, see [`cloexec_all_but`]).
pub(crate) fn spawn_worker(
    program: &Path,
    args: &[OsString],
    data: &OwnedFd,
    ctl: &OwnedFd,
    limits: WorkerLimits,
) -> io::Result<Process> {
    let master = std::process::id() as i32;
    let (d, c) = (data.as_raw_fd(), ctl.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(
            crate::worker::ENV_FDS,
            format!(
                "{d},{c},{master},{},{}",
                limits.max_frame,
                limits.handshake.as_millis()
            ),
        )
        .stdin(Stdio::null());
    let mut keep = [d, c];
    keep.sort_unstable();
    // SAFETY: the closure runs in the child between fork and exec, where only one thread
    // exists and another thread's lock (malloc's, say) may be held forever. It takes no
    // lock and allocates nothing: `keep` is a copied array; it calls only the thin libc
    // wrappers of prctl, getppid, fcntl and syscall(close_range), which neither allocate
    // nor lock; `io::Error::last_os_error` and `from_raw_os_error` only hold an errno
    // number (no box), and std reports the error through its own pipe without allocating.
    // Each fcntl is on an integer descriptor: one that is not open gives EBADF, no UB.
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
    let pid = child.id() as i32;
    // `Child` does not reap on drop; from here the process is the handle's.
    drop(child);
    // No pidfd (a kernel before 5.3): the child cannot be watched, so it must not run;
    // `adopt_with_pidfd` then kills and reaps it.
    let mut proc = ptools_sys::process::Child::adopt_with_pidfd(pid)?;
    // SIGINT/SIGTERM cleanup stops it (by pidfd) until it is reaped.
    proc.register_with_signals();
    let inner = ptools_sys::process::Process::new(proc);
    let pidfd = inner
        .pidfd()
        .map(|fd| fd.as_raw_fd())
        .ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
    Ok(Process { inner, pidfd })
}
