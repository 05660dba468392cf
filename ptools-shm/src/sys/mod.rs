//! The system calls behind shared arrays, in one private module.
//!
//! Every backend provides the same items: the name limit, name mapping, process identity,
//! and thin safe wrappers over `shm_open`, `ftruncate`, `posix_fallocate`, `mmap`, `flock`
//! and `shm_unlink`. Errors come back as `io::Error` and are interpreted once, in
//! `ShmError::os`.
//!
//! - `unix.rs`: Linux and macOS (POSIX shared memory), through nix and memmap2.
//! - `stub.rs`: other Unix targets, and any target built with `--cfg ptools_stub` (how CI
//!   type-checks it on Linux): no system call; every operation fails with
//!   `ErrorKind::Unsupported`, which `ShmError::os` reports as [`ShmError::Unsupported`].
//!
//! [`ShmError::Unsupported`]: crate::ShmError::Unsupported

#[cfg(all(not(ptools_stub), any(target_os = "linux", target_os = "macos")))]
mod unix;
#[cfg(all(not(ptools_stub), any(target_os = "linux", target_os = "macos")))]
pub(crate) use unix::*;

#[cfg(all(
    unix,
    any(ptools_stub, not(any(target_os = "linux", target_os = "macos")))
))]
mod stub;
#[cfg(all(
    unix,
    any(ptools_stub, not(any(target_os = "linux", target_os = "macos")))
))]
pub(crate) use stub::*;

#[cfg(not(unix))]
compile_error!(
    "ptools-shm needs a Unix target (its segments are file descriptors); Unix targets other \
     than Linux and macOS build with a stub backend"
);

/// The identity and size of an open object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) size: u64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// Last status change (creation, `ftruncate`), in seconds since the epoch.
    pub(crate) ctime: i64,
}
