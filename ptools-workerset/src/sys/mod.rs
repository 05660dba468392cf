//! The operating-system calls this crate makes, in one private module with one backend per
//! platform.
//!
//! Every backend provides the same items: the link's calls (`socketpair`, `send_all`,
//! `recv`, `poll_readable`, `shutdown`), the death watcher's poll list (`PollFd`,
//! `poll_in`, `poll_saw`, `poll_forever`), the worker handle `Process` and
//! `spawn_worker`, `BuildId::of_self`, `executable_text`, and what worker mode needs
//! (`adopt_passed_socket`, `parent_pid`, `die_with_parent`, `exit_now`, `at_exit`).
//!
//! - `linux.rs`: Linux. Workers need `PR_SET_PDEATHSIG`, pidfds and `close_range`, which
//!   macOS lacks.
//! - `stub.rs`: every other target, and any target built with `--cfg ptools_stub` (how CI
//!   type-checks it on Linux): no system call. Starting a worker fails with
//!   `ErrorKind::Unsupported` ([`Error::Io`], see [`Error::is_unsupported`]) before
//!   anything is started; the master's own calls to itself (worker 1) still run.
//!
//! [`Error::Io`]: crate::Error::Io
//! [`Error::is_unsupported`]: crate::Error::is_unsupported

use std::time::Duration;

#[cfg(all(not(ptools_stub), target_os = "linux"))]
mod linux;
#[cfg(all(not(ptools_stub), target_os = "linux"))]
pub(crate) use linux::*;

#[cfg(any(ptools_stub, not(target_os = "linux")))]
mod stub;
#[cfg(any(ptools_stub, not(target_os = "linux")))]
pub(crate) use stub::*;

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

/// What a worker is told at start: the frame cap of its link and how long it waits for the
/// master's answer to its handshake.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    any(ptools_stub, not(target_os = "linux")),
    expect(dead_code, reason = "the stub backend starts no worker to tell")
)]
pub(crate) struct WorkerLimits {
    pub(crate) max_frame: usize,
    pub(crate) handshake: Duration,
    /// The descriptors of the worker's two shared-memory regions (arguments, results),
    /// when they could be made: passed to it at its start.
    pub(crate) regions: Option<(i32, i32)>,
    /// The descriptor of the worker's shared-memory ring, when it has one: its data link
    /// after the handshake.
    pub(crate) ring: Option<i32>,
}
