//! [`TaskQueue`]: the queue core behind a lock, one feeder thread per worker, and one
//! callback thread.
//!
//! # Protocol
//!
//! All state sits in one `Mutex<State>`. A feeder sleeps on `work` until its worker may
//! take an entry (or one second passes, when it checks that its worker still lives),
//! takes it under the lock (counting it running), sends the call and waits for the reply
//! without the lock, then, under the lock again, counts the outcome and one more pending
//! callback, and hands the completion to the callback thread. The callback thread runs
//! it and counts the pending callback down. "Idle" is therefore exactly: nothing queued,
//! nothing running, no callback pending.
//!
//! A part whose call could not be made because its worker is gone goes back to the queue
//! with its old sequence number; its feeder then retires the worker, which fails every
//! entry no live worker can take any more. Every entry thus ends in exactly one
//! completion: run (success or failure), dequeued, no workers, or shut down.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use std::{cell::Cell, fmt};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use ptools_workerset::Cluster;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{Bucket, Core, Entry, Prio, TaskState};
use crate::error::{Error, Result};
use crate::target::{RemoteInfo, Resolved, Target, resolve};
use crate::task::{CallbackSlot, Completion, Part, Queued, QueuedWorkerTask, TaskId, TaskRef};

mod callbacks;
mod feeder;

use callbacks::{callback_loop, panic_message};
use feeder::feeder;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

thread_local! {
    /// True on a queue's callback thread, where waiting for a task would deadlock.
    static ON_CALLBACK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Counts of a queue's tasks. All-workers tasks count once per worker part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Waiting in the queue.
    pub queued: usize,
    /// Sent to a worker, result not back yet.
    pub running: usize,
    /// Ran and returned a result.
    pub done: u64,
    /// Ended in an error: remote panic, dead worker, decode failure, no workers left.
    pub failed: u64,
    /// Removed by a dequeue (or by dropping the queue) before they ran.
    pub dequeued: u64,
    /// Outcomes whose callback has not finished yet.
    pub callbacks_pending: usize,
    /// Callbacks that panicked.
    pub callback_panics: u64,
}

/// What [`TaskQueue::dequeue_worker_task`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DequeueStatus {
    /// Removed before it ran; its callback gets `Err(Error::Dequeued)`. For an
    /// all-workers task: the parts not yet started were removed (started ones finish).
    Dequeued,
    /// Already running: its result and callback still happen, exactly once.
    Running,
    /// Already finished (its callback has been or is being called).
    Finished,
    /// Not a task of this queue.
    Unknown,
}

/// A callback that panicked, as the error hook sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallbackPanic {
    /// The task whose callback panicked.
    pub task: TaskId,
    /// The worker the task ran on (`None` if it never ran).
    pub worker: Option<usize>,
    /// The panic message (`"<non-string panic payload>"` when it was not a string).
    pub message: String,
}

type Hook = Arc<dyn Fn(&CallbackPanic) + Send + Sync>;

struct State {
    core: Core<Queued>,
    /// Prepared workers that are alive, with their hosts.
    remotes: BTreeMap<usize, RemoteInfo>,
    /// Workers that were prepared and are gone, with the error they ended with.
    dead: HashMap<usize, Error>,
    prepared: bool,
    paused: bool,
    shutdown: bool,
    counts: Counts,
    idle_feeders: usize,
}

struct Shared {
    id: u64,
    cluster: Cluster,
    st: Mutex<State>,
    /// Feeders wait here for work.
    work: Condvar,
    /// `wait_idle` waits here.
    idle: Condvar,
    cb_tx: mpsc::Sender<Vec<Completion>>,
    hook: RwLock<Option<Hook>>,
}

