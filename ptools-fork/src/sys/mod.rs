//! The system calls pfork makes, in one private module with one backend per platform.
//!
//! Every backend provides the same items: `can_fork`, `fork`, `exit_now`, `pipe`, `read`,
//! `read_append`, `write_all`, the poll list (`PollFd`, `poll_in`, `poll_saw`, `poll`),
//! `page_size`, `map_wipe_on_fork`, `unmap`, `getpid`, `die_with_parent`, `flush_c_stdio`,
//! `flush_c_stdout` and `thread_count`. Errors come back as `io::Error` (errno) and are
//! turned into the crate's own error kinds in one place each, by the caller.
//!
//! - `unix.rs`: Linux and macOS.
//! - `stub.rs`: other Unix targets, and any target built with `--cfg ptools_stub` (how CI
//!   type-checks it on Linux): no system call; [`can_fork`] fails with
//!   `ErrorKind::Unsupported`, which a run reports as `PforkError::Unsupported` before
//!   anything else happens.

#[cfg(all(not(ptools_stub), any(target_os = "linux", target_os = "macos")))]
mod unix;
#[cfg(all(not(ptools_stub), any(target_os = "linux", target_os = "macos")))]
pub(crate) use unix::*;

#[cfg(any(ptools_stub, not(any(target_os = "linux", target_os = "macos"))))]
mod stub;
#[cfg(any(ptools_stub, not(any(target_os = "linux", target_os = "macos"))))]
pub(crate) use stub::*;

pub(crate) use libc::pid_t;

/// What `fork` returned, seen from each side.
#[cfg_attr(
    any(ptools_stub, not(any(target_os = "linux", target_os = "macos"))),
    expect(dead_code, reason = "the stub backend never forks")
)]
pub(crate) enum Forked {
    /// We are the new child process.
    Child,
    /// We are the parent; the child has this pid.
    Parent(pid_t),
}

/// Human-readable name of a signal (`SIGKILL`), or its number.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}
