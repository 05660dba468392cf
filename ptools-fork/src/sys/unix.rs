//! The Linux and macOS backend: the system calls pfork makes, each wrapped once with its
//! SAFETY argument.
//!
//! Everything here is a thin, safe wrapper except [`fork`], whose contract (what the child may
//! do) cannot be checked here. Errors come back as `io::Error` (errno) and are turned into the
//! crate's own error kinds in one place each, by the caller.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
#[cfg(not(target_os = "linux"))]
use nix::fcntl::{FcntlArg, fcntl};
use nix::poll::PollTimeout;

pub(crate) use nix::poll::PollFd;

use super::{Forked, pid_t};

/// This backend forks.
pub(crate) fn can_fork() -> io::Result<()> {
    Ok(())
}

/// Forks the calling process.
///
/// Raw libc, inlined into the caller: nix's wrapper is a function of its own, and the child
/// returning through it executes one more page of code. A child inherits no page-table
/// entries for code (fork(2) copies only those of memory that has been written), so every
/// page of code a child runs costs it a page fault, some microseconds in a VM: a trivial
/// child's cost is mostly such faults (see `benches/README.md`).
///
/// # Safety
///
/// In the child, if the parent had other threads, only async-signal-safe functions may be
/// called until the child leaves with [`exit_now`] (POSIX `fork(2)`): another thread may have
/// held a lock (in malloc, stdio, a Rust `Mutex`) that stays locked forever in the child.
/// The caller must have checked the crate's thread policy (see the crate docs, "Threads"),
/// and the child must never return into the caller's frames: it leaves with [`exit_now`].
#[inline(always)]
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: fork(2) takes no arguments; its contract in the child is the caller's (see
    // above): only async-signal-safe calls unless single-threaded, and out with `exit_now`.
    match unsafe { libc::fork() } {
        0 => Ok(Forked::Child),
        pid if pid > 0 => Ok(Forked::Parent(pid)),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Leaves the process at once with `code`: no atexit handlers, no stdio flush, no
/// destructors (`_exit(2)`). The only way a forked child may leave.
///
/// Raw libc: nix has no `_exit`, and `std::process::exit` runs atexit handlers and flushes.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and always sound to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Creates a pipe, both ends close-on-exec and non-blocking: the parent reads without
/// waiting, and [`write_all`] waits for room itself (a child writing a large result waits
/// for the parent to read). On Linux that is the one `pipe2` call, without an `fcntl`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    #[cfg(target_os = "linux")]
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    #[cfg(not(target_os = "linux"))]
    let (r, w) = {
        // macOS has no pipe2 (pipe(2) man page); set FD_CLOEXEC and O_NONBLOCK right after.
        // A concurrent fork+exec in another thread could inherit the ends in between; see
        // "Threads".
        use nix::fcntl::FdFlag;
        let (r, w) = nix::unistd::pipe()?;
        for fd in [&r, &w] {
            let old = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
            fcntl(fd, FcntlArg::F_SETFD(old | FdFlag::FD_CLOEXEC))?;
            let old = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
            fcntl(fd, FcntlArg::F_SETFL(old | OFlag::O_NONBLOCK))?;
        }
        (r, w)
    };
    Ok((r, w))
}

/// Reads into `buf` from a non-blocking descriptor. `Ok(0)` is end of file; a read that
/// would block is `ErrorKind::WouldBlock`; `EINTR` is retried.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => {}
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Reads at most `max` bytes from a non-blocking descriptor into the spare capacity of `buf`
/// and appends them, without initializing that memory first. Returns and fails like
/// [`read`]; `Ok(0)` also when `buf` has no spare capacity or `max` is 0.
///
/// Raw libc: nix's `read` takes an initialized `&mut [u8]`, and zeroing the spare capacity
/// first would cost a pass over every result's bytes.
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

/// Writes all of `buf` to a descriptor, blocking or not: retries on `EINTR` and short
/// writes, and waits in `poll(2)` while a non-blocking pipe is full. Async-signal-safe
/// (only `write(2)` and `poll(2)`, neither allocates nor locks), so a child may call it
/// whatever the thread policy.
///
/// On Linux the write goes through [`raw_syscall`], like the child's other calls before it
/// (see [`die_with_parent`]): the code a child runs then spans one page of libc fewer.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                match nix::poll::poll(&mut p, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
        }
    }
    Ok(())
}

