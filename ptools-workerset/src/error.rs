//! The crate's one error type.

use std::fmt;
use std::sync::Arc;

/// How a worker process ended, as `waitpid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Termination {
    /// The process called `exit` (or returned from `main`) with this code.
    Exited(i32),
    /// The process was ended by this signal (`libc::SIGKILL`, `libc::SIGSEGV`, ...).
    Signaled(i32),
    /// The status could not be collected (the process was reaped elsewhere).
    Unknown,
    /// A worker on a TCP link (another host): its connection ended or was reset. Its exit
    /// status is not known on this host.
    Disconnected,
    /// A worker on a TCP link did not answer the heartbeat within its timeout
    /// ([`ClusterBuilder::heartbeat`](crate::ClusterBuilder::heartbeat)): stopped, its
    /// host gone, or the network cut. The master closed its connections.
    Unresponsive,
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::Exited(c) => write!(f, "exit code {c}"),
            Termination::Signaled(s) => write!(f, "signal {s}"),
            Termination::Unknown => f.write_str("unknown status"),
            Termination::Disconnected => f.write_str("connection lost"),
            Termination::Unresponsive => f.write_str("no heartbeat answer in time"),
        }
    }
}

/// Everything that can go wrong with workers and remote calls.
///
/// The type is `Clone` so that a failure can be reported to every caller that waits on a
/// [`RemoteRef`](crate::RemoteRef) (`wait`, then `fetch`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The remote function panicked. The worker is still up and serves the next call.
    RemotePanic {
        /// The worker (1: the master) where the call ran.
        id: usize,
        /// The panic message (`"<non-string panic payload>"` when it was not a string).
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The worker process ended while the call was pending or before it was sent.
    WorkerDied {
        /// The worker's id.
        id: usize,
        /// The worker's process id.
        pid: i32,
        /// How it ended.
        termination: Termination,
    },
    /// An argument or a result could not be encoded.
    Encode(String),
    /// An argument or a result could not be decoded.
    Decode(String),
    /// A wait with a timeout ran out; the call itself goes on.
    Timeout,
    /// No worker with this id exists (or it was removed).
    UnknownWorker(usize),
    /// An argument was rejected before anything was done.
    InvalidArgument(String),
    /// The worker set has no live worker left.
    NoWorkers,
    /// A worker process could not be started or did not complete the handshake in time.
    /// Nothing of it is left registered or running.
    WorkerStartFailed(String),
    /// A worker answered the handshake from a different build of the program (another
    /// executable, or a ptools of another wire protocol).
    BuildMismatch,
    /// The result of this `RemoteRef` was already taken by an earlier fetch.
    AlreadyFetched,
    /// The worker sent bytes that are not a valid frame (a bad length, an unknown kind, a
    /// reply to no call). Its link was closed and the process killed and reaped; every call
    /// pending on it fails with this error, and so does every later call to it.
    Protocol {
        /// The worker's id.
        id: usize,
        /// The worker's process id.
        pid: i32,
        /// What was wrong with the stream.
        cause: String,
    },
    /// The encoded argument is larger than the cluster's frame cap
    /// ([`ClusterBuilder::max_frame_bytes`](crate::ClusterBuilder::max_frame_bytes)).
    /// Nothing was sent; the worker goes on serving.
    ArgumentTooLarge {
        /// The encoded argument's size in bytes.
        len: u64,
        /// The largest argument the cap allows.
        cap: u64,
    },
    /// The encoded result is larger than the cluster's frame cap; the worker refused to send
    /// it and goes on serving.
    ResultTooLarge {
        /// The worker where the call ran.
        id: usize,
        /// The encoded result's size in bytes.
        len: u64,
        /// The largest result the cap allows.
        cap: u64,
    },
    /// The function given for a remote call does not lie in the executable's own code (it
    /// belongs to a shared library, say), so a worker could not find it at the same place.
    /// Nothing was sent.
    ForeignFunction {
        /// The function's address in this process.
        addr: usize,
    },
    /// An operating-system call failed. On a target without worker processes (see the
    /// crate docs, "Platform support") starting a worker fails with this, of kind
    /// `ErrorKind::Unsupported`, before anything is started ([`Error::is_unsupported`]).
    Io(Arc<std::io::Error>),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::RemotePanic {
                id,
                message,
                location,
            } => {
                write!(f, "remote call on worker {id} panicked: {message}")?;
                if let Some(l) = location {
                    write!(f, " at {l}")?;
                }
                Ok(())
            }
            Error::WorkerDied {
                id,
                pid,
                termination,
            } => {
                write!(f, "worker {id} (pid {pid}) died: {termination}")
            }
            Error::Encode(m) => write!(f, "encode failed: {m}"),
            Error::Decode(m) => write!(f, "decode failed: {m}"),
            Error::Timeout => f.write_str("timed out"),
            Error::UnknownWorker(id) => write!(f, "unknown worker {id}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::NoWorkers => f.write_str("no live workers"),
            Error::WorkerStartFailed(m) => write!(f, "worker failed to start: {m}"),
            Error::BuildMismatch => f.write_str("worker runs a different build of the program"),
            Error::AlreadyFetched => f.write_str("result already fetched"),
            Error::Protocol { id, pid, cause } => {
                write!(f, "worker {id} (pid {pid}) broke the protocol: {cause}")
            }
            Error::ArgumentTooLarge { len, cap } => {
                write!(
                    f,
                    "argument of {len} bytes is over the frame cap of {cap} bytes"
                )
            }
            Error::ResultTooLarge { id, len, cap } => write!(
                f,
                "result of {len} bytes on worker {id} is over the frame cap of {cap} bytes"
            ),
            Error::ForeignFunction { addr } => {
                write!(
                    f,
                    "function at {addr:#x} is not in the executable's own code"
                )
            }
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// True for [`Error::WorkerDied`].
    pub fn is_worker_died(&self) -> bool {
        matches!(self, Error::WorkerDied { .. })
    }

    /// True when the worker is gone: [`Error::WorkerDied`], or [`Error::Protocol`] (the
    /// worker broke the protocol and was killed).
    pub fn is_worker_lost(&self) -> bool {
        matches!(self, Error::WorkerDied { .. } | Error::Protocol { .. })
    }

    /// True for [`Error::RemotePanic`].
    pub fn is_remote_panic(&self) -> bool {
        matches!(self, Error::RemotePanic { .. })
    }

    /// True when this target has no worker processes: [`Error::Io`] of kind
    /// `ErrorKind::Unsupported`, from the stub backend (see the crate docs, "Platform
    /// support").
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == std::io::ErrorKind::Unsupported)
    }
}
