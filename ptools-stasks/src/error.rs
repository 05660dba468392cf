//! The crate's error types: [`Error`] for everything, and [`PmapError`], the one return
//! shape of a failed [`pmap_stasks`](crate::pmap_stasks) that keeps every task's outcome.

use ptools_shm::ShmError;
use ptools_workerset::Termination;

/// Everything that can go wrong starting, calling or stopping server tasks.
///
/// Input errors ([`Error::CountMismatch`], [`Error::InvalidArgument`], [`Error::Stopped`])
/// are found before anything is sent to a worker. The per-task variants carry the task's
/// index (0-based, in [`STasks::workers`](crate::STasks::workers) order).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The handle was stopped: no call is sent after [`stop_stasks`](crate::stop_stasks).
    #[error("server tasks already stopped")]
    Stopped,
    /// `pmap_stasks` needs exactly one argument per server task.
    #[error("pmap_stasks needs one argument per server task: {expected} tasks, {got} arguments")]
    CountMismatch {
        /// The number of server tasks.
        expected: usize,
        /// The number of arguments given.
        got: usize,
    },
    /// The cluster has no worker to run a server task, and none were asked to be started
    /// ([`STasksBuilder::addprocs_if_none`](crate::STasksBuilder::addprocs_if_none)).
    /// Nothing was created. PTools.jl runs the one task in the master then; ptools does
    /// not (see the crate docs, "Differences from PTools.jl").
    #[error(
        "no worker to run a server task: call addprocs(n) first, or ask for them with \
         STasks::builder().addprocs_if_none(n)"
    )]
    NoWorkers,
    /// An argument was refused before anything was sent (an empty or duplicate worker
    /// list, the master as a server task, a prefix too long for the group suffix).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The worker under this task died; the task is gone for good (its state with it).
    #[error("server task {task}: worker {id} (pid {pid}) died: {termination}")]
    WorkerDied {
        /// The task index.
        task: usize,
        /// The worker id.
        id: usize,
        /// The worker's pid.
        pid: i32,
        /// How it ended.
        termination: Termination,
    },
    /// The handler panicked. Only this call failed: the task's state stays registered
    /// (with whatever the handler changed before it panicked) and serves the next call.
    #[error(
        "server task {task} on worker {id} panicked: {message}{}",
        at(location)
    )]
    TaskPanic {
        /// The task index.
        task: usize,
        /// The worker id.
        id: usize,
        /// The panic message.
        message: String,
        /// Where it panicked, when known.
        location: Option<String>,
    },
    /// The task's call did not finish within the timeout. The call still runs in the
    /// worker; later calls to that task queue behind it.
    #[error("server task {task} timed out")]
    Timeout {
        /// The task index.
        task: usize,
    },
    /// The worker has no state for this group: it was stopped, or never attached.
    #[error("server task {task}: worker {id} holds no state for it")]
    NotRegistered {
        /// The task index.
        task: usize,
        /// The worker id.
        id: usize,
    },
    /// A worker could not attach the group's arrays.
    #[error("server task {task}: worker {id} could not attach the arrays: {message}")]
    Attach {
        /// The task index (for [`pmap_shm_create`](crate::pmap_shm_create): the
        /// position of the worker in the cluster's list).
        task: usize,
        /// The worker id.
        id: usize,
        /// What the worker's `ShmSet::attach` said.
        message: String,
    },
    /// Creating, attaching or unlinking arrays in the master failed.
    #[error("shared memory: {0}")]
    Shm(#[from] ShmError),
    /// Another failure of the worker runtime (encode, decode, start, unknown worker, a
    /// handler outside the executable's own code).
    #[error("{}{source}", task_prefix(task))]
    Worker {
        /// The task index, when the failure concerns one task.
        task: Option<usize>,
        /// The runtime's error.
        source: ptools_workerset::Error,
    },
    /// Some tasks of a `pmap_stasks` failed: their indices and errors (the results of
    /// the others are dropped; match on [`PmapError`] to keep them).
    #[error("{}", first_of(.0.len(), .0.first().map(|(_, e)| e)))]
    TasksFailed(Vec<(usize, Error)>),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True for [`Error::WorkerDied`].
    pub fn is_worker_died(&self) -> bool {
        matches!(self, Error::WorkerDied { .. })
    }

    /// True for [`Error::TaskPanic`].
    pub fn is_task_panic(&self) -> bool {
        matches!(self, Error::TaskPanic { .. })
    }

    /// The task this error concerns, when it concerns one.
    pub fn task(&self) -> Option<usize> {
        match self {
            Error::WorkerDied { task, .. }
            | Error::TaskPanic { task, .. }
            | Error::Timeout { task }
            | Error::NotRegistered { task, .. }
            | Error::Attach { task, .. } => Some(*task),
            Error::Worker { task, .. } => *task,
            _ => None,
        }
    }

    /// Maps a runtime error for the call of `task` on worker `id`.
    pub(crate) fn from_worker(task: usize, id: usize, e: ptools_workerset::Error) -> Error {
        match e {
            ptools_workerset::Error::WorkerDied {
                id,
                pid,
                termination,
            } => Error::WorkerDied {
                task,
                id,
                pid,
                termination,
            },
            ptools_workerset::Error::RemotePanic {
                message, location, ..
            } => Error::TaskPanic {
                task,
                id,
                message,
                location,
            },
            ptools_workerset::Error::Timeout => Error::Timeout { task },
            source => Error::Worker {
                task: Some(task),
                source,
            },
        }
    }
}