/// A priority queue of tasks for the workers of one cluster (PTools.jl QueuedTasks).
///
/// One feeder thread per prepared worker takes the best task that targets it (lowest
/// priority, then oldest) and runs it with a remote call; one callback thread runs the
/// callbacks. All methods take `&self` and may be called from any thread, except from
/// inside a `set_priorities` or `dequeue_worker_tasks` closure (the queue is locked while
/// they run).
///
/// ```
/// ptools_workerset::enable_test_support!(); // in `main`: `ptools_workerset::init();`
/// use std::time::Duration;
/// use ptools_queue::{QueuedWorkerTask, Target, TaskQueue};
///
/// fn double(x: u64) -> u64 {
///     2 * x
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = ptools_workerset::Cluster::new();
/// cluster.addprocs(2)?;
/// let q = TaskQueue::new(&cluster);
/// q.prep_remotes()?;
/// let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// for i in 0..10 {
///     let total = total.clone();
///     let cb = move |_x: u64, r: ptools_queue::Result<u64>| {
///         total.fetch_add(r.unwrap(), std::sync::atomic::Ordering::Relaxed);
///     };
///     q.queue_worker_task(QueuedWorkerTask::new(i, double, cb, Target::Any))?;
/// }
/// assert_eq!(q.execute_worker_task(QueuedWorkerTask::without_callback(21, double, Target::Any))?, 42);
/// assert!(q.wait_idle_timeout(Duration::from_secs(60)));
/// assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 90);
/// # Ok(())
/// # }
/// ```
///
/// # Caveats
///
/// Dropping the queue fails the tasks still queued with [`Error::Shutdown`] (their
/// callbacks are called) and lets the running ones finish, without waiting for them.
pub struct TaskQueue {
    sh: Arc<Shared>,
}

impl fmt::Debug for TaskQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskQueue")
            .field("id", &self.sh.id)
            .field("counts", &self.counts())
            .finish()
    }
}

