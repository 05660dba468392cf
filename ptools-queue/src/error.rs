//! The crate's one error type.

/// Everything that can go wrong with a queued task.
///
/// The type is `Clone` because one failure (a dead worker, say) is reported to every task
/// it ends.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote call failed: the remote function panicked
    /// ([`ptools_workerset::Error::RemotePanic`]), the worker died while the task ran or
    /// before it could start ([`ptools_workerset::Error::WorkerDied`]), or the data or the
    /// result failed to encode or decode.
    #[error("{0}")]
    Worker(#[from] ptools_workerset::Error),
    /// A target names a worker that does not exist (or never did in this queue's cluster).
    #[error("unknown worker {0}")]
    UnknownWorker(usize),
    /// A target names a host (name, short name or IP address) no prepared worker runs on.
    #[error("no worker on host {0:?}")]
    UnknownHost(String),
    /// A priority was NaN.
    #[error("invalid priority {0}")]
    InvalidPriority(f64),
    /// The priority function given to
    /// [`TaskQueue::set_priorities`](crate::TaskQueue::set_priorities) panicked; this is
    /// the panic's message (`"<non-string panic payload>"` when it was not a string).
    #[error("priority function panicked: {0}")]
    PriorityPanic(String),
    /// An argument was rejected before anything was queued.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The task was removed from the queue before it ran.
    #[error("task dequeued before it ran")]
    Dequeued,
    /// No live worker is left that the task could run on.
    #[error("no live worker left for the task")]
    NoWorkers,
    /// The queue was dropped before the task ran.
    #[error("queue shut down before the task ran")]
    Shutdown,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
