//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong with a queued task.
///
/// The type is `Clone` because one failure (a dead worker, say) is reported to every task
/// it ends.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The remote call failed: the remote function panicked
    /// ([`ptools_workerset::Error::RemotePanic`]), the worker died while the task ran or
    /// before it could start ([`ptools_workerset::Error::WorkerDied`]), or the data or the
    /// result failed to encode or decode.
    Worker(ptools_workerset::Error),
    /// A target names a worker that does not exist (or never did in this queue's cluster).
    UnknownWorker(usize),
    /// A target names a host (name, short name or IP address) no prepared worker runs on.
    UnknownHost(String),
    /// A priority was NaN.
    InvalidPriority(f64),
    /// The priority function given to
    /// [`TaskQueue::set_priorities`](crate::TaskQueue::set_priorities) panicked; this is
    /// the panic's message (`"<non-string panic payload>"` when it was not a string).
    PriorityPanic(String),
    /// An argument was rejected before anything was queued.
    InvalidArgument(String),
    /// The task was removed from the queue before it ran.
    Dequeued,
    /// No live worker is left that the task could run on.
    NoWorkers,
    /// The queue was dropped before the task ran.
    Shutdown,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Worker(e) => write!(f, "{e}"),
            Error::UnknownWorker(id) => write!(f, "unknown worker {id}"),
            Error::UnknownHost(h) => write!(f, "no worker on host {h:?}"),
            Error::InvalidPriority(p) => write!(f, "invalid priority {p}"),
            Error::PriorityPanic(m) => write!(f, "priority function panicked: {m}"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Dequeued => f.write_str("task dequeued before it ran"),
            Error::NoWorkers => f.write_str("no live worker left for the task"),
            Error::Shutdown => f.write_str("queue shut down before the task ran"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Worker(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ptools_workerset::Error> for Error {
    fn from(e: ptools_workerset::Error) -> Self {
        Error::Worker(e)
    }
}

impl Error {
    /// True when the task's worker died ([`ptools_workerset::Error::WorkerDied`]).
    pub fn is_worker_died(&self) -> bool {
        matches!(self, Error::Worker(e) if e.is_worker_died())
    }

    /// True when the remote function panicked ([`ptools_workerset::Error::RemotePanic`]).
    pub fn is_remote_panic(&self) -> bool {
        matches!(self, Error::Worker(e) if e.is_remote_panic())
    }
}
