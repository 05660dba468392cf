//! The backend of targets without ptools' shared memory (Unix targets other than Linux and
//! macOS, and any target built with `--cfg ptools_stub`): no system call. Every operation
//! fails with `ErrorKind::Unsupported` (reported as `ShmError::Unsupported`), so nothing is
//! ever created, opened or mapped, and the answers about processes are the cautious ones.

use std::io;
use std::os::fd::OwnedFd;

use memmap2::MmapRaw;

use super::Stat;

fn unsupported() -> io::Error {
    io::Error::from(io::ErrorKind::Unsupported)
}

/// Longest segment name without its leading `/`: the POSIX `NAME_MAX`, as on Linux.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The name as given.
pub(crate) fn os_name(full: String) -> String {
    full
}

/// No shared memory here.
pub(crate) fn create_exclusive(_name: &str) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// No shared memory here.
pub(crate) fn open_existing(_name: &str, _writable: bool) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// No shared memory here.
pub(crate) fn unlink(_name: &str) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn set_len(_fd: &OwnedFd, _len: u64) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn reserve(_fd: &OwnedFd, _off: u64, _len: u64) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn stat(_fd: &OwnedFd) -> io::Result<Stat> {
    Err(unsupported())
}

/// No shared memory here.
pub(crate) fn stat_name(_name: &str) -> io::Result<Stat> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn map(_fd: &OwnedFd, _len: usize, _writable: bool) -> io::Result<MmapRaw> {
    Err(unsupported())
}

/// Unreachable without a mapping; fails like the rest.
pub(crate) fn populate_write(_map: &MmapRaw) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without a mapping; fails like the rest.
pub(crate) fn populate_write_start(_map: &MmapRaw, _len: usize) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn write_at(_fd: &OwnedFd, _buf: &[u8], _off: u64) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn lock(_fd: &OwnedFd) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without an object; fails like the rest.
pub(crate) fn try_lock(_fd: &OwnedFd) -> io::Result<bool> {
    Err(unsupported())
}

/// Cannot enumerate: `list_shm` reports `ShmError::Unsupported`.
pub(crate) fn list_names() -> Option<io::Result<Vec<String>>> {
    None
}

/// Unknown (recorded as 0: "could not read").
pub(crate) fn process_start_time(_pid: u32) -> Option<u64> {
    None
}

/// Unknown, so alive: calling a live owner dead is the error that must not happen.
pub(crate) fn process_alive(pid: u32, _start: u64) -> bool {
    pid != 0
}