/// One `write(2)`.
#[cfg(target_os = "linux")]
fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> nix::Result<usize> {
    // SAFETY: write(2) reads `buf.len()` bytes from `buf`, which is valid for them; `fd` is
    // a borrowed, open descriptor.
    let n = unsafe {
        raw_syscall(
            libc::SYS_write,
            [
                fd.as_raw_fd() as libc::c_long,
                buf.as_ptr() as libc::c_long,
                buf.len() as libc::c_long,
            ],
        )
    };
    // A non-negative count is at most `buf.len()`.
    Errno::result(n).map(|n| n as usize)
}

/// One `write(2)`.
#[cfg(not(target_os = "linux"))]
fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> nix::Result<usize> {
    nix::unistd::write(fd, buf)
}

/// `syscall(2)` with three arguments: the one entry point into the kernel for the calls a
/// child makes before it exits (`prctl`, `getppid`, `write`).
///
/// Raw libc, and not nix's wrappers, which call one libc function each: a child inherits no
/// page-table entries for code (see [`fork`]), so each distinct page of libc it runs costs
/// it a page fault; through `syscall` the three calls cost one. Async-signal-safe: a bare
/// system call that sets `errno` on failure.
///
/// # Safety
///
/// The arguments must be valid for system call `nr` as syscall(2) and the call's own man
/// page describe them (pointers valid for what the call reads or writes).
#[cfg(target_os = "linux")]
unsafe fn raw_syscall(nr: libc::c_long, args: [libc::c_long; 3]) -> libc::c_long {
    // SAFETY: forwarded from the caller.
    unsafe { libc::syscall(nr, args[0], args[1], args[2]) }
}

