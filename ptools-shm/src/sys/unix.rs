//! The POSIX backend (Linux tested; macOS by design), with the differences between the two
//! defined once here rather than at every call site.
//!
//! The system calls go through `nix` and the mappings through `memmap2`. Raw `libc` stays
//! only where neither has a wrapper: `proc_pidinfo` on macOS.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::Stat;

/// Longest segment name without its leading `/`.
///
/// Linux keeps POSIX shared memory as files in `/dev/shm`, so the limit is a file name's,
/// `NAME_MAX` (see shm_overview(7)). macOS allows `PSHMNAMLEN` = 31 bytes including the
/// slash; longer names are shortened by a hash in [`os_name`], so the effective limit there
/// is that of Linux too.
pub(crate) const MAX_NAME_LEN: usize = 255;

#[cfg(target_os = "macos")]
const MACOS_MAX: usize = 30;

/// The name handed to `shm_open`: on Linux the name itself.
#[cfg(not(target_os = "macos"))]
pub(crate) fn os_name(full: String) -> String {
    full
}

/// The name handed to `shm_open`: on macOS a name longer than `PSHMNAMLEN` becomes
/// `/ptools_h<16 hex digits of a FNV-1a hash>`, which stays recognisable as ours.
#[cfg(target_os = "macos")]
pub(crate) fn os_name(full: String) -> String {
    if full.len() <= MACOS_MAX + 1 {
        return full;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in full.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("/ptools_h{h:016x}")
}

/// A name with a NUL byte cannot reach the kernel; reported as before the move to nix, as
/// `InvalidInput` (nix would say `EINVAL`).
fn check_name(name: &str) -> io::Result<()> {
    if name.as_bytes().contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    Ok(())
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)`.
pub(crate) fn create_exclusive(name: &str) -> io::Result<OwnedFd> {
    open(
        name,
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
}

/// `shm_open(name, O_RDWR)` or `O_RDONLY`.
pub(crate) fn open_existing(name: &str, writable: bool) -> io::Result<OwnedFd> {
    let flags = if writable {
        OFlag::O_RDWR
    } else {
        OFlag::O_RDONLY
    };
    open(name, flags, Mode::empty())
}

fn open(name: &str, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
    check_name(name)?;
    Ok(nix::sys::mman::shm_open(
        name,
        flags | OFlag::O_CLOEXEC,
        mode,
    )?)
}

/// `shm_unlink(name)`.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    check_name(name)?;
    Ok(nix::sys::mman::shm_unlink(name)?)
}

/// Sets the object's size. On a new object this allocates nothing (on Linux's tmpfs nor
/// on macOS); the pages come from [`reserve`] or the first touch.
pub(crate) fn set_len(fd: &OwnedFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        match nix::unistd::ftruncate(fd, len) {
            Err(Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Allocates the pages of `[off, off + len)` now, so that a full file system is an
/// `ENOSPC` here and never a `SIGBUS` at first touch. `posix_fallocate` returns the error
/// number instead of setting errno (posix_fallocate(3)). It works in chunks: a call
/// interrupted by a signal (`EINTR`) is retried for its chunk only, so a large
/// reservation under a frequent signal (a profiler's timer) still makes progress.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn reserve(fd: &OwnedFd, off: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 64 << 20;
    let end = off
        .checked_add(len)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
    let mut at = off;
    while at < end {
        let n = CHUNK.min(end - at);
        let o = libc::off_t::try_from(at).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let l = libc::off_t::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // nix turns the returned error number into an `Errno` (it does not use errno).
        match nix::fcntl::posix_fallocate(fd, o, l) {
            Ok(()) => at += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// macOS has no `posix_fallocate` for shared memory objects, whose pages it allocates at
/// `ftruncate` time; nothing more to reserve.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn reserve(_fd: &OwnedFd, _off: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

pub(crate) fn stat(fd: &OwnedFd) -> io::Result<Stat> {
    Ok(to_stat(&nix::sys::stat::fstat(fd)?))
}

#[allow(clippy::unnecessary_cast)] // the field types differ between platforms
fn to_stat(st: &libc::stat) -> Stat {
    Stat {
        size: st.st_size.max(0) as u64,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        ctime: st.st_ctime as i64,
    }
}

/// The identity of the object a name refers to now, without taking a descriptor: on Linux
/// POSIX shared memory objects are files in `/dev/shm` (shm_overview(7)), so `stat` on the
/// path works even when this process has run out of descriptors (a `Drop` must not fail
/// then).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn stat_name(name: &str) -> io::Result<Stat> {
    const DIR: &[u8] = b"/dev/shm";
    check_name(name)?;
    // The path is put together on the stack: no allocation on the way to a `Drop`'s unlink.
    // nix adds the NUL on its own stack buffer.
    let mut path = [0u8; DIR.len() + 1 + MAX_NAME_LEN];
    let path = path
        .get_mut(..DIR.len() + name.len())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
    path[..DIR.len()].copy_from_slice(DIR);
    path[DIR.len()..].copy_from_slice(name.as_bytes());
    Ok(to_stat(&nix::sys::stat::stat(&*path)?))
}

/// The identity of the object a name refers to now. macOS has no path for shared memory
/// objects, so this opens the name (and fails when descriptors run out).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn stat_name(name: &str) -> io::Result<Stat> {
    stat(&open_existing(name, false)?)
}

/// Maps `len` bytes of `fd` shared (`MAP_SHARED`), read-write or read-only, from offset 0.
/// The mapping is unmapped when the returned value is dropped.
pub(crate) fn map(fd: &OwnedFd, len: usize, writable: bool) -> io::Result<MmapRaw> {
    let mut opts = MmapOptions::new();
    // An explicit length: memmap2 then takes no `fstat` of its own.
    opts.len(len);
    if writable {
        opts.map_raw(fd.as_raw_fd())
    } else {
        opts.map_raw_read_only(fd.as_raw_fd())
    }
}

/// Pre-faults every page of a writable mapping for writing: one
/// `madvise(MADV_POPULATE_WRITE)` (Linux 5.14, madvise(2)). It never changes the pages'
/// contents. Old kernels answer `EINVAL`, which the caller may ignore.
#[cfg(target_os = "linux")]
pub(crate) fn populate_write(map: &MmapRaw) -> io::Result<()> {
    map.advise(memmap2::Advice::PopulateWrite)
}

/// Elsewhere there is no such advice: pages fault on first touch as usual.
#[cfg(not(target_os = "linux"))]
pub(crate) fn populate_write(_map: &MmapRaw) -> io::Result<()> {
    Ok(())
}

/// Allocates and maps the first `len` bytes' pages of a writable shared mapping now, or
/// fails instead of the `SIGBUS` a write would get: one `madvise(MADV_POPULATE_WRITE)`
/// (Linux 5.14, madvise(2)). `EFAULT` means a write would have raised `SIGBUS` (on tmpfs:
/// no space left), `ENOMEM` no memory; `EINVAL` (an older kernel) means the caller must
/// reserve another way.
#[cfg(target_os = "linux")]
pub(crate) fn populate_write_start(map: &MmapRaw, len: usize) -> io::Result<()> {
    map.advise_range(memmap2::Advice::PopulateWrite, 0, len)
}

/// No such advice elsewhere: the caller reserves another way.
#[cfg(not(target_os = "linux"))]
pub(crate) fn populate_write_start(_map: &MmapRaw, _len: usize) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

/// Writes all of `buf` at `off` through the descriptor (`pwrite`). On Linux's tmpfs this
/// allocates the pages it covers, `ENOSPC` when the file system is full, and maps nothing:
/// a new segment's header costs no page fault and no page-table entry to tear down.
#[cfg(target_os = "linux")]
pub(crate) fn write_at(fd: &OwnedFd, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let o =
            libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        match nix::sys::uio::pwrite(fd, buf, o) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                off += n as u64;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// macOS shared memory objects cannot be written through a descriptor: `EINVAL`, and the
/// caller writes through the mapping instead.
#[cfg(not(target_os = "linux"))]
pub(crate) fn write_at(_fd: &OwnedFd, _buf: &[u8], _off: u64) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

/// Takes an exclusive `flock`, waiting for it. Released when the descriptor is closed.
pub(crate) fn lock(fd: &OwnedFd) -> io::Result<()> {
    loop {
        match flock(fd, nix::fcntl::FlockArg::LockExclusive) {
            Err(Errno::EINTR) => continue,
            r => return Ok(r?),
        }
    }
}

/// Takes an exclusive `flock` without waiting; `Ok(false)` when someone else holds it.
/// The lock is released when the descriptor is closed.
pub(crate) fn try_lock(fd: &OwnedFd) -> io::Result<bool> {
    match flock(fd, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(()) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// nix's `flock` on a borrowed descriptor. Its replacement, `nix::fcntl::Flock`, takes the
/// descriptor by value and unlocks in its `Drop` with one more `flock(LOCK_UN)` call; here
/// the lock must last exactly until the caller closes the descriptor (which releases it),
/// and the creation path must not pay for an extra system call.
#[allow(deprecated)]
fn flock(fd: &OwnedFd, arg: nix::fcntl::FlockArg) -> nix::Result<()> {
    nix::fcntl::flock(fd.as_raw_fd(), arg)
}

/// The names of our objects in the shared-memory file system, without the leading `/`.
/// Linux shows them as files in `/dev/shm` (shm_overview(7)).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn list_names() -> Option<io::Result<Vec<String>>> {
    let entries = match std::fs::read_dir("/dev/shm") {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("ptools_"))
        .collect()))
}

/// macOS offers no way to enumerate POSIX shared memory objects.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn list_names() -> Option<io::Result<Vec<String>>> {
    None
}

/// A process's start time: field 22 of `/proc/<pid>/stat`, in clock ticks since boot
/// (proc_pid_stat(5)). Together with the pid it names a process uniquely, even after the
/// pid is reused. `None` for a process that does not exist or is a zombie.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, spaces and ')' included:
    // the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` was field 3; the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// A process's start time on macOS: `pbi_start_tvsec`/`pbi_start_tvusec` from
/// `proc_pidinfo(PROC_PIDTBSDINFO)`, in microseconds since the epoch. `None` for a process
/// that does not exist or is a zombie (`SZOMB`, sys/proc.h).
#[cfg(target_os = "macos")]
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    const SZOMB: u32 = 5;
    let mut info = std::mem::MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
    // SAFETY: `info` is writable for `size` bytes, the size we pass.
    let got = unsafe {
        libc::proc_pidinfo(
            libc::c_int::try_from(pid).ok()?,
            libc::PROC_PIDTBSDINFO,
            0,
            info.as_mut_ptr().cast(),
            size,
        )
    };
    if got != size {
        return None;
    }
    // SAFETY: proc_pidinfo filled all `size` bytes.
    let info = unsafe { info.assume_init() };
    (info.pbi_status != SZOMB).then(|| info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
}

/// Whether the process `pid` that started at `start` is still alive (not a zombie). A
/// reused pid has another start time, so it does not count. A start time of 0 means the
/// creator could not read its own (no `/proc`): then any live process with that pid
/// counts, since wrongly calling a live owner dead is the error that must not happen.
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return false;
    }
    if start == 0 {
        let Ok(p) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // No signal: only checks that the process exists and may be signalled.
        return matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
            Ok(()) | Err(Errno::EPERM)
        );
    }
    process_start_time(pid) == Some(start)
}
