//! The Linux backend: every operating-system call of this crate.
//!
//! They go through nix. Raw `libc` stays only where nix has no wrapper or its wrapper does
//! not fit, each with its reason at the call: `dladdr` and `dl_iterate_phdr` (the loader,
//! no nix wrapper), `atexit` and `_exit` (no nix wrapper), `close_range` (no nix wrapper:
//! `syscall`), `futex` (no nix wrapper: `syscall`, for the shared-memory ring), and `fcntl` on bare descriptor numbers (nix's `fcntl` takes a `BorrowedFd`,
//! which must be open; these numbers may not be).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "region.rs"]
mod region;
pub(crate) use region::Region;
#[path = "ring.rs"]
mod ring;
pub(crate) use ring::Ring;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag};
use nix::poll::{PollFlags, PollTimeout};
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

use super::{BuildId, WorkerLimits};
use crate::error::Termination;

pub(crate) use nix::poll::PollFd;

/// A new memfd named `name`, close-on-exec, `len` bytes long, sealed with `seals` (the
/// shared-memory regions and the ring: the master makes and seals them before any worker
/// holds them).
fn sealed_memfd(
    name: &std::ffi::CStr,
    len: usize,
    seals: nix::fcntl::SealFlag,
) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    if len > 0 {
        let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        nix::unistd::ftruncate(&fd, len)?;
    }
    nix::fcntl::fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(fd)
}

/// Takes descriptor `fd` that the master passed through the environment (a worker), once
/// it is open and passes `check`, and marks it close-on-exec. On error `fd` is left alone:
/// it may belong to something else.
fn adopt_passed_fd(
    fd: RawFd,
    check: impl FnOnce(&OwnedFd) -> Result<(), String>,
) -> Result<OwnedFd, String> {
    is_open(fd).map_err(|e| e.to_string())?;
    // SAFETY: `fd` is open (just checked), and the master passed it to this process alone:
    // nothing else in this process owns it or closes it. On error it is given back below
    // without being closed.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let checked = check(&owned).and_then(|()| {
        nix::fcntl::fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map(drop)
            .map_err(|e| e.to_string())
    });
    match checked {
        Ok(()) => Ok(owned),
        Err(why) => {
            // Not ours after all: give the number back without closing it.
            let _ = owned.into_raw_fd();
            Err(why)
        }
    }
}

/// Sleeps while `word` holds `expected`, until woken by [`futex_wake`] on the same
/// address (in this process or another that maps the same file), or `timeout` passes.
/// Returns at once if `word` holds something else; spurious returns are allowed (the
/// caller looks again).
fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT (shared: the word lives in a `MAP_SHARED` mapping) only reads the
    // 32-bit word at a valid, aligned address (an `&AtomicU32`) and the timespec, which
    // lives on this frame through the call. A relative timeout, as FUTEX_WAIT takes. Its
    // errors (EAGAIN: the word changed; EINTR; ETIMEDOUT) all mean "look again".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            tp,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every sleeper of [`futex_wait`] on `word`.
fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    // SAFETY: FUTEX_WAKE touches no memory of ours: the address only names the wait queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// How long a side of a shared-memory ring spins before it sleeps: long enough to catch
/// the answer to a short call or the next call of a busy caller, short enough that a
/// waiting side gives a core back soon. Nothing spins when this process may run on one
/// CPU only (spinning would only delay the peer it waits for).
pub(crate) fn ring_spin() -> Duration {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| match std::thread::available_parallelism() {
        Ok(n) if n.get() >= 2 => Duration::from_micros(50),
        _ => Duration::ZERO,
    })
}