/// A poll entry that waits for `fd` to be readable (`POLLIN`).
pub(crate) fn poll_in(fd: BorrowedFd<'_>) -> PollFd<'_> {
    PollFd::new(fd, nix::poll::PollFlags::POLLIN)
}

/// Whether a poll entry saw an event (any `revents`, also ones nix does not name).
pub(crate) fn poll_saw(pfd: &PollFd<'_>) -> bool {
    pfd.any() != Some(false)
}

/// `poll(2)` on `fds` for at most `timeout_ms` (-1: no limit). An interrupted poll counts as
/// a poll that saw nothing.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout_ms: libc::c_int) -> io::Result<usize> {
    let timeout = PollTimeout::try_from(timeout_ms)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    match nix::poll::poll(fds, timeout) {
        Ok(n) => Ok(n.unsigned_abs() as usize),
        Err(Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The size of a page.
pub(crate) fn page_size() -> usize {
    // sysconf(_SC_PAGESIZE) cannot fail on Linux or macOS; 4 KiB is the fallback anyway.
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

/// A fresh anonymous, private, read-write mapping of `len` bytes (a multiple of the page
/// size) that a child of `fork` gets as zeros instead of a share of (`MADV_WIPEONFORK`,
/// madvise(2), Linux 4.14): `fork` does not write-protect its pages in the parent. `None`
/// if it cannot be made or the kernel refuses the advice (then nothing stays mapped).
#[cfg(target_os = "linux")]
pub(crate) fn map_wipe_on_fork(len: usize) -> Option<std::ptr::NonNull<u8>> {
    use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap_anonymous, munmap};
    let size = std::num::NonZeroUsize::new(len)?;
    // SAFETY: a new anonymous mapping at an address the kernel chooses: it aliases nothing.
    let base = unsafe {
        mmap_anonymous(
            None,
            size,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }
    .ok()?;
    // SAFETY: advice on the mapping just made, which nothing uses yet.
    if unsafe { madvise(base, len, MmapAdvise::MADV_WIPEONFORK) }.is_err() {
        // SAFETY: the mapping just made, of this length, unused.
        let _ = unsafe { munmap(base, len) };
        return None;
    }
    Some(base.cast())
}

/// No such advice outside Linux: the caller keeps its state on the heap.
#[cfg(not(target_os = "linux"))]
pub(crate) fn map_wipe_on_fork(_len: usize) -> Option<std::ptr::NonNull<u8>> {
    None
}

/// Unmaps a mapping made by [`map_wipe_on_fork`].
///
/// # Safety
///
/// `base` and `len` are those of a mapping [`map_wipe_on_fork`] returned, not unmapped yet,
/// and nothing refers into it any more.
pub(crate) unsafe fn unmap(base: std::ptr::NonNull<u8>, len: usize) {
    // SAFETY: forwarded from the caller. A failure (which munmap(2) has no reason for
    // here) would leave the mapping in place: memory, not unsoundness.
    let _ = unsafe { nix::sys::mman::munmap(base.cast(), len) };
}

/// The calling process's pid.
pub(crate) fn getpid() -> pid_t {
    nix::unistd::getpid().as_raw()
}

/// Asks the kernel to `SIGKILL` this (child) process when the thread that forked it ends, then
/// checks that the parent `parent` is still there: if it ended before the request took effect,
/// the child was already re-parented and must leave (`prctl(2)`, PR_SET_PDEATHSIG). Returns
/// false when the parent is gone. On macOS there is no such request; only the re-check runs.
/// Async-signal-safe: one system call each.
///
/// On Linux both calls go through [`raw_syscall`]: see there why.
pub(crate) fn die_with_parent(parent: pid_t) -> bool {
    #[cfg(target_os = "linux")]
    {
        let kill = libc::SIGKILL as libc::c_long;
        // SAFETY: prctl(PR_SET_PDEATHSIG, sig) and getppid() take no pointers.
        unsafe {
            raw_syscall(
                libc::SYS_prctl,
                [libc::PR_SET_PDEATHSIG as libc::c_long, kill, 0],
            );
            raw_syscall(libc::SYS_getppid, [0; 3]) == parent as libc::c_long
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        nix::unistd::getppid().as_raw() == parent
    }
}

/// Flushes every C stdio stream (`fflush(NULL)`), so output a C library buffered is written
/// exactly once: by the parent before a fork, by the child before `_exit`.
///
/// Raw libc here and in [`flush_c_stdout`]: C stdio is not a system call, nix has no wrapper.
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
            // glibc and musl both export the `stdout` pointer and `__fpending`. C lets a
            // program assign `stdout`, so it is a `static mut` here, read once by value.
            static mut stdout: *mut libc::FILE;
            fn __fpending(stream: *mut libc::FILE) -> libc::size_t;
        }
        // SAFETY: `stdout` is initialised by the C runtime before main and never null; it
        // is read through a raw pointer, with no reference to the mutable static. Even after
        // a `fclose(stdout)` the object stays valid (glibc and musl keep their standard
        // streams in static storage), and __fpending only reads the stream's buffer
        // pointers; fflush takes a valid stream.
        unsafe {
            let out = (&raw const stdout).read();
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
    use std::os::unix::fs::MetadataExt;
    // proc(5): /proc/self/task has one entry per thread, and Linux gives the directory a
    // link count of 2 plus the number of threads (`proc_task_getattr` in fs/proc/base.c,
    // since 2.6). One `statx`, no descriptor and no allocation: about a third of listing
    // the directory (open, getdents, close and a 32 KiB buffer), which costs in turn about
    // a third of reading the "Threads:" line of /proc/self/status.
    let links = std::fs::metadata("/proc/self/task").ok()?.nlink();
    links
        .checked_sub(2)
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
}

/// Number of threads in this process, `None` if it cannot be found out.
#[cfg(target_os = "macos")]
pub(crate) fn thread_count() -> Option<usize> {
    // proc_pidinfo(PROC_PIDTASKINFO) fills a proc_taskinfo whose pti_threadnum is the count
    // (libproc.h; the call `ps -M` makes). Raw libc: nix has no libproc wrapper.
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    #[test]
    fn poll_sees_a_written_pipe_and_not_an_empty_one() {
        let (r, w) = super::pipe().expect("pipe");
        let mut fds = [super::poll_in(r.as_fd())];
        assert_eq!(super::poll(&mut fds, 0).expect("poll"), 0);
        assert!(!super::poll_saw(&fds[0]));
        super::write_all(w.as_fd(), b"x").expect("write");
        assert_eq!(super::poll(&mut fds, -1).expect("poll"), 1);
        assert!(super::poll_saw(&fds[0]));
        let mut buf = [0u8; 4];
        assert_eq!(super::read(r.as_fd(), &mut buf).expect("read"), 1);
        let e = super::read(r.as_fd(), &mut buf).expect_err("empty non-blocking pipe");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }
}
