//! The system calls pfork makes, each wrapped once with its SAFETY argument.
//!
//! Everything here is a thin, safe wrapper except [`fork`], whose contract (what the child may
//! do) cannot be checked here. Errors come back as `io::Error` (errno) and are turned into the
//! crate's own error kinds in one place each, by the caller.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub(crate) use libc::pid_t;

/// What `fork` returned, seen from each side.
pub(crate) enum Forked {
    /// We are the new child process.
    Child,
    /// We are the parent; the child has this pid.
    Parent(pid_t),
}

/// Forks the calling process.
///
/// # Safety
///
/// In the child, if the parent had other threads, only async-signal-safe functions may be
/// called until the child leaves with [`exit_now`] (POSIX `fork(2)`): another thread may have
/// held a lock (in malloc, stdio, a Rust `Mutex`) that stays locked forever in the child.
/// The caller must have checked the crate's thread policy (see the crate docs, "Threads"),
/// and the child must never return into the caller's frames: it leaves with [`exit_now`].
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: fork takes no pointers; the caller upholds the contract on what the child does.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Leaves the process at once with `code`: no atexit handlers, no stdio flush, no
/// destructors (`_exit(2)`). The only way a forked child may leave.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and always sound to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Creates a pipe, both ends close-on-exec; the read end (first) is non-blocking, the write
/// end blocking (a child writing a large result waits for the parent to read).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2 requires.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // macOS has no pipe2 (pipe(2) man page); set FD_CLOEXEC right after. A concurrent
        // fork+exec in another thread could inherit the ends in between; see "Threads".
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe requires.
        let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: pipe just returned these two descriptors; nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    {
        set_fd_flag(
            r.as_raw_fd(),
            libc::F_GETFD,
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )?;
        set_fd_flag(
            w.as_raw_fd(),
            libc::F_GETFD,
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )?;
    }
    set_fd_flag(
        r.as_raw_fd(),
        libc::F_GETFL,
        libc::F_SETFL,
        libc::O_NONBLOCK,
    )?;
    Ok((r, w))
}

/// Adds `flag` to a descriptor's flags (read with `get`, written with `set`).
fn set_fd_flag(fd: RawFd, get: libc::c_int, set: libc::c_int, flag: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFD/F_GETFL takes no pointer; `fd` is open (owned by the caller).
    let old = unsafe { libc::fcntl(fd, get) };
    if old == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; F_SETFD/F_SETFL take an int argument.
    if unsafe { libc::fcntl(fd, set, old | flag) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads into `buf` from a non-blocking descriptor. `Ok(0)` is end of file; a read that
/// would block is `ErrorKind::WouldBlock`; `EINTR` is retried.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            // `n` is non-negative and at most `buf.len()`.
            return Ok(n.unsigned_abs());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads at most `max` bytes from a non-blocking descriptor into the spare capacity of `buf`
/// and appends them, without initializing that memory first. Returns and fails like
/// [`read`]; `Ok(0)` also when `buf` has no spare capacity or `max` is 0.
pub(crate) fn read_append(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    let ptr = spare.as_mut_ptr();
    if want == 0 {
        return Ok(0);
    }
    loop {
        // SAFETY: `ptr` points at the spare capacity of `buf`, valid for writes of
        // `spare.len() >= want` bytes; nothing else uses `buf` during the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), ptr.cast(), want) };
        if n >= 0 {
            // `n` is non-negative and at most `want`.
            let n = n.unsigned_abs();
            // SAFETY: read(2) wrote (initialized) the first `n <= want` bytes of the spare
            // capacity, so the first `len + n` bytes of `buf` are initialized and within its
            // capacity.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes all of `buf` to a blocking descriptor, retrying on `EINTR` and short writes.
/// Async-signal-safe (only `write(2)`), so a child may call it whatever the thread policy.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n.unsigned_abs()..];
    }
    Ok(())
}

/// `poll(2)` on `fds` for at most `timeout_ms` (-1: no limit). An interrupted poll counts as
/// a poll that saw nothing.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fds` is a valid, writable slice of `nfds` pollfd structs for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n.unsigned_abs() as usize)
}

/// The calling process's pid.
pub(crate) fn getpid() -> pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Asks the kernel to `SIGKILL` this (child) process when the thread that forked it ends, then
/// checks that the parent `parent` is still there: if it ended before the request took effect,
/// the child was already re-parented and must leave (`prctl(2)`, PR_SET_PDEATHSIG). Returns
/// false when the parent is gone. On macOS there is no such request; only the re-check runs.
pub(crate) fn die_with_parent(parent: pid_t) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: PR_SET_PDEATHSIG takes a signal number; the unused arguments are zero.
        let _ = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    }
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() == parent }
}

/// Flushes every C stdio stream (`fflush(NULL)`), so output a C library buffered is written
/// exactly once: by the parent before a fork, by the child before `_exit`.
pub(crate) fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes all open output streams; it takes no other pointer.
    let _ = unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// Flushes C's `stdout` in a child, if it holds output: the C stdio output of `f` (from a C
/// library it calls) is written before `_exit`.
///
/// On Linux this checks first with `__fpending` (glibc and musl, `stdio_ext.h`), which reads
/// the buffer pointers without taking a lock: `fflush(NULL)` locks every stream, and each lock
/// word written is a copy-on-write page fault, a measurable share of a trivial child's cost.
/// Streams other than `stdout` that `f` writes through C stdio must be flushed or closed by
/// `f`. `stderr` is unbuffered in C. Elsewhere this is `fflush(NULL)`.
pub(crate) fn flush_c_stdout() {
    #[cfg(target_os = "linux")]
    {
        unsafe extern "C" {
            // glibc and musl both export the `stdout` pointer and `__fpending`.
            static stdout: *mut libc::FILE;
            fn __fpending(stream: *mut libc::FILE) -> libc::size_t;
        }
        // SAFETY: `stdout` is initialised by the C runtime before main and never null;
        // __fpending only reads the stream's buffer pointers; fflush takes a valid stream.
        unsafe {
            let out = stdout;
            if __fpending(out) > 0 {
                libc::fflush(out);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    flush_c_stdio();
}

/// Number of threads in this process, `None` if it cannot be found out.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn thread_count() -> Option<usize> {
    // proc(5): one entry per thread in /proc/self/task. Listing it costs about a third of
    // reading the "Threads:" line of /proc/self/status, which formats every field.
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let n = tasks.count();
    (n > 0).then_some(n)
}

/// Number of threads in this process, `None` if it cannot be found out.
#[cfg(target_os = "macos")]
pub(crate) fn thread_count() -> Option<usize> {
    // proc_pidinfo(PROC_PIDTASKINFO) fills a proc_taskinfo whose pti_threadnum is the count
    // (libproc.h; the call `ps -M` makes).
    let mut info: libc::proc_taskinfo = unsafe_zeroed_taskinfo();
    let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_taskinfo>()).ok()?;
    // SAFETY: `info` is a valid, writable proc_taskinfo of exactly `size` bytes.
    let rc = unsafe {
        libc::proc_pidinfo(
            getpid(),
            libc::PROC_PIDTASKINFO,
            0,
            (&raw mut info).cast(),
            size,
        )
    };
    if rc != size {
        return None;
    }
    usize::try_from(info.pti_threadnum).ok()
}

#[cfg(target_os = "macos")]
fn unsafe_zeroed_taskinfo() -> libc::proc_taskinfo {
    // SAFETY: proc_taskinfo is a plain C struct of integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
compile_error!("ptools-fork supports Linux and macOS only");

/// Human-readable name of a signal (`SIGKILL`), or its number.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}
