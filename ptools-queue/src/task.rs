//! Tasks: the typed [`QueuedWorkerTask`] a user builds, and the type-erased parts the
//! queue stores and its feeders run.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use ptools_workerset::{Cluster, RemoteRef};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::target::Target;

/// A task's callback: the task data and the outcome.
pub(crate) type Callback<D, R> = Box<dyn FnMut(D, Result<R>) + Send>;

/// The id of a queued task, unique within the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub(crate) queue: u64,
    pub(crate) n: u64,
    /// The index of the task's record in the queue (reused once the task has ended;
    /// `n` tells the tasks apart).
    pub(crate) slot: u32,
}

impl TaskId {
    pub(crate) fn key(self) -> crate::core::TaskKey {
        crate::core::TaskKey {
            n: self.n,
            slot: self.slot,
        }
    }

    pub(crate) fn of(queue: u64, key: crate::core::TaskKey) -> TaskId {
        TaskId {
            queue,
            n: key.n,
            slot: key.slot,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}.{}", self.queue, self.n)
    }
}

/// A task for a worker: data, the remote function to run on it, an optional callback, a
/// target and a priority (PTools.jl `QueuedWorkerTask`).
///
/// `remote_method` is a `fn` item or a closure that captures nothing, as for every
/// ptools remote call. `D` must be `Clone`: the data is sent to the worker and also handed
/// back to the callback (and an all-workers task sends one copy to each worker).
///
/// ```
/// use ptools_queue::{QueuedWorkerTask, Target};
///
/// fn reverse(s: String) -> String {
///     s.chars().rev().collect()
/// }
///
/// let t = QueuedWorkerTask::new(
///     "parallel 1".to_string(),
///     reverse,
///     |s: String, r| println!("{s} -> {r:?}"),
///     Target::Any,
/// )
/// .priority(-1.0);
/// assert_eq!(t.data(), "parallel 1");
/// ```
///
/// A remote method cannot capture anything: only code travels to the worker.
///
/// ```compile_fail
/// use ptools_queue::{QueuedWorkerTask, Target};
///
/// let k = 3u64;
/// let _ = QueuedWorkerTask::without_callback(1u64, move |x: u64| x + k, Target::Any);
/// ```
///
/// Callbacks run on the queue's callback thread, so they must be `Send`.
///
/// ```compile_fail
/// use std::rc::Rc;
/// use ptools_queue::{QueuedWorkerTask, Target};
///
/// fn id(x: u64) -> u64 {
///     x
/// }
///
/// let here = Rc::new(0u64);
/// let _ = QueuedWorkerTask::new(1u64, id, move |_, _| drop(here.clone()), Target::Any);
/// ```
pub struct QueuedWorkerTask<D, R> {
    pub(crate) data: D,
    pub(crate) method: fn(D) -> R,
    pub(crate) callback: Option<Callback<D, R>>,
    pub(crate) target: Target,
    pub(crate) priority: f64,
}

impl<D: fmt::Debug, R> fmt::Debug for QueuedWorkerTask<D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedWorkerTask")
            .field("data", &self.data)
            .field("callback", &self.callback.is_some())
            .field("target", &self.target)
            .field("priority", &self.priority)
            .finish()
    }
}

impl<D, R> QueuedWorkerTask<D, R>
where
    D: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    /// A task running `remote_method(data)` on a worker of `target`, then
    /// `callback(data, outcome)` in the master, off the feeder threads. Priority 0.
    pub fn new(
        data: D,
        remote_method: fn(D) -> R,
        callback: impl FnMut(D, Result<R>) + Send + 'static,
        target: impl Into<Target>,
    ) -> Self {
        QueuedWorkerTask {
            data,
            method: remote_method,
            callback: Some(Box::new(callback)),
            target: target.into(),
            priority: 0.0,
        }
    }

    /// A task without a callback (PTools.jl's `nothing`): its outcome only counts.
    pub fn without_callback(data: D, remote_method: fn(D) -> R, target: impl Into<Target>) -> Self {
        QueuedWorkerTask {
            data,
            method: remote_method,
            callback: None,
            target: target.into(),
            priority: 0.0,
        }
    }

    /// Sets the priority: lower runs first (NaN is refused when the task is queued).
    #[must_use = "`priority` consumes the task and returns it with the new priority"]
    pub fn priority(mut self, p: f64) -> Self {
        self.priority = p;
        self
    }

    /// The task data.
    pub fn data(&self) -> &D {
        &self.data
    }

    /// The task's target.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// What the queue core holds for one entry. The target sits beside the job, not in it,
/// so that `set_priorities` over many entries reaches a target only when the user's
/// closure reads it (one cache miss less per entry); `None` is [`Target::Any`], which
/// needs no allocation.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) target: Option<Arc<Target>>,
    pub(crate) job: Box<dyn Job>,
}

impl Queued {
    pub(crate) fn target(&self) -> &Target {
        static ANY: Target = Target::Any;
        self.target.as_deref().unwrap_or(&ANY)
    }
}

/// A queued task as `set_priorities` and `dequeue_worker_tasks` see it.
#[derive(Debug)]
pub struct TaskRef<'a> {
    pub(crate) id: TaskId,
    /// The workers the entry is queued for (a single id for an all-workers part).
    pub(crate) bucket: &'a crate::core::Bucket,
    pub(crate) target: &'a Target,
    pub(crate) job: &'a dyn Job,
}

impl TaskRef<'_> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's target, as given.
    pub fn target(&self) -> &Target {
        self.target
    }

    /// For a part of an all-workers task: the worker it is queued for.
    pub fn part(&self) -> Option<usize> {
        match (self.target, self.bucket) {
            (Target::All, crate::core::Bucket::Ids(ids)) => ids.first().copied(),
            _ => None,
        }
    }

    /// The task data, if it is a `D`.
    pub fn data<D: 'static>(&self) -> Option<&D> {
        self.job.data().downcast_ref()
    }
}

