//! Server tasks for ptools: long-running worker loops that keep state between calls in
//! task-local storage, with shared arrays mapped in. After PTools.jl's `ServerTasks`.
//!
//! [`start_stasks`] creates the configured arrays once in the master and starts one
//! server task per worker, each with the arrays mapped in and an empty
//! [`TaskLocalStorage`]. [`pmap_stasks`] then runs a handler in every task, one argument
//! per task; the handler gets a [`TaskContext`]: its task index, its state (kept until
//! the group stops) and the arrays. The master reaches the same arrays through the
//! handle. [`stop_stasks`] (or dropping the handle) drops every task's state and unlinks
//! the arrays.
//!
//! ```
//! ptools_workerset::enable_test_support!(); // in `main`: `ptools_workerset::init();`
//!
//! use ptools_shm::{Prefix, ShmCfg};
//! use ptools_stasks::{STasks, TaskContext};
//!
//! /// Each task writes its worker id into its stripe and counts its calls.
//! fn stripe(ctx: &mut TaskContext, value: i32) -> u64 {
//!     let (task, n) = (ctx.task(), ctx.ntasks());
//!     let a = ctx.array_mut::<i32>("svar1").expect("configured");
//!     for x in a.iter_mut().skip(task).step_by(n) {
//!         *x = value;
//!     }
//!     let calls = ctx.get_or_insert_with("calls", || 0u64);
//!     *calls += 1;
//!     *calls
//! }
//!
//! # fn main() -> Result<(), ptools_stasks::Error> {
//! # let cluster = ptools_workerset::Cluster::new();
//! # cluster.addprocs(2)?;
//! let cfgs = [ShmCfg::new::<i32>("svar1", 1000)?];
//! // `start_stasks(&cfgs, &prefix)` uses the default cluster; this one picks its own.
//! let mut h = STasks::builder().cluster(&cluster).start(&cfgs, &Prefix::job())?;
//! let ids: Vec<i32> = h.workers().iter().map(|&id| id as i32).collect();
//! assert_eq!(ptools_stasks::pmap_stasks(&h, stripe, ids.clone())?, [1, 1]);
//! assert_eq!(ptools_stasks::pmap_stasks(&h, stripe, ids.clone())?, [2, 2]); // state kept
//! let a = h.array::<i32>("svar1")?;
//! assert!(a.iter().enumerate().all(|(i, &x)| x == ids[i % 2]));
//! ptools_stasks::stop_stasks(&mut h)?; // unlinks svar1
//! # Ok(())
//! # }
//! ```
//!
//! # Handlers
//!
//! A handler is a `fn` item or a closure that captures nothing, of the shape
//! `fn(&mut TaskContext, A) -> R`, with `A` and `R` serde types (several arguments: a
//! tuple). The handler travels as a function pointer: the master sends the remote function
//! `run::<A, R>` (through ptools-workerset, as any remote call) with an argument that
//! carries the group, the handler's place in the executable's code
//! ([`ptools_workerset::CodeOffset`], checked to lie in the executable's own code), and
//! `A`; the worker turns the offset back into the same `fn` (the handshake proved it runs
//! the same executable) and calls it with the task's context.
//!
//! The handler is never re-created from its type. Earlier versions did that for any
//! zero-sized `Copy` handler type, which let a closure capturing a zero-sized capability
//! token (a type with a private constructor) run in a worker that never held the token.
//! Now only what coerces to a `fn` pointer is accepted: fn items and closures that
//! capture nothing. A closure that captures anything is a compile error (see
//! [`pmap_stasks`]).
//!
//! # The worker side
//!
//! A server task is an entry in a registry in the worker process, keyed by the group's
//! id (unique within the master process): its [`TaskContext`], that is its storage and
//! its attached `ShmSet`. Starting sends each worker one remote call that attaches the
//! arrays and registers the entry; a handler call checks the entry out, runs, and puts it
//! back; stopping sends one call that drops it. Two groups on the same workers therefore
//! keep separate state. A worker runs one call at a time, so a task's calls never
//! overlap; different tasks (workers) run in parallel.
//!
//! # Prefixes
//!
//! The arrays are created under `<prefix>.s<group>` ([`STasks::prefix`]), the group id in
//! hex: two groups never collide, even on the same prefix, and the workers are told the
//! prefix in the start call (so it needs no environment variable). Another process can
//! attach the arrays with that prefix. The prefix given must leave room for the suffix
//! (at most 32 bytes in all): a computed [`Prefix::job`](ptools_shm::Prefix::job) (at
//! most 19 bytes) does for billions of groups; a prefix that does not is an
//! [`Error::InvalidArgument`] before anything is created.
//!
//! # Errors and faults
//!
//! [`pmap_stasks`] has one return shape: `Ok` with every task's result in task order, or a
//! [`PmapError`] that is either [`PmapError::Refused`] (nothing was sent: a count
//! mismatch, a stopped handle) or [`PmapError::Failed`] with every task's outcome, its
//! value or its typed [`Error`]. `?` turns a `PmapError` into an [`Error`].
//!
//! - A handler that panics fails only its own task ([`Error::TaskPanic`]); the task's
//!   state stays registered, with whatever the handler changed before it panicked, and
//!   the worker serves the next call.
//! - A worker that dies fails its task with [`Error::WorkerDied`], in that call and every
//!   later one (the other tasks go on); [`STasks::task_status`] and
//!   [`STasks::dead_tasks`] say so. Stopping skips it and still unlinks every array.
//! - Use after [`stop_stasks`] is [`Error::Stopped`]; stopping twice does nothing.
//!
//! # Arrays in every process
//!
//! [`pmap_shm_create`] creates arrays in the master and maps them in every worker of the
//! cluster, outside any server task; a plain remote function reaches them with
//! [`with_mapped`], and [`pmap_shm_unlink`] drops the mappings and unlinks.
//!
//! # Performance
//!
//! - A `pmap_stasks` call costs what the remote calls under it cost: one
//!   `remotecall` per task, all sent before any is awaited, then one wait per task. The
//!   bridge adds a map lookup and a moved `Box` per call in the worker, and the group id
//!   (8 bytes) on the wire. `benches/README.md` compares it with `remotecall_fetch`.
//! - For big arrays the kernel's page handling dominates: reserving (zeroing) the
//!   pages, the page faults of first writes (4 KiB pages on a shared mapping; writes get
//!   no fault-around), and freeing the pages at stop. [`Reserve`] says who reserves;
//!   [`STasksBuilder::populate`] pre-faults mappings.
//!
//! # Differences from PTools.jl
//!
//! - `stop_stasks` takes `&mut STasks`, not the handle by value, so that stopping twice
//!   and use after stop are harmless, typed outcomes as PTools.jl users expect (by value
//!   they would be compile errors, and the handle could not be inspected afterwards).
//! - `task_local_storage(:svar1)` is [`TaskContext::array`]; the typed state is
//!   [`TaskContext::get`] / [`TaskContext::set`] / [`TaskContext::get_or_insert_with`].
//! - Task indices are 0-based.
//! - With no worker, PTools.jl runs the one server task in the master. ptools does not: a
//!   task in the master would map the group's arrays a second time in a process that
//!   already holds them (each process maps a segment through one handle only) and would
//!   run handlers without the isolation of a worker process. Nor does it pick a number of
//!   workers for the caller: [`start_stasks`] on a cluster with no worker fails with
//!   [`Error::NoWorkers`] before anything is created, and
//!   [`STasksBuilder::addprocs_if_none`] says how many to start in that case.
//!
//! # Caveats
//!
//! - Dropping an [`STasks`] stops it. A master killed with `SIGKILL` runs no destructor:
//!   its workers exit on their own, and the arrays stay in `/dev/shm` until
//!   `ptools_shm::remove_stale_shm` (or `ptools shm clean`) removes them.
//! - The borrow checker sees one process: the master should not read an array while the
//!   tasks write it, other than between `pmap_stasks` calls (which wait for every task).
//!
//! # Platform support
//!
//! Linux, as ptools-workerset. Every other target (macOS included) builds with
//! ptools-workerset's stub backend, where no worker can be started: [`start_stasks`] fails
//! with [`Error::NoWorkers`], or, when [`STasksBuilder::addprocs_if_none`] asks for
//! workers, with [`Error::Worker`] holding the runtime's `Unsupported` error
//! (`ptools_workerset::Error::is_unsupported`), before any array is created.
//! `--cfg ptools_stub` selects the stub backends on any target, which is how CI
//! type-checks this on Linux.

