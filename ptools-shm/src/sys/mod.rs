//! The system calls behind shared arrays, in one private module.
//!
//! Every backend provides the same items: the name limit, name mapping, process identity,
//! and thin safe wrappers over `shm_open`, `ftruncate`, `posix_fallocate`, `mmap`, `flock`
//! and `shm_unlink`. Errors come back as `io::Error` and are interpreted once, in
//! `ShmError::os`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
compile_error!(
    "ptools-shm supports Linux and macOS (POSIX shared memory); this target has neither"
);