/// What became of a task (or part) whose run ended: the callback to run, and what the
/// feeder must know.
pub(crate) struct Completion {
    pub(crate) task: TaskId,
    pub(crate) worker: Option<usize>,
    pub(crate) ok: bool,
    /// Set when the worker died under the task.
    pub(crate) died: Option<ptools_workerset::Error>,
    /// False when there is no callback: the completion is then only counted.
    pub(crate) has_callback: bool,
    pub(crate) run: Box<dyn FnOnce() + Send>,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("task", &self.task)
            .field("worker", &self.worker)
            .field("ok", &self.ok)
            .finish()
    }
}

/// The outcome of sending a part to a worker.
pub(crate) enum Sent {
    /// The call is on the worker.
    InFlight(Box<dyn InFlight>),
    /// The worker is gone (died or removed) and the call was not made: the part goes back
    /// to the queue.
    Gone(Box<dyn Job>, ptools_workerset::Error),
    /// The call could not be made (the data failed to encode): the part is over.
    Failed(Completion),
}

/// One queued part, type-erased.
pub(crate) trait Job: Send + fmt::Debug {
    fn data(&self) -> &dyn Any;
    /// False for a task without callback: ending it unrun only counts it.
    fn has_callback(&self) -> bool;
    fn send(self: Box<Self>, cluster: &Cluster, worker: usize) -> Sent;
    /// Ends the part without running it: its callback gets `Err(e)`.
    fn fail(self: Box<Self>, e: Error) -> Completion;
}

/// A part running on a worker.
pub(crate) trait InFlight: Send {
    /// True once the reply is in.
    fn is_ready(&self) -> bool;
    /// Waits for the result and makes the completion.
    fn finish(self: Box<Self>) -> Completion;
}

/// One part of a typed task: the whole task, or one worker's share of an all-workers task.
pub(crate) struct Part<D, R> {
    pub(crate) task: TaskId,
    pub(crate) data: D,
    pub(crate) method: fn(D) -> R,
    pub(crate) callback: CallbackSlot<D, R>,
}

/// Where a part finds its task's callback.
pub(crate) enum CallbackSlot<D, R> {
    /// A one-part task owns its callback (no shared allocation, no lock), and so does each
    /// part of an all-workers task without callback (none).
    Own(Option<Callback<D, R>>),
    /// The parts of an all-workers task share its callback, and call it one at a time.
    /// Whether a part has a callback is known without this lock, so the queue never takes
    /// it under its own lock (a callback may queue tasks, taking the queue's lock under
    /// this one).
    Shared(Arc<Mutex<Callback<D, R>>>),
}

impl<D, R> CallbackSlot<D, R> {
    /// The slots of `n` parts sharing `callback`.
    pub(crate) fn parts(callback: Option<Callback<D, R>>, n: usize) -> Vec<CallbackSlot<D, R>> {
        match callback {
            Some(c) => {
                let c = Arc::new(Mutex::new(c));
                (0..n).map(|_| CallbackSlot::Shared(c.clone())).collect()
            }
            None => (0..n).map(|_| CallbackSlot::Own(None)).collect(),
        }
    }

    fn is_some(&self) -> bool {
        match self {
            CallbackSlot::Own(c) => c.is_some(),
            CallbackSlot::Shared(_) => true,
        }
    }

    fn call(self, data: D, r: Result<R>) {
        match self {
            CallbackSlot::Own(Some(mut f)) => f(data, r),
            CallbackSlot::Own(None) => {}
            CallbackSlot::Shared(c) => (c.lock())(data, r),
        }
    }
}

impl<D, R> fmt::Debug for Part<D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Part").field("task", &self.task).finish()
    }
}

impl<D, R> Part<D, R>
where
    D: Send + 'static,
    R: Send + 'static,
{
    fn complete(self, worker: Option<usize>, r: Result<R>) -> Completion {
        let died = match &r {
            Err(Error::Worker(e)) if e.is_worker_died() => Some(e.clone()),
            _ => None,
        };
        let ok = r.is_ok();
        let (cb, data) = (self.callback, self.data);
        let has_callback = cb.is_some();
        Completion {
            task: self.task,
            worker,
            ok,
            died,
            has_callback,
            run: Box::new(move || cb.call(data, r)),
        }
    }
}

impl<D, R> Job for Part<D, R>
where
    D: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn data(&self) -> &dyn Any {
        &self.data
    }

    fn has_callback(&self) -> bool {
        self.callback.is_some()
    }

    fn send(self: Box<Self>, cluster: &Cluster, worker: usize) -> Sent {
        match cluster.remotecall(worker, self.method, self.data.clone()) {
            Ok(r) => Sent::InFlight(Box::new(Flight {
                part: *self,
                r,
                worker,
            })),
            Err(
                e @ (ptools_workerset::Error::WorkerDied { .. }
                | ptools_workerset::Error::UnknownWorker(_)),
            ) => Sent::Gone(self, e),
            Err(e) => Sent::Failed(self.complete(Some(worker), Err(Error::Worker(e)))),
        }
    }

    fn fail(self: Box<Self>, e: Error) -> Completion {
        self.complete(None, Err(e))
    }
}

struct Flight<D, R> {
    part: Part<D, R>,
    r: RemoteRef<R>,
    worker: usize,
}

impl<D, R> InFlight for Flight<D, R>
where
    D: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    fn is_ready(&self) -> bool {
        self.r.is_ready()
    }

    fn finish(self: Box<Self>) -> Completion {
        let r = self.r.fetch().map_err(Error::Worker);
        self.part.complete(Some(self.worker), r)
    }
}