mod context;
mod error;
mod mapped;
mod registry;
mod stasks;
mod sys;

use ptools_shm::{Prefix, ShmCfg, ShmSet};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::{TaskContext, TaskLocalStorage};
pub use error::{Error, PmapError, Result};
pub use mapped::{pmap_shm_create_on, pmap_shm_unlink_on, with_mapped};
pub use stasks::{Reserve, STasks, STasksBuilder, TaskStatus};

/// Creates the arrays `cfgs` in the master and starts one server task on every worker of
/// the default cluster. See [`STasksBuilder::start`] for the options (another cluster,
/// chosen workers, workers started when there are none, timeouts).
///
/// # Errors
///
/// As [`STasksBuilder::start`]: [`Error::NoWorkers`] when the default cluster has no
/// worker (start them first with `addprocs`).
pub fn start_stasks(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<STasks> {
    STasks::builder().start(cfgs, prefix)
}

/// The number of server tasks of `h` (dead ones included).
pub fn count_stasks(h: &STasks) -> usize {
    h.count()
}

/// Runs the handler `f` in every server task of `h`, task `i` getting the `i`-th of
/// `args` (exactly one per task), in parallel; returns the results in task order.
///
/// `f` is a `fn` item or a closure that captures nothing: it travels to the workers as a
/// function pointer. A closure that captures anything, even a zero-sized value, does not
/// coerce to one and is rejected at compile time; so a closure holding a zero-sized
/// capability token cannot be re-created in a worker that never received the token:
///
/// ```compile_fail,E0308
/// mod cap {
///     /// A capability only `grant` hands out.
///     #[derive(Clone, Copy)]
///     pub struct Token(());
///     pub fn grant() -> Token {
///         Token(())
///     }
/// }
///
/// fn send(h: &ptools_stasks::STasks) {
///     let token = cap::grant();
///     let _ = ptools_stasks::pmap_stasks(
///         h,
///         move |_ctx: &mut ptools_stasks::TaskContext, x: u32| {
///             let _held = token;
///             x
///         },
///         [1u32],
///     );
/// }
/// # fn main() {}
/// ```
///
/// The same call with a closure that captures nothing compiles:
///
/// ```
/// fn send(h: &ptools_stasks::STasks) {
///     let _ = ptools_stasks::pmap_stasks(
///         h,
///         |ctx: &mut ptools_stasks::TaskContext, x: u32| x + ctx.task() as u32,
///         [1u32],
///     );
/// }
/// # fn main() {}
/// ```
///
/// # Errors
///
/// [`PmapError::Refused`] before anything is sent ([`Error::CountMismatch`],
/// [`Error::Stopped`], [`Error::Worker`] when `f` is not in the executable's own code); [`PmapError::Failed`] with every task's outcome when a task
/// fails. See [`STasks::pmap`].
pub fn pmap_stasks<A, R, I>(
    h: &STasks,
    f: fn(&mut TaskContext, A) -> R,
    args: I,
) -> Result<Vec<R>, PmapError<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: IntoIterator<Item = A>,
{
    h.pmap(f, args)
}

/// Stops the server tasks of `h` and unlinks its arrays; harmless when already stopped.
/// See [`STasks::stop`].
///
/// # Errors
///
/// As [`STasks::stop`]; the arrays are unlinked whatever happens.
pub fn stop_stasks(h: &mut STasks) -> Result<()> {
    h.stop()
}

/// Creates the arrays `cfgs` under `prefix` in the master and maps them in every worker
/// of the default cluster (PTools.jl's `pmap_shm_create`). Returns the master's handles;
/// dropping them unlinks the segments (the workers' mappings stay valid until
/// [`pmap_shm_unlink`]). In a worker, [`with_mapped`] reaches the arrays.
///
/// ```
/// ptools_workerset::enable_test_support!();
/// use ptools_shm::{Prefix, ShmCfg};
///
/// fn read_back(i: usize) -> u32 {
///     let p = Prefix::new("doc-mapped").unwrap();
///     ptools_stasks::with_mapped::<u32, _>(&p, "v", |a| a[i]).unwrap()
/// }
///
/// # fn main() -> Result<(), ptools_stasks::Error> {
/// let cluster = ptools_workerset::Cluster::new();
/// let ids = cluster.addprocs(1)?;
/// let cfgs = [ShmCfg::new::<u32>("v", 4)?];
/// let prefix = Prefix::new("doc-mapped")?;
/// let mut set = ptools_stasks::pmap_shm_create_on(&cluster, &cfgs, &prefix)?;
/// set.get_mut::<u32>("v")?[2] = 7;
/// assert_eq!(cluster.remotecall_fetch(ids[0], read_back, 2)?, 7);
/// ptools_stasks::pmap_shm_unlink_on(&cluster, &cfgs, &prefix)?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`Error::Shm`] when the master cannot create them; [`Error::Attach`] or a worker
/// error when a worker cannot map them, after which nothing is left mapped or linked.
pub fn pmap_shm_create(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<ShmSet> {
    pmap_shm_create_on(ptools_workerset::default_cluster(), cfgs, prefix)
}

/// Drops the mappings of `cfgs` under `prefix` in every worker of the default cluster
/// and unlinks the segments (already unlinked is not an error).
///
/// # Errors
///
/// The first worker that fails to answer (a dead worker is not an error), or a failure
/// to unlink other than "not found".
pub fn pmap_shm_unlink(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<()> {
    pmap_shm_unlink_on(ptools_workerset::default_cluster(), cfgs, prefix)
}
