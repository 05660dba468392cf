//! Queued tasks for ptools workers (PTools.jl QueuedTasks): a priority queue of tasks that
//! target any worker, all of them, chosen ids or hosts, with callbacks run in the master
//! and priorities that can be recomputed for every queued task at any time.
//!
//! ```
//! ptools_workerset::enable_test_support!(); // in `main`: `ptools_workerset::init();`
//! use ptools_queue::{QueuedWorkerTask, Target, TaskQueue};
//!
//! fn reverse(s: String) -> String {
//!     s.chars().rev().collect()
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = ptools_workerset::Cluster::new();
//! cluster.addprocs(2)?;
//! let q = TaskQueue::new(&cluster);
//! q.prep_remotes()?;
//! for i in 1..=10 {
//!     let cb = |s: String, r: ptools_queue::Result<String>| println!("{s}: {}", r.unwrap());
//!     q.queue_worker_task(QueuedWorkerTask::new(format!("parallel {i}"), reverse, cb, Target::Any))?;
//! }
//! let t = QueuedWorkerTask::without_callback("sequential".to_string(), reverse, Target::Any);
//! assert_eq!(q.execute_worker_task(t)?, "laitneuqes");
//! assert!(q.wait_idle_timeout(std::time::Duration::from_secs(60)));
//! # Ok(())
//! # }
//! ```
//!
//! The free functions ([`queue_worker_task`], [`set_priorities`], ...) act on a default
//! queue over [`ptools_workerset::default_cluster`], as PTools.jl's do; a [`TaskQueue`]
//! can be made for any [`Cluster`](ptools_workerset::Cluster).
//!
//! # Tasks, targets and priorities
//!
//! A [`QueuedWorkerTask`] holds data `D`, a remote function `fn(D) -> R` (a `fn` item or
//! a closure that captures nothing, run on a worker through ptools-workerset's remote
//! calls), an optional callback `FnMut(D, Result<R>)`, a [`Target`] and a priority.
//! Lower priorities run first, equal ones in submission order; NaN is refused with
//! [`Error::InvalidPriority`]. A target names any worker, all workers, a worker id, a
//! list of ids, a host (name, short name or IP address) or a list of hosts. Targets are
//! checked when the task is queued: an unknown worker or host is an error there
//! ([`Error::UnknownWorker`], [`Error::UnknownHost`]), where PTools.jl silently sent the
//! task elsewhere; every id and host of a list must exist. A host target is resolved
//! then to the workers on that host.
//!
//! [`TaskQueue::set_priorities`] recomputes every queued task's priority from its target,
//! the task (id, data by type) and its current priority; [`TaskQueue::set_priority`]
//! changes one, [`TaskQueue::priority`] reads one.
//!
//! # Hosts
//!
//! ptools-workerset's handshake does not carry the worker's host, so
//! [`TaskQueue::prep_remotes`] learns it with one remote call per new worker (a function
//! of this crate that returns `gethostname` and the addresses from `getifaddrs`), made to
//! all new workers at once. All workers are local today; host targets already work by
//! name, short name and any interface address (127.0.0.1 included).
//!
//! # Design
//!
//! - **Queue core.** A pure data structure (no threads, tested against a model with
//!   proptest). Entries and task records sit in slabs, vectors addressed by index (a
//!   task's id carries its record's index beside its number), not in hash maps: a queue
//!   filled and drained in order walks its memory in order, so the cost per task does not
//!   grow with the queue once it outgrows the caches. Entries are ordered by `(priority,
//!   sequence)` per *bucket*, a bucket being the set of workers an entry may run on (any;
//!   or a sorted list of ids), in a *lane*: keys that come in order (equal priorities in
//!   submission order, a bucket just reprioritised) go to a sorted deque, `O(1)` to add
//!   and to take, the others to a B-tree, `O(log n)`. A worker takes the best head among
//!   the few buckets that admit it. Recomputing priorities computes all new values first
//!   (so NaN or a panic leaves the queue untouched), then radix-sorts them: linear in the
//!   number of tasks. Dropping a queue takes its entries out at once and frees them
//!   outside the lock.
//! - **All-workers tasks** are split when queued into one entry per prepared worker,
//!   pinned to it and sharing the task id; each part's outcome goes to the callback.
//! - **Feeders.** One thread per worker sleeps on a condition variable, takes its best
//!   entries under the queue lock, runs them with `remotecall` + `fetch` (the fetching
//!   thread reads the reply itself, ptools-workerset's fast path), and hands the
//!   completions to the callback thread in batches. See the protocol notes in
//!   `src/queue/mod.rs`.
//! - **Pipelining.** A round trip per task caps a worker at one task per round trip
//!   (the baseline below: 56 000 to 88 000 calls/s for two workers, before any queue
//!   or callback work on the same 2 cores). So a feeder
//!   keeps up to 2 ms of work, by the mean time per task it has measured, on its worker
//!   (at most 64 calls, and one at a time until a first task has been timed): trivial
//!   tasks run back to back (see Performance), while a long task is never
//!   committed to a busy worker when another could take it. The price: a short task
//!   already sent counts as running, so it is no longer dequeued or reprioritised, and
//!   if its worker dies it fails with `WorkerDied` along with the task that was running
//!   (whether it ran cannot be known, so it is not run again).
//! - **Callbacks** run on one callback thread per queue, in completion order, never on a
//!   feeder (a slow callback does not idle a worker). A callback that panics is caught,
//!   counted ([`Counts::callback_panics`]) and reported to the error hook
//!   ([`TaskQueue::set_error_hook`]; by default a line on stderr); the queue goes on.
//! - **Faults.** A remote panic or any remote error is the task's outcome; the feeder
//!   goes on. A worker that dies fails its running task with a `WorkerDied` error
//!   ([`Error::is_worker_died`]); a task that was taken but could not be sent goes back to
//!   the queue; entries that only the dead worker could run fail with its death; any-worker
//!   entries go to the others, or fail with [`Error::NoWorkers`] when none is left. An idle
//!   feeder is woken by the cluster's worker-exit notification
//!   (`Cluster::on_worker_exit`), so a death is noticed at once and without traffic.
//! - **Exactly once.** Every queued entry ends in exactly one completion, and so one
//!   callback call: its result, its failure, [`Error::Dequeued`], [`Error::NoWorkers`] or
//!   [`Error::Shutdown`]. A dequeue of a task already running answers
//!   [`DequeueStatus::Running`] and changes nothing.
//!
//! # Changes from PTools.jl
//!
//! - Rust has no `WorkerTask` supertype: the data is any serde type `D: Clone` (cloned
//!   once per send, since the callback gets it back).
//! - `dequeue_worker_tasks(filter)` removes the tasks for which the filter is true
//!   (PTools.jl removed those for which it was false), and returns their ids.
//! - `execute_worker_task` refuses [`Target::All`], which has one outcome per worker.
//! - Dispatch can be paused and resumed, waited on, and counted ([`Counts`]); with the
//!   feature `progress`, `TaskQueue::wait_idle_progress` draws a progress bar.
//!
//! # Performance
//!
//! Measured with `benches/queue.rs` (see `benches/README.md`) on this 2-core machine,
//! shared with other builds (load average 4 to 9 for the last figures), so figures drift
//! between runs; a range is over runs:
//!
//! | benchmark | measured | target |
//! |---|---|---|
//! | 100 000 any-worker tasks with callbacks, 2 workers | 315 000 to 328 000 tasks/s | at least 50 000/s |
//! | the same calls with `remotecall_fetch` from 2 threads, no queue (baseline) | 56 000 to 118 000 calls/s | - |
//! | the same queue of 10^4 / 10^5 / 10^6 tasks, time per task | 2.7-3.3 / 2.8-3.3 / 3.1-3.6 µs | within 10 % from 10^4 to 10^6 |
//! | `set_priorities` over 100 000 queued tasks | 2.5 to 2.8 ms (from each task's data: 5.5 ms) | at most 50 ms |
//! | `set_priorities` reordering 10^4 / 10^5 / 10^6 tasks, time per task | 47-65 / 56-123 / 130-190 ns (the memory passes alone: 10-16 / 20-29 / 42-59 ns) | linear |
//! | dropping a paused queue of 10^4 / 10^5 / 10^6 tasks, time per task | 47-52 / 50-106 / 62-106 ns (a `Vec` of the same entries: 21-44 / 33-42 / 50-95 ns) | linear |
//! | queue + dequeue one task, 1 000 / 10 000 / 100 000 queued | 0.4-0.5 / 0.46-0.49 / 0.8-1.1 µs | `O(log n)` |
//!
//! The queue beats the bare round trips because feeders pipeline short tasks. Its cost
//! per task does not grow with its size any more (it did by a third to a half from 10^4
//! to 10^6 tasks while the core kept hash maps, and dropping 10^6 tasks cost 8 to 21
//! times as much as 10^5): what still grows is what any program pays once its data
//! outgrow the caches. A queued task holds about 230 bytes (its entry, its record, its
//! key, the boxed task and callback), so 10^6 of them hold about 230 MB. Reordering them
//! all reads and writes that memory: the same passes over plain `std` structures cost 4
//! times more per task at 10^6 than at 10^4, `set_priorities` 2 to 3 times. Dropping them
//! frees every task's memory, which costs about as much per task as freeing a plain `Vec`
//! of the same entries. Queuing and dequeuing one task in the middle of the queue grows
//! as `log n`: a binary search in a bucket's sorted run.
//!
//! # Caveats
//!
//! Workers added after [`prep_remotes`](TaskQueue::prep_remotes) are used once it is
//! called again. Do not call queue methods from inside a `set_priorities` or
//! `dequeue_worker_tasks` closure (the queue is locked while they run), nor wait on the
//! queue (`execute_worker_task`, refused there, or `wait_idle`) from a callback: the
//! callback thread would wait on itself. While the queue is paused, `execute_worker_task`
//! and `wait_idle` wait for [`resume`](TaskQueue::resume). Dropping a [`TaskQueue`]
//! fails its queued tasks with [`Error::Shutdown`] and does not wait for running ones.
//!
//! # Platform support
//!
//! Linux, as ptools-workerset. Every other target (macOS included) builds with
//! ptools-workerset's stub backend, where no worker can be started (`addprocs` fails with
//! `Error::Io` of kind `Unsupported`, see `ptools_workerset::Error::is_unsupported`): a
//! queue there runs its tasks in the master (id 1), as on Linux without workers, and a
//! task targeted at any other worker is [`Error::UnknownWorker`] when it is queued. `--cfg ptools_stub` selects the stub
//! backends on any target, which is how CI type-checks this on Linux.