impl TaskQueue {
    /// A queue for the workers of `cluster`; no feeder runs until
    /// [`prep_remotes`](Self::prep_remotes) (or the first queued task) learns the workers.
    ///
    /// # Panics
    ///
    /// If the queue's callback thread cannot be started (the process is out of threads).
    pub fn new(cluster: &Cluster) -> TaskQueue {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (cb_tx, cb_rx) = mpsc::channel::<Vec<Completion>>();
        let sh = Arc::new(Shared {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            cluster: cluster.clone(),
            st: Mutex::new(State {
                core: Core::default(),
                remotes: BTreeMap::new(),
                dead: HashMap::new(),
                prepared: false,
                paused: false,
                shutdown: false,
                counts: Counts::default(),
                idle_feeders: 0,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            cb_tx,
            hook: RwLock::new(None),
        });
        // Idle feeders sleep until there is work or a worker has gone: the cluster says
        // when one goes (held weakly: the hook outlives the queue, doing nothing).
        let on_exit = Arc::downgrade(&sh);
        cluster.on_worker_exit(move |_, _| {
            if let Some(sh) = on_exit.upgrade() {
                let _g = lock(&sh.st);
                sh.work.notify_all();
            }
        });
        let weak = Arc::downgrade(&sh);
        // The callback thread holds the queue weakly: it ends when the last feeder and the
        // handle are gone, which drops the sender and ends `cb_rx`.
        let spawned = std::thread::Builder::new()
            .name("ptools-queue-callbacks".into())
            .spawn(move || callback_loop(cb_rx, weak));
        if let Err(e) = spawned {
            // Without a callback thread nothing could complete: fail loudly.
            panic!("ptools-queue: cannot start the callback thread: {e}");
        }
        TaskQueue { sh }
    }

    /// The cluster this queue runs tasks on.
    pub fn cluster(&self) -> &Cluster {
        &self.sh.cluster
    }

    /// Learns every live worker of the cluster not known yet: its host name and addresses,
    /// (what a worker that joined over TCP reported in its handshake,
    /// [`Cluster::worker_host`](ptools_workerset::Cluster::worker_host); one remote call
    /// for a local worker), and starts its feeder. Call it again after `addprocs` to use the new workers.
    /// The host call waits behind whatever a worker is running for other callers.
    /// Without workers, the master (id 1) runs the tasks, as in Julia. Returns
    /// [`num_remotes`](Self::num_remotes).
    ///
    /// # Errors
    ///
    /// [`Error::Worker`] if a remote call fails other than by the worker's death (a dead
    /// worker is only left out).
    pub fn prep_remotes(&self) -> Result<usize> {
        let ids = self.sh.cluster.workers();
        let new: Vec<usize> = {
            let st = lock(&self.sh.st);
            ids.into_iter()
                .filter(|id| !st.remotes.contains_key(id) && !st.dead.contains_key(id))
                .collect()
        };
        // Workers that joined over TCP said where they run; ask the others all at once,
        // then collect.
        let mut calls = Vec::new();
        let mut infos = Vec::new();
        for &id in &new {
            if let Some(h) = self.sh.cluster.worker_host(id) {
                infos.push(RemoteInfo {
                    id,
                    pid: self.sh.cluster.pid(id).unwrap_or(0),
                    hostname: h.hostname,
                    ips: h.addresses,
                });
                continue;
            }
            calls.push((
                id,
                self.sh.cluster.remotecall(id, crate::sys::host_info, ()),
            ));
        }
        for (id, call) in calls {
            match call.and_then(|r| r.fetch()) {
                Ok((hostname, ips)) => infos.push(RemoteInfo {
                    id,
                    pid: self.sh.cluster.pid(id).unwrap_or(0),
                    hostname,
                    ips,
                }),
                Err(e)
                    if e.is_worker_lost()
                        || matches!(e, ptools_workerset::Error::UnknownWorker(_)) =>
                {
                    lock(&self.sh.st).dead.insert(id, Error::Worker(e));
                }
                Err(e) => return Err(Error::Worker(e)),
            }
        }
        if self.sh.cluster.workers() != [1] && lock(&self.sh.st).remotes.contains_key(&1) {
            // Real workers now: the master stops serving tasks (as in PTools.jl).
            self.sh.retire(1, ptools_workerset::Error::UnknownWorker(1));
        }
        let mut st = lock(&self.sh.st);
        st.prepared = true;
        for info in infos {
            let id = info.id;
            if st.shutdown || st.remotes.contains_key(&id) {
                continue;
            }
            st.remotes.insert(id, info);
            let sh = self.sh.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ptools-queue-feeder-{id}"))
                .spawn(move || feeder(sh, id));
            if let Err(e) = spawned {
                st.remotes.remove(&id);
                return Err(Error::Worker(e.into()));
            }
        }
        Ok(st.remotes.len())
    }

    /// The number of prepared, live workers (PTools.jl `num_remotes`).
    pub fn num_remotes(&self) -> usize {
        lock(&self.sh.st).remotes.len()
    }

    /// The prepared, live workers and their hosts, by id.
    pub fn remotes(&self) -> Vec<RemoteInfo> {
        lock(&self.sh.st).remotes.values().cloned().collect()
    }

    /// Queues `t` and returns its id at once. Prepares the workers first if no one has
    /// (see [`prep_remotes`](Self::prep_remotes)).
    ///
    /// # Errors
    ///
    /// Checked before anything is queued: [`Error::InvalidPriority`] (NaN),
    /// [`Error::UnknownWorker`], [`Error::UnknownHost`], [`Error::InvalidArgument`]
    /// (empty list), [`Error::Worker`] for a worker id that died, [`Error::NoWorkers`],
    /// [`Error::Shutdown`].
    pub fn queue_worker_task<D, R>(&self, t: QueuedWorkerTask<D, R>) -> Result<TaskId>
    where
        D: Serialize + DeserializeOwned + Clone + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let prio = Prio::new(t.priority).ok_or(Error::InvalidPriority(t.priority))?;
        let mut st = lock(&self.sh.st);
        if !st.prepared {
            drop(st);
            self.prep_remotes()?;
            st = lock(&self.sh.st);
        }
        if st.shutdown {
            return Err(Error::Shutdown);
        }
        let live: Vec<RemoteInfo> = if matches!(t.target, Target::Any) {
            // Only emptiness matters for Any: skip the copy on the hot path.
            if st.remotes.is_empty() {
                return Err(Error::NoWorkers);
            }
            Vec::new()
        } else {
            st.remotes.values().cloned().collect()
        };
        let resolved = if matches!(t.target, Target::Any) {
            Resolved::One(Bucket::Any)
        } else {
            resolve(&t.target, &live, |id| st.dead.get(&id).cloned())?
        };
        // Nothing can fail from here on: the task gets its number and its parts.
        let key = st.core.new_task();
        let task = TaskId::of(self.sh.id, key);
        let target = (!matches!(t.target, Target::Any)).then(|| Arc::new(t.target));
        match resolved {
            Resolved::One(b) => {
                let job = Box::new(Part {
                    task,
                    data: t.data,
                    method: t.method,
                    callback: CallbackSlot::Own(t.callback),
                });
                st.core.push(key, b, prio, Queued { target, job });
            }
            Resolved::All(ids) => {
                let callbacks = CallbackSlot::parts(t.callback, ids.len());
                for (id, callback) in ids.into_iter().zip(callbacks) {
                    let job = Box::new(Part {
                        task,
                        data: t.data.clone(),
                        method: t.method,
                        callback,
                    });
                    let q = Queued {
                        target: target.clone(),
                        job,
                    };
                    st.core.push(key, Bucket::ids(vec![id]), prio, q);
                }
            }
        }
        if st.idle_feeders > 0 && !st.paused {
            self.sh.work.notify_all();
        }
        Ok(task)
    }

    /// Queues `t`, waits for it and returns its result (PTools.jl `execute_worker_task`).
    /// As in PTools.jl, the task's own callback is replaced: the outcome is returned.
    ///
    /// # Errors
    ///
    /// Those of [`queue_worker_task`](Self::queue_worker_task); then the task's failure
    /// ([`Error::Worker`] for a remote panic or a dead worker, [`Error::Dequeued`],
    /// [`Error::NoWorkers`], [`Error::Shutdown`]). [`Error::InvalidArgument`] for an
    /// all-workers target (it has one outcome per worker: queue it with a callback), or
    /// when called from a callback (the callback thread would wait on itself).
    pub fn execute_worker_task<D, R>(&self, mut t: QueuedWorkerTask<D, R>) -> Result<R>
    where
        D: Serialize + DeserializeOwned + Clone + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if matches!(t.target, Target::All) {
            return Err(Error::InvalidArgument(
                "execute_worker_task needs a single-worker target, not Target::All".into(),
            ));
        }
        if ON_CALLBACK_THREAD.with(Cell::get) {
            return Err(Error::InvalidArgument(
                "execute_worker_task called from a callback would wait on itself".into(),
            ));
        }
        let (tx, rx) = mpsc::sync_channel::<Result<R>>(1);
        t.callback = Some(Box::new(move |_d: D, r: Result<R>| {
            let _ = tx.send(r);
        }));
        self.queue_worker_task(t)?;
        // Every queued part ends in exactly one completion, so this returns; the callback
        // can only be dropped uncalled if the callback thread is gone.
        rx.recv().unwrap_or(Err(Error::Shutdown))
    }

