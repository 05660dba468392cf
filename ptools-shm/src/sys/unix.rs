//! The POSIX backend (Linux tested; macOS by design), with the differences between the two
//! defined once here rather than at every call site.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

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
pub(crate) fn os_name(full: &str) -> String {
    full.to_owned()
}

/// The name handed to `shm_open`: on macOS a name longer than `PSHMNAMLEN` becomes
/// `/ptools_h<16 hex digits of a FNV-1a hash>`, which stays recognisable as ours.
#[cfg(target_os = "macos")]
pub(crate) fn os_name(full: &str) -> String {
    if full.len() <= MACOS_MAX + 1 {
        return full.to_owned();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in full.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("/ptools_h{h:016x}")
}

fn cstring(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)`.
pub(crate) fn create_exclusive(name: &str) -> io::Result<OwnedFd> {
    open(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600)
}

/// `shm_open(name, O_RDWR)` or `O_RDONLY`.
pub(crate) fn open_existing(name: &str, writable: bool) -> io::Result<OwnedFd> {
    let flags = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    open(name, flags, 0)
}

fn open(name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    // SAFETY: `c` is a valid NUL-terminated string alive for the call; the mode is passed
    // as the variadic argument `shm_open` reads when O_CREAT is set (as c_uint, the
    // promoted type).
    let fd = unsafe {
        libc::shm_open(
            c.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by shm_open, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_unlink(name)`.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: `c` is a valid NUL-terminated string alive for the call.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the object's size. On a new object this allocates nothing (on Linux's tmpfs nor
/// on macOS); the pages come from [`reserve`] or the first touch.
pub(crate) fn set_len(fd: &OwnedFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: `fd` is an open descriptor owned by the caller.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
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
        // SAFETY: `fd` is an open descriptor owned by the caller.
        match unsafe { libc::posix_fallocate(fd.as_raw_fd(), o, l) } {
            0 => at += n,
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
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

/// The identity and size of an open object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) size: u64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// Last status change (creation, `ftruncate`), in seconds since the epoch.
    pub(crate) ctime: i64,
}

pub(crate) fn stat(fd: &OwnedFd) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open; `st` points to writable memory of the right type.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(to_stat(&st))
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
    let path = cstring(&format!("/dev/shm{name}"))?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `path` is a valid C string; `st` points to writable memory of the right type.
    if unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: stat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(to_stat(&st))
}

/// The identity of the object a name refers to now. macOS has no path for shared memory
/// objects, so this opens the name (and fails when descriptors run out).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn stat_name(name: &str) -> io::Result<Stat> {
    stat(&open_existing(name, false)?)
}

/// Maps `len` bytes of `fd` shared, read-write or read-only.
pub(crate) fn map(fd: &OwnedFd, len: usize, writable: bool) -> io::Result<NonNull<u8>> {
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    let flags = libc::MAP_SHARED;
    // SAFETY: asking for a fresh mapping (null hint) of an open descriptor; the kernel
    // checks length and protection against the descriptor and reports failure.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

/// Unmaps a mapping made by [`map`].
///
/// # Safety
///
/// `ptr` and `len` must be exactly those of a live mapping from [`map`], and nothing may
/// use the mapping afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: forwarded from the caller.
    if unsafe { libc::munmap(ptr.as_ptr().cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes an exclusive `flock`, waiting for it. Released when the descriptor is closed.
pub(crate) fn lock(fd: &OwnedFd) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is an open descriptor owned by the caller.
        if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes an exclusive `flock` without waiting; `Ok(false)` when someone else holds it.
/// The lock is released when the descriptor is closed.
pub(crate) fn try_lock(fd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: `fd` is an open descriptor owned by the caller.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
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
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let rc = unsafe { libc::kill(p, 0) };
        return rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    process_start_time(pid) == Some(start)
}
