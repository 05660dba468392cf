//! The backend of targets without worker processes (every target but Linux, and any target
//! built with `--cfg ptools_stub`): no system call. No worker can be started or entered:
//! [`BuildId::of_self`], the first system call of `addprocs`, fails with
//! `ErrorKind::Unsupported`, and so does everything a link or a worker would need. The
//! master's calls to itself (worker 1) need none of this and still run.

use std::ffi::OsString;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use super::{BuildId, WorkerLimits};
use crate::error::Termination;

fn unsupported() -> io::Error {
    io::Error::from(io::ErrorKind::Unsupported)
}

/// No sockets here.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Err(unsupported())
}

/// Unreachable without a socket; fails like the rest.
pub(crate) fn send_all(_fd: RawFd, _buf: &[u8]) -> io::Result<()> {
    Err(unsupported())
}

/// Unreachable without a socket; fails like the rest.
pub(crate) fn recv(_fd: RawFd, _buf: &mut [u8]) -> io::Result<usize> {
    Err(unsupported())
}

/// Unreachable without a socket; fails like the rest.
pub(crate) fn poll_readable(_fd: BorrowedFd<'_>, _timeout: Duration) -> io::Result<bool> {
    Err(unsupported())
}

/// Unreachable without a socket; nothing to wake.
pub(crate) fn shutdown(_fd: RawFd) {}

/// A poll entry that is never polled.
#[derive(Debug)]
pub(crate) struct PollFd<'fd>(PhantomData<BorrowedFd<'fd>>);

/// A poll entry for `fd`.
pub(crate) fn poll_in(_fd: BorrowedFd<'_>) -> PollFd<'_> {
    PollFd(PhantomData)
}

/// Nothing was polled, so nothing was seen.
pub(crate) fn poll_saw(_p: &PollFd<'_>) -> bool {
    false
}

/// No poll here.
pub(crate) fn poll_forever(_fds: &mut [PollFd<'_>]) -> io::Result<()> {
    Err(unsupported())
}

/// A worker process: none can exist here ([`spawn_worker`] always fails), so the type has
/// no value and its methods cannot be called.
#[derive(Debug)]
pub(crate) struct Process(std::convert::Infallible);

impl Process {
    pub(crate) fn pid(&self) -> i32 {
        match self.0 {}
    }

    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        match self.0 {}
    }

    pub(crate) fn kill(&self) {
        match self.0 {}
    }

    pub(crate) fn reap(&self, _grace: Duration) -> Termination {
        match self.0 {}
    }

    pub(crate) fn try_wait(&self) -> Option<Termination> {
        match self.0 {}
    }

    /// No launcher can be adopted here.
    pub(crate) fn adopt(_pid: i32) -> io::Result<Process> {
        Err(unsupported())
    }
}

impl BuildId {
    /// No build identity here: `addprocs` fails with this before starting anything.
    pub(crate) fn of_self() -> io::Result<BuildId> {
        Err(unsupported())
    }
}

/// No worker can hold a function here, so no address needs a fixed offset from the
/// anchor: the whole address space counts as the executable's own code, and the master's
/// calls to itself are never refused as foreign.
pub(crate) fn executable_text() -> (usize, usize) {
    (0, usize::MAX)
}

/// No worker mode here.
pub(crate) fn adopt_passed_socket(_fd: RawFd) -> Result<OwnedFd, String> {
    Err("worker processes are not supported on this platform".into())
}

/// No pid is -1, so no process takes itself for a worker here.
pub(crate) fn parent_pid() -> i32 {
    -1
}

/// Never called: no worker runs here. Says the parent is gone.
pub(crate) fn die_with_parent(_parent: i32) -> bool {
    false
}

/// Ends the process with `code` (reached only when a malformed worker environment is
/// refused; no atexit hook of ours is registered here).
pub(crate) fn exit_now(code: i32) -> ! {
    std::process::exit(code)
}

/// Registers nothing: no worker can be started here, so there is none to stop at exit.
pub(crate) fn at_exit(_f: extern "C" fn()) -> bool {
    false
}

/// No worker processes here.
pub(crate) fn spawn_worker(
    _program: &Path,
    _args: &[OsString],
    _data: &OwnedFd,
    _ctl: &OwnedFd,
    _limits: WorkerLimits,
) -> io::Result<Process> {
    Err(unsupported())
}

/// A shared-memory region: none can exist here ([`Region::create`] always fails; no
/// worker runs to adopt one).
#[derive(Debug)]
pub(crate) struct Region(std::convert::Infallible);

impl Region {
    pub(crate) fn create() -> io::Result<Region> {
        Err(unsupported())
    }
    pub(crate) fn adopt(_fd: RawFd) -> Result<Region, String> {
        Err("shared-memory regions are not supported on this platform".into())
    }
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self.0 {}
    }
    pub(crate) fn ensure(&mut self, _len: usize) -> io::Result<()> {
        match self.0 {}
    }
    pub(crate) fn cover(&mut self, _off: u64, _len: u64, _max: usize) -> Result<(), String> {
        match self.0 {}
    }
    pub(crate) fn write(&mut self, _off: usize, _src: &[u8]) {
        match self.0 {}
    }
    pub(crate) fn copy_within(&mut self, _from: usize, _to: usize, _len: usize) {
        match self.0 {}
    }
    pub(crate) fn settle(&mut self, _used: usize) {
        match self.0 {}
    }
    pub(crate) fn home(&self) -> Option<crate::codec::Home> {
        match self.0 {}
    }
    pub(crate) fn keep_lent(&mut self, _off: usize, _len: usize) {
        match self.0 {}
    }
    pub(crate) fn shared(&self, _off: usize, _len: usize) -> *const u8 {
        match self.0 {}
    }
    pub(crate) fn copy_out(&mut self, _off: usize, _len: usize, _dst: &mut Vec<u8>) {
        match self.0 {}
    }
    /// # Safety
    ///
    /// None needed: it cannot be called.
    pub(crate) unsafe fn slice(&self, _off: usize, _len: usize) -> &[u8] {
        match self.0 {}
    }
}

/// A shared-memory ring: none can exist here ([`Ring::create`] always fails; no worker
/// runs to adopt one).
#[derive(Debug)]
pub(crate) struct Ring(std::convert::Infallible);

impl Ring {
    pub(crate) fn create() -> io::Result<Ring> {
        Err(unsupported())
    }
    pub(crate) fn adopt(_fd: RawFd) -> Result<Ring, String> {
        Err("shared-memory rings are not supported on this platform".into())
    }
    pub(crate) fn raw_fd(&self) -> RawFd {
        match self.0 {}
    }
    pub(crate) fn master(self, _spin: Duration) -> crate::wire::UnixLink {
        match self.0 {}
    }
    pub(crate) fn worker(self, _spin: Duration) -> crate::wire::UnixLink {
        match self.0 {}
    }
}

/// Nothing spins here (no worker runs).
pub(crate) fn ring_spin() -> Duration {
    Duration::ZERO
}

/// Nothing to tune here (no worker runs).
pub(crate) fn keep_freed_memory(_bytes: usize) {}

/// Nothing to give back here (no worker runs).
pub(crate) fn release_freed_memory() {}