    /// Removes task `id` from the queue if it has not started; see [`DequeueStatus`].
    pub fn dequeue_worker_task(&self, id: TaskId) -> DequeueStatus {
        if id.queue != self.sh.id {
            return DequeueStatus::Unknown;
        }
        let mut st = lock(&self.sh.st);
        match st.core.task_state(id.key()) {
            TaskState::Queued => {
                let gone = st.core.remove_task(id.key());
                self.sh
                    .count_ended(&mut st, gone.len(), callbacks(gone.iter()), true);
                drop(st);
                self.sh.fail(gone.into_iter().map(|e| (e, Error::Dequeued)));
                DequeueStatus::Dequeued
            }
            TaskState::Running => DequeueStatus::Running,
            TaskState::Gone if st.core.issued(id.n) => DequeueStatus::Finished,
            TaskState::Gone => DequeueStatus::Unknown,
        }
    }

    /// Removes every queued task (or all-workers part) for which `filter` is true; their
    /// callbacks get `Err(Error::Dequeued)`. Returns the ids removed.
    ///
    /// Note: PTools.jl's `dequeue_worker_task(filter_fn)` removes the tasks for which the
    /// filter is *false*; here, as with `retain`'s opposite, `true` means remove.
    pub fn dequeue_worker_tasks(
        &self,
        mut filter: impl FnMut(&TaskRef<'_>) -> bool,
    ) -> Vec<TaskId> {
        let qid = self.sh.id;
        let mut st = lock(&self.sh.st);
        let gone = st.core.remove_where(|e| filter(&task_ref(qid, e)));
        self.sh
            .count_ended(&mut st, gone.len(), callbacks(gone.iter()), true);
        drop(st);
        let mut ids: Vec<TaskId> = gone.iter().map(|e| TaskId::of(qid, e.task)).collect();
        ids.sort_unstable();
        ids.dedup();
        self.sh.fail(gone.into_iter().map(|e| (e, Error::Dequeued)));
        ids
    }

    /// Recomputes the priority of every queued task (each part of an all-workers task on
    /// its own) as `f(target, task, current)`; lower runs first. Tasks already running are
    /// not affected. All or nothing: every new priority is computed before any is applied,
    /// and the queue stays locked while `f` runs, so feeders take no task under
    /// half-recomputed priorities.
    ///
    /// ```
    /// ptools_workerset::enable_test_support!(); // in `main`: `ptools_workerset::init();`
    /// use ptools_queue::{Error, QueuedWorkerTask, Target, TaskQueue};
    ///
    /// fn ident(x: u64) -> u64 {
    ///     x
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = TaskQueue::new(&ptools_workerset::Cluster::new());
    /// q.pause();
    /// let id = q.queue_worker_task(QueuedWorkerTask::without_callback(7, ident, Target::Any))?;
    /// q.set_priorities(|_, t, _| *t.data::<u64>().unwrap() as f64)?;
    /// assert_eq!(q.priority(id), Some(7.0));
    /// // A panicking function is an error, and changes nothing.
    /// let r = q.set_priorities(|_, _, _| panic!("no priority for you"));
    /// assert!(matches!(r, Err(Error::PriorityPanic(m)) if m == "no priority for you"));
    /// assert_eq!(q.priority(id), Some(7.0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPriority`] if `f` gives NaN for any task, [`Error::PriorityPanic`]
    /// (with the panic's message) if it panics for any task. Either way no priority and no
    /// position in the queue changes, and the queue stays usable. The panic is caught,
    /// not resumed; the process's panic hook still reports it as usual (on stderr by
    /// default).
    pub fn set_priorities(
        &self,
        mut f: impl FnMut(&Target, &TaskRef<'_>, f64) -> f64,
    ) -> Result<()> {
        let qid = self.sh.id;
        let mut st = lock(&self.sh.st);
        let core = &mut st.core;
        // Unwind safety: `Core::set_priorities` changes nothing before the last call of
        // `f` returns (it computes every new priority into a vector of its own first), so
        // a panic in `f` leaves the core exactly as it was. Catching it here, under the
        // guard, also keeps the queue from being left half-updated.
        let r = catch_unwind(AssertUnwindSafe(|| {
            core.set_priorities(|e, cur| {
                let r = task_ref(qid, e);
                f(r.target(), &r, cur)
            })
        }));
        match r {
            Ok(Ok(())) => {}
            Ok(Err((_, p))) => return Err(Error::InvalidPriority(p)),
            Err(payload) => return Err(Error::PriorityPanic(panic_message(&*payload))),
        }
        if st.idle_feeders > 0 {
            self.sh.work.notify_all();
        }
        Ok(())
    }

    /// The priority of queued task `id` (`None` once it has started, or if unknown).
    pub fn priority(&self, id: TaskId) -> Option<f64> {
        if id.queue != self.sh.id {
            return None;
        }
        lock(&self.sh.st).core.priority(id.key())
    }

    /// Sets the priority of queued task `id`; `Ok(false)` if it is not queued.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPriority`] for NaN.
    pub fn set_priority(&self, id: TaskId, p: f64) -> Result<bool> {
        let p = Prio::new(p).ok_or(Error::InvalidPriority(p))?;
        if id.queue != self.sh.id {
            return Ok(false);
        }
        Ok(lock(&self.sh.st).core.set_priority(id.key(), p))
    }

    /// Stops handing tasks to workers; running tasks finish. Queuing still works.
    pub fn pause(&self) {
        lock(&self.sh.st).paused = true;
    }

    /// Resumes dispatch after [`pause`](Self::pause).
    pub fn resume(&self) {
        lock(&self.sh.st).paused = false;
        self.sh.work.notify_all();
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        lock(&self.sh.st).paused
    }

    /// The task counts now.
    pub fn counts(&self) -> Counts {
        let st = lock(&self.sh.st);
        let mut c = st.counts;
        c.queued = st.core.len();
        c
    }

    /// Waits until nothing is queued, nothing runs and every callback has returned. While
    /// paused with tasks queued this waits until [`resume`](Self::resume).
    pub fn wait_idle(&self) {
        let mut st = lock(&self.sh.st);
        while !is_idle(&st) {
            self.sh.idle.wait(&mut st);
        }
    }

    /// [`wait_idle`](Self::wait_idle) for at most `timeout`; true if the queue is idle.
    pub fn wait_idle_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.sh.st);
        while !is_idle(&st) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.sh.idle.wait_for(&mut st, deadline - now);
        }
        true
    }

    /// [`wait_idle`](Self::wait_idle) with a progress bar on stderr (feature `progress`):
    /// tasks ended out of those queued or running when it was called, plus any queued
    /// meanwhile.
    #[cfg(feature = "progress")]
    pub fn wait_idle_progress(&self) {
        let start = self.counts();
        let ended = |c: &Counts| c.done + c.failed + c.dequeued;
        let base = ended(&start);
        let bar = indicatif::ProgressBar::new((start.queued + start.running) as u64);
        loop {
            let c = self.counts();
            let done = ended(&c) - base;
            bar.set_length(done + (c.queued + c.running) as u64);
            bar.set_position(done);
            if self.wait_idle_timeout(Duration::from_millis(100)) {
                break;
            }
        }
        bar.finish();
    }

    /// Sets the hook told about every callback that panics (the panic is also counted in
    /// [`Counts::callback_panics`]). The default hook prints the panic on stderr. The
    /// queue goes on either way.
    pub fn set_error_hook(&self, hook: impl Fn(&CallbackPanic) + Send + Sync + 'static) {
        *self.sh.hook.write() = Some(Arc::new(hook));
    }
}