/// " at <location>" when the panic's location is known.
fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

/// "server task <t>: " when the error concerns one task.
fn task_prefix(task: &Option<usize>) -> String {
    task.map(|t| format!("server task {t}: "))
        .unwrap_or_default()
}

/// The count of failed tasks, then the first failure.
fn first_of(failed: usize, first: Option<&Error>) -> String {
    match first {
        Some(e) => format!("{failed} server task(s) failed; first: {e}"),
        None => format!("{failed} server task(s) failed"),
    }
}

impl From<ptools_workerset::Error> for Error {
    fn from(source: ptools_workerset::Error) -> Error {
        Error::Worker { task: None, source }
    }
}

/// A failed [`pmap_stasks`](crate::pmap_stasks): refused before anything was sent, or
/// run with at least one task failing, in which case every task's outcome (its value or
/// its error) is kept, in task order.
///
/// `?` converts it into [`Error`] (dropping the values of the tasks that succeeded).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PmapError<R> {
    /// Nothing was sent: [`Error::Stopped`], [`Error::CountMismatch`].
    #[error("pmap_stasks refused: {0}")]
    Refused(Error),
    /// Every task's outcome, in task order; at least one is an error.
    #[error("{}", failed_of(.0))]
    Failed(Vec<Result<R>>),
}

impl<R> PmapError<R> {
    /// The outcomes, in task order (empty for [`PmapError::Refused`]).
    pub fn outcomes(&self) -> &[Result<R>] {
        match self {
            PmapError::Refused(_) => &[],
            PmapError::Failed(v) => v,
        }
    }

    /// The outcomes, by value (empty for [`PmapError::Refused`]).
    pub fn into_outcomes(self) -> Vec<Result<R>> {
        match self {
            PmapError::Refused(_) => Vec::new(),
            PmapError::Failed(v) => v,
        }
    }

    /// The errors with their task index (the refusal alone, without index, when refused).
    pub fn errors(&self) -> Vec<(Option<usize>, &Error)> {
        match self {
            PmapError::Refused(e) => vec![(None, e)],
            PmapError::Failed(v) => v
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.as_ref().err().map(|e| (Some(i), e)))
                .collect(),
        }
    }
}

/// "<failed> of <all> server tasks failed", then the first failure.
fn failed_of<R>(v: &[Result<R>]) -> String {
    let mut failed = v.iter().filter_map(|r| r.as_ref().err());
    let first = failed.next();
    let n = first.map_or(0, |_| 1 + failed.count());
    match first {
        Some(e) => format!("{n} of {} server tasks failed; first: {e}", v.len()),
        None => format!("{n} of {} server tasks failed", v.len()),
    }
}

impl<R> From<PmapError<R>> for Error {
    fn from(e: PmapError<R>) -> Error {
        match e {
            PmapError::Refused(e) => e,
            PmapError::Failed(v) => Error::TasksFailed(
                v.into_iter()
                    .enumerate()
                    .filter_map(|(i, r)| r.err().map(|e| (i, e)))
                    .collect(),
            ),
        }
    }
}
