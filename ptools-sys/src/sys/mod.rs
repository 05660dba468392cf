//! Every system call of this crate, in one private module with one backend per platform.
//!
//! Every backend provides the same items: `pidfd_open`, `pidfd_send_signal` (Linux),
//! `waitpid_nohang`, `waitid_pidfd_nohang` (Linux), `waitid_pid_peek` and `ChildInfo` for
//! the process handle; `wait_readable`, `kill`, `getpid` for both; for the signal handler
//! and its installation, `current_handler`, `install_handler`, `restore_default`,
//! `poll_in`, `close`, `now_ms`, `unlink_if_same` and `die_by`. Errors come back as
//! `io::Error`.
//!
//! - `unix.rs`: Linux and macOS, through nix (raw `libc` where nix does not fit, each with
//!   its reason).
//! - `stub.rs`: every other target, and any target built with `--cfg ptools_stub` (how CI
//!   type-checks it on Linux): no system call; each operation fails with
//!   `ErrorKind::Unsupported` or does nothing, and no signal handler is ever installed.

#[cfg(all(not(ptools_stub), any(target_os = "linux", target_os = "macos")))]
mod unix;
#[cfg(all(not(ptools_stub), any(target_os = "linux", target_os = "macos")))]
pub(crate) use unix::*;

#[cfg(any(ptools_stub, not(any(target_os = "linux", target_os = "macos"))))]
mod stub;
#[cfg(any(ptools_stub, not(any(target_os = "linux", target_os = "macos"))))]
pub(crate) use stub::*;