impl Drop for TaskQueue {
    fn drop(&mut self) {
        let mut st = lock(&self.sh.st);
        st.shutdown = true;
        let gone = st.core.drain();
        st.counts.dequeued += gone.len() as u64;
        drop(st);
        self.sh.work.notify_all();
        // Out of the lock, in one pass: the callbacks' completions, and freeing the tasks.
        // Nobody can wait for this queue to be idle any more (this is its drop), so its
        // callbacks are counted pending only now, before they reach the callback thread.
        let done: Vec<Completion> = gone
            .into_seq_order()
            .filter_map(|e| {
                let job = e.payload.job;
                job.has_callback().then(|| job.fail(Error::Shutdown))
            })
            .collect();
        if !done.is_empty() {
            lock(&self.sh.st).counts.callbacks_pending += done.len();
        }
        self.sh.deliver(done);
    }
}

fn task_ref(queue: u64, e: &Entry<Queued>) -> TaskRef<'_> {
    TaskRef {
        id: TaskId::of(queue, e.task),
        bucket: &e.bucket,
        target: e.payload.target(),
        job: &*e.payload.job,
    }
}

/// How many of `entries` have a callback.
fn callbacks<'a>(entries: impl Iterator<Item = &'a Entry<Queued>>) -> usize {
    entries.filter(|e| e.payload.job.has_callback()).count()
}

