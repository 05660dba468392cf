//! The one error type of `ptools-shm`.

use std::io;

use crate::ElemType;

/// Everything that can go wrong creating, attaching, unlinking or listing shared arrays.
///
/// Input errors (`Invalid*`, `NameTooLong`, `DuplicateName`) are found before any system
/// call, so nothing has been created when they are returned. Every other error leaves
/// nothing behind either: a set that fails half-way unlinks what it had created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// An array name is empty, or holds `/` or NUL.
    #[error("invalid array name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A prefix is empty or holds a character outside `[A-Za-z0-9.-]`.
    #[error("invalid prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The offending prefix.
        prefix: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A name (with its prefix) is too long for the system's shared-memory names.
    #[error("segment name {name:?} is longer than {max} bytes")]
    NameTooLong {
        /// The full segment name that would be needed.
        name: String,
        /// The longest name this system accepts, in bytes.
        max: usize,
    },
    /// Dims with a zero, too many axes, or a byte size that overflows.
    #[error("invalid dims {dims:?}: {reason}")]
    InvalidDims {
        /// The dims asked for.
        dims: Vec<usize>,
        /// Why they were refused.
        reason: &'static str,
    },
    /// The same array name appears twice in one set.
    #[error("array name {name:?} appears twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A segment of that name exists and cannot be taken over: its owner is alive, it is
    /// still being created, it is not a ptools segment at all, or another process took
    /// over the stale segment first.
    #[error("segment {name} already exists{}", owner(*owner_pid))]
    AlreadyExists {
        /// The segment name.
        name: String,
        /// The owner's pid, when the segment has a ptools header.
        owner_pid: Option<u32>,
    },
    /// This process has the segment mapped already (through another handle). One process
    /// holds one handle per segment, so that safe code never sees two overlapping slices
    /// of which one is mutable; share the first handle instead.
    #[error("segment {name} is already mapped in this process")]
    AlreadyMapped {
        /// The segment name.
        name: String,
    },
    /// No segment of that name exists.
    #[error("segment {name} does not exist")]
    NotFound {
        /// The segment name.
        name: String,
    },
    /// The segment holds another element type than the one asked for.
    #[error("{name} holds {found}, not {expected}")]
    TypeMismatch {
        /// The segment or array name.
        name: String,
        /// The type asked for.
        expected: ElemType,
        /// The type the segment holds.
        found: ElemType,
    },
    /// The segment has other dims than the ones asked for.
    #[error("{name} has dims {found:?}, not {expected:?}")]
    DimsMismatch {
        /// The segment name.
        name: String,
        /// The dims asked for.
        expected: Vec<usize>,
        /// The dims the segment holds.
        found: Vec<usize>,
    },
    /// The segment is smaller than its header says, or too small for a header.
    #[error("segment {name} is truncated: {size} bytes, expected {expected}")]
    Truncated {
        /// The segment name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// The size it should have.
        expected: u64,
    },
    /// The segment exists but does not carry a ptools header (wrong magic or version).
    #[error("segment {name} is not a ptools array")]
    Foreign {
        /// The segment name.
        name: String,
    },
    /// The segment is still being created: its ready flag is not set, or its creator is
    /// still at work and has not sized it or written its header yet. Attaching reports
    /// this at once, without waiting; retry if the creator is expected to finish.
    #[error("segment {name} is still being created")]
    NotReady {
        /// The segment name.
        name: String,
    },
    /// The shared-memory file system has no room for the segment (`ENOSPC` while reserving
    /// its pages). Nothing was left behind.
    #[error("no space in shared memory for {name} ({bytes} bytes)")]
    OutOfSpace {
        /// The segment name.
        name: String,
        /// The bytes that were asked for.
        bytes: u64,
    },
    /// A set has no array of that name.
    #[error("no array named {name:?} in this set")]
    NoSuchArray {
        /// The name asked for.
        name: String,
    },
    /// The operation is not available on this platform.
    #[error("{what} is not supported on this platform")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
    },
    /// A system call failed for another reason.
    #[error("{op} failed{}: {source}", for_name(name))]
    Os {
        /// The call that failed.
        op: &'static str,
        /// The segment it was for (may be empty).
        name: String,
        /// The error the system reported.
        source: io::Error,
    },
}

impl ShmError {
    /// Whether this error was caused by the caller's input, found before any system call.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            ShmError::InvalidName { .. }
                | ShmError::InvalidPrefix { .. }
                | ShmError::NameTooLong { .. }
                | ShmError::InvalidDims { .. }
                | ShmError::DuplicateName { .. }
        )
    }

    /// Builds an [`ShmError::Os`] from the last `errno`, mapping the errors that have a
    /// variant of their own. This is the one place where errno values are interpreted.
    ///
    /// `ErrorKind::Unsupported` without an OS error code comes from the stub backend (a
    /// target without ptools' shared memory): [`ShmError::Unsupported`], naming the call.
    pub(crate) fn os(op: &'static str, name: &str, source: io::Error) -> ShmError {
        if source.kind() == io::ErrorKind::Unsupported && source.raw_os_error().is_none() {
            return ShmError::Unsupported { what: op };
        }
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::ENOENT) => ShmError::NotFound { name },
            Some(libc::EEXIST) => ShmError::AlreadyExists {
                name,
                owner_pid: None,
            },
            Some(libc::ENAMETOOLONG) => ShmError::NameTooLong {
                max: crate::sys::MAX_NAME_LEN,
                name,
            },
            _ => ShmError::Os { op, name, source },
        }
    }
}

/// The owner part of [`ShmError::AlreadyExists`]'s message, when the owner is known.
fn owner(pid: Option<u32>) -> String {
    pid.map(|p| format!(", owned by live pid {p}"))
        .unwrap_or_default()
}

/// The segment part of [`ShmError::Os`]'s message, when there is one.
fn for_name(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" for {name}")
    }
}

/// The result type of `ptools-shm`.
pub type Result<T, E = ShmError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stub_s_unsupported_is_its_own_variant_and_an_os_enosys_is_not() {
        let stub = io::Error::from(io::ErrorKind::Unsupported);
        assert!(matches!(
            ShmError::os("shm_open", "/ptools_x", stub),
            ShmError::Unsupported { what: "shm_open" }
        ));
        let enosys = io::Error::from_raw_os_error(libc::ENOSYS);
        assert_eq!(enosys.kind(), io::ErrorKind::Unsupported);
        assert!(matches!(
            ShmError::os("shm_open", "/ptools_x", enosys),
            ShmError::Os { op: "shm_open", .. }
        ));
    }
}