/// A connected pair of stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends all of `buf`, without raising `SIGPIPE` when the peer is gone. Per call: one
/// `send(2)` per partial write, nothing allocated (nix's wrapper is the bare call).
pub(crate) fn send_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match socket::send(fd, buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads what is available (at least one byte, or 0 at end of stream).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match socket::recv(fd, buf, MsgFlags::empty()) {
            Err(Errno::EINTR) => {}
            r => return Ok(r?),
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes; false on timeout.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
        // Whole milliseconds, rounded down as before; over i32::MAX ms is capped.
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut p, ms) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

/// Ends both directions of a socket, waking a reader blocked on it. Failure (the socket
/// is not connected any more) is harmless: there is nothing left to wake.
pub(crate) fn shutdown(fd: RawFd) {
    let _ = socket::shutdown(fd, socket::Shutdown::Both);
}

/// A poll entry waiting for `fd` to be readable (`POLLIN`).
pub(crate) fn poll_in(fd: BorrowedFd<'_>) -> PollFd<'_> {
    PollFd::new(fd, PollFlags::POLLIN)
}

/// Whether a poll entry saw an event (any `revents`, also ones nix does not name).
pub(crate) fn poll_saw(p: &PollFd<'_>) -> bool {
    p.any() != Some(false)
}

/// `poll(2)` on `fds` without a time limit; `ErrorKind::Interrupted` on `EINTR`.
pub(crate) fn poll_forever(fds: &mut [PollFd<'_>]) -> io::Result<()> {
    nix::poll::poll(fds, PollTimeout::NONE)?;
    Ok(())
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
}

impl Process {
    /// The process id (for messages and for the user; never used to signal or wait).
    pub(crate) fn pid(&self) -> i32 {
        self.inner.pid()
    }

    /// The pidfd, readable once the process has ended; open as long as `self` lives.
    /// Always there for a worker ([`spawn_worker`] refuses a process without one).
    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.pidfd()
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
    /// `mpirun`), stopped by the SIGINT/SIGTERM cleanup until it is reaped. Without a
    /// pidfd it is killed and reaped, as a worker would be.
    pub(crate) fn adopt(pid: i32) -> io::Result<Process> {
        let mut child = ptools_sys::process::Child::adopt_with_pidfd(pid)?;
        child.register_with_signals();
        let inner = ptools_sys::process::Process::new(child);
        if inner.pidfd().is_none() {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        Ok(Process { inner })
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

impl BuildId {
    /// This build's identity: the running executable file (`/proc/self/exe`) and where
    /// the anchor lies in its image (`dladdr`).
    pub(crate) fn of_self() -> io::Result<BuildId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/exe")?;
        let mut info: libc::Dl_info = dl_info_zeroed();
        let anchor = crate::func::anchor_addr();
        // Raw libc: dladdr(3) asks the dynamic loader, which nix does not wrap.
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
///
/// Async-signal-safe, nothing allocated (it runs between fork and exec): nix's `prctl` and
/// `getppid` are one bare system call each.
pub(crate) fn die_with_parent(parent: i32) -> bool {
    // Fails only for an invalid signal number; SIGKILL is valid.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // The parent may have died before the prctl: then we were re-parented already and no
    // signal will come (prctl(2), "PR_SET_PDEATHSIG").
    parent_pid() == parent
}

/// The parent's pid (`getppid(2)`).
pub(crate) fn parent_pid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// Ends the process at once with `code` (`_exit(2)`): no atexit handlers, no destructors.
///
/// Raw libc: nix has no `_exit`, and `std::process::exit` would run the atexit handlers
/// and flush C stdio while the worker's other threads still run.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always sound to call; it ends the process and never returns.
    unsafe { libc::_exit(code) }
}

/// Runs `f` when the process exits normally (`atexit(3)`); false if it could not be
/// registered.
///
/// Raw libc: nix has no `atexit`.
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    // SAFETY: registers a plain `extern "C" fn` with no arguments, which lives for the
    // whole program (a fn item).
    unsafe { libc::atexit(f) == 0 }
}

/// The executable's own code as `(start, len)`: from the lowest to the highest address of
/// its executable `PT_LOAD` segments, read with `dl_iterate_phdr`, which visits the main
/// program first. `(0, 0)` when it could not be found.
///
/// Raw libc: dl_iterate_phdr(3) walks the dynamic loader's list, which nix does not wrap.
pub(crate) fn executable_text() -> (usize, usize) {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut (usize, usize)` passed below, alive for the call;
        // `info` is the loader's description of an object, valid during the callback.
        let (out, info) = unsafe { (&mut *data.cast::<(usize, usize)>(), &*info) };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: the loader describes `dlpi_phnum` program headers at `dlpi_phdr`.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let base = info.dlpi_addr as usize;
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for ph in phdrs {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                let start = base.wrapping_add(ph.p_vaddr as usize);
                lo = lo.min(start);
                hi = hi.max(start.saturating_add(ph.p_memsz as usize));
            }
        }
        if lo < hi {
            *out = (lo, hi - lo);
        }
        // Stop after the first object: the main program.
        1
    }
    let mut out = (0usize, 0usize);
    // SAFETY: `first` only reads what the loader hands it and writes `out`, which outlives
    // the call.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut out).cast()) };
    out
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
    // close-on-exec already, so this never disturbs `Command`. Raw libc: nix has no
    // close_range, so it goes through syscall(2).
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
    // only with a raised RLIMIT_NOFILE, stays inheritable there). Most are not open: EBADF.
    let hi = hi.min(65_535);
    for fd in lo..=hi {
        let _ = set_fd_cloexec(fd as RawFd, true);
    }
}

/// Sets or clears `FD_CLOEXEC` on a bare descriptor number, which may not be open (then
/// `EBADF`, and nothing happens). Async-signal-safe, nothing allocated (an `io::Error`
/// from an errno holds the number only).
///
/// Raw libc: nix's `fcntl` takes a `BorrowedFd`, which must be open for as long as it is
/// borrowed; between fork and exec there are only numbers: the child's copies of the
/// master's sockets, and every number of a range where `close_range` is missing.
fn set_fd_cloexec(fd: RawFd, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl(F_SETFD) with an integer argument touches only the descriptor's flags;
    // a number that is not an open descriptor is an EBADF, not undefined behaviour.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes the descriptor `fd` that the master passed through the environment, once it is
/// checked to be an open Unix stream socket, and marks it close-on-exec (the master's
/// sockets must not leak into anything the worker starts). On error `fd` is left alone:
/// it may belong to something else.
pub(crate) fn adopt_passed_socket(fd: RawFd) -> Result<OwnedFd, String> {
    // A number from the environment may name nothing: only an open descriptor may be owned.
    is_open(fd).map_err(|e| e.to_string())?;
    // SAFETY: `fd` is open (just checked), and the master passed it to this process alone
    // for its link: nothing else in this process owns it or closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let checked = check_stream_socket(owned.as_fd()).and_then(|()| {
        let flags = FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC);
        nix::fcntl::fcntl(&owned, flags).map_err(|e| e.to_string())
    });
    match checked {
        Ok(_) => Ok(owned),
        Err(why) => {
            // Not ours after all: give the number back without closing it.
            let _ = owned.into_raw_fd();
            Err(why)
        }
    }
}

/// Whether `fd` is an open descriptor (`fcntl(F_GETFD)`; `EBADF` if not).
///
/// Raw libc: nix's `fcntl` needs a `BorrowedFd`, that is, a descriptor known to be open,
/// which is what this finds out.
pub(super) fn is_open(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags; a number that is not an
    // open descriptor is an EBADF, not undefined behaviour.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that `fd` is a Unix stream socket (what the master passes a worker).
fn check_stream_socket(fd: BorrowedFd<'_>) -> Result<(), String> {
    use nix::sys::stat::SFlag;
    let st = nix::sys::stat::fstat(fd).map_err(|e| e.to_string())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err("not a socket".into());
    }
    match socket::getsockopt(&fd, socket::sockopt::SockType) {
        Ok(SockType::Stream) => Ok(()),
        _ => Err("not a stream socket".into()),
    }
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
    let (a, r) = limits.regions.unwrap_or((-1, -1));
    let g = limits.ring.unwrap_or(-1);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(
            crate::worker::ENV_FDS,
            format!(
                "{d},{c},{master},{},{},{},{},{}",
                limits.max_frame,
                limits.handshake.as_millis(),
                a,
                r,
                g
            ),
        )
        .stdin(Stdio::null());
    // Without regions or a ring, the data socket stands in for them (kept anyway).
    let or_d = |x: RawFd| if x < 0 { d } else { x };
    let mut keep = [d, c, or_d(a), or_d(r), or_d(g)];
    keep.sort_unstable();
    // SAFETY: the closure runs in the child between fork and exec, where only one thread
    // exists and another thread's lock (malloc's, say) may be held forever. It takes no
    // lock and allocates nothing: `keep` is a copied array; it calls only nix's prctl and
    // getppid (one bare system call each) and the raw fcntl and syscall(close_range) of
    // `set_fd_cloexec` and `cloexec_all_but`, none of which allocates or locks;
    // `io::Error::last_os_error` and `from_raw_os_error` only hold an errno number (no
    // box), and std reports the error through its own pipe without allocating. Each fcntl
    // is on an integer descriptor: one that is not open gives EBADF, no UB.
    unsafe {
        cmd.pre_exec(move || {
            if !die_with_parent(master) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            for fd in keep {
                set_fd_cloexec(fd, false)?;
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
    if inner.pidfd().is_none() {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    Ok(Process { inner })
}

/// Makes the allocator keep up to `bytes` of freed memory instead of returning it to the
/// system at once (glibc's `M_TRIM_THRESHOLD`, and `M_MMAP_THRESHOLD` so that large
/// buffers come from the heap where freed memory is kept): a worker's large buffers then
/// cost page faults on the first call only. [`release_freed_memory`] gives it back.
pub(crate) fn keep_freed_memory(bytes: usize) {
    #[cfg(target_env = "gnu")]
    {
        let b = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets allocator parameters; it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, b);
            libc::mallopt(libc::M_MMAP_THRESHOLD, b / 2);
        }
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = bytes;
}

/// Returns the freed memory the allocator kept (glibc's `malloc_trim`).
pub(crate) fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap memory to the system; thread-safe.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod cloexec_tests {
    use super::cloexec_all_but;
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

    fn cloexec(fd: BorrowedFd<'_>) -> bool {
        let f = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        f.contains(FdFlag::FD_CLOEXEC)
    }

    fn inheritable_pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = std::io::pipe().unwrap();
        let (r, w): (OwnedFd, OwnedFd) = (r.into(), w.into());
        for fd in [&r, &w] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
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
        assert!(!cloexec(b.as_fd()));
        assert!(!cloexec(d.as_fd()));
        assert!(cloexec(a.as_fd()));
        assert!(cloexec(c.as_fd()));
        // Stdio is never touched, kept or not.
        assert!(!cloexec(std::io::stderr().as_fd()));
    }
}