mod core;
mod error;
mod queue;
mod sys;
mod target;
mod task;

use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{Error, Result};
pub use queue::{CallbackPanic, Counts, DequeueStatus, TaskQueue};
pub use target::{RemoteInfo, Target};
pub use task::{QueuedWorkerTask, TaskId, TaskRef};

/// The default queue, over [`ptools_workerset::default_cluster`]; the free functions act
/// on it. It lives until the process exits.
pub fn default_queue() -> &'static TaskQueue {
    static Q: OnceLock<TaskQueue> = OnceLock::new();
    Q.get_or_init(|| TaskQueue::new(ptools_workerset::default_cluster()))
}

/// [`TaskQueue::prep_remotes`] on the default queue.
///
/// # Errors
///
/// As [`TaskQueue::prep_remotes`].
pub fn prep_remotes() -> Result<usize> {
    default_queue().prep_remotes()
}

/// [`TaskQueue::num_remotes`] on the default queue.
pub fn num_remotes() -> usize {
    default_queue().num_remotes()
}

/// [`TaskQueue::queue_worker_task`] on the default queue.
///
/// # Errors
///
/// As [`TaskQueue::queue_worker_task`].
pub fn queue_worker_task<D, R>(t: QueuedWorkerTask<D, R>) -> Result<TaskId>
where
    D: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    default_queue().queue_worker_task(t)
}

/// [`TaskQueue::execute_worker_task`] on the default queue.
///
/// # Errors
///
/// As [`TaskQueue::execute_worker_task`].
pub fn execute_worker_task<D, R>(t: QueuedWorkerTask<D, R>) -> Result<R>
where
    D: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    default_queue().execute_worker_task(t)
}

/// [`TaskQueue::dequeue_worker_task`] on the default queue.
pub fn dequeue_worker_task(id: TaskId) -> DequeueStatus {
    default_queue().dequeue_worker_task(id)
}

/// [`TaskQueue::dequeue_worker_tasks`] on the default queue.
pub fn dequeue_worker_tasks(filter: impl FnMut(&TaskRef<'_>) -> bool) -> Vec<TaskId> {
    default_queue().dequeue_worker_tasks(filter)
}

/// [`TaskQueue::set_priorities`] on the default queue.
///
/// # Errors
///
/// As [`TaskQueue::set_priorities`].
pub fn set_priorities(f: impl FnMut(&Target, &TaskRef<'_>, f64) -> f64) -> Result<()> {
    default_queue().set_priorities(f)
}