fn is_idle(st: &State) -> bool {
    st.core.len() == 0 && st.counts.running == 0 && st.counts.callbacks_pending == 0
}

impl Shared {
    /// Counts `n` entries taken out of the queue without running, under the lock: as
    /// dequeued (for [`Error::Dequeued`] and [`Error::Shutdown`]) or as failed, and the
    /// `callbacks` among them as pending. [`fail`](Self::fail) ends them once the lock is
    /// released.
    fn count_ended(&self, st: &mut State, n: usize, callbacks: usize, dequeued: bool) {
        if dequeued {
            st.counts.dequeued += n as u64;
        } else {
            st.counts.failed += n as u64;
        }
        st.counts.callbacks_pending += callbacks;
        self.notify_if_idle(st);
    }

    /// Ends entries counted by [`count_ended`](Self::count_ended), without the lock: the
    /// callbacks get their error on the callback thread, the tasks without callback are
    /// freed here.
    fn fail(&self, gone: impl IntoIterator<Item = (Entry<Queued>, Error)>) {
        let done: Vec<Completion> = gone
            .into_iter()
            .filter(|(e, _)| e.payload.job.has_callback())
            .map(|(e, err)| e.payload.job.fail(err))
            .collect();
        self.deliver(done);
    }

    /// Wakes `wait_idle` callers if the queue is idle now (the callback thread does it
    /// too, but completions without a callback never reach it).
    fn notify_if_idle(&self, st: &State) {
        if is_idle(st) {
            self.idle.notify_all();
        }
    }

    fn deliver(&self, mut done: Vec<Completion>) {
        // Completions without a callback were counted and end here.
        done.retain(|c| c.has_callback);
        if done.is_empty() {
            return;
        }
        let n = done.len();
        // The callback thread lives as long as any `Shared`; if it died anyway, count
        // the callbacks as done so that waits end.
        if self.cb_tx.send(done).is_err() {
            lock(&self.st).counts.callbacks_pending -= n;
        }
    }

    /// Retires worker `w` (dead or removed, with `err`) and fails every entry no live
    /// worker can take any more.
    fn retire(&self, w: usize, err: ptools_workerset::Error) {
        let mut st = lock(&self.st);
        st.remotes.remove(&w);
        st.dead.insert(w, Error::Worker(err));
        let State {
            core,
            remotes,
            dead,
            ..
        } = &mut *st;
        let gone = core.remove_unservable(|b| match b {
            Bucket::Any => !remotes.is_empty(),
            Bucket::Ids(ids) => ids.iter().any(|i| remotes.contains_key(i)),
        });
        let errors: Vec<Error> = gone
            .iter()
            .map(|e| match &e.bucket {
                Bucket::Any => Error::NoWorkers,
                Bucket::Ids(ids) => ids
                    .iter()
                    .find_map(|i| dead.get(i).cloned())
                    .unwrap_or(Error::NoWorkers),
            })
            .collect();
        self.count_ended(&mut st, gone.len(), callbacks(gone.iter()), false);
        drop(st);
        self.fail(gone.into_iter().zip(errors));
        self.work.notify_all();
        self.idle.notify_all();
    }
}
