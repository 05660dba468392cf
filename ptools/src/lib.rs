//! ptools: process-based parallel computing for Rust, after Julia's PTools.jl.
//!
//! Processes give what threads cannot: a crash, abort or leak in one task (often inside a C
//! library) does not take the job down; libraries that are not thread-safe run in
//! parallel; a large read-only data set is shared copy-on-write by `fork`; big arrays are
//! shared with zero copies through named shared memory.
//!
//! This facade re-exports each facility as a module; depend on it, or on one facility's
//! crate alone.
//!
//! | module | facility | crate |
//! |---|---|---|
//! | [`shm`] | named POSIX shared-memory typed N-d arrays | `ptools-shm` |
//! | [`fork`] | `pfork(n, f)` and `pfork_shm`: fork-based fan-out | `ptools-fork` |
//! | [`workerset`] | worker processes, remote calls, `WorkerSet` pools | `ptools-workerset` |
//! | [`stasks`] | server tasks: worker loops with task-local state and shared arrays | `ptools-stasks` |
//! | [`queue`] | queued tasks: targets, callbacks, recomputable priorities | `ptools-queue` |
//!
//! ```
//! use ptools::prelude::*;
//!
//! fn norm((row, n): (usize, usize)) -> f64 {
//!     (0..n).map(|j| ((row * n + j) as f64).sqrt()).sum()
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     init(); // a worker runs `main` up to here, then serves calls and never returns
//!     let ids = addprocs(2)?;
//!     let pool = WorkerSet::new(&ids)?; // first-free
//!     let sums = pool.pmap(norm, (0..8).map(|row| (row, 1024)))?;
//!
//!     let cfgs = [ShmCfg::new::<f64>("sums", 8)?];
//!     let mut set = ShmSet::create(&cfgs, &Prefix::job())?;
//!     set.get_mut::<f64>("sums")?.copy_from_slice(&sums);
//!     assert_eq!(set.get::<f64>("sums")?[0], norm((0, 1024)));
//!     rmprocs(&ids)?;
//!     Ok(())
//! }
//! ```
//!
//! `main` runs in every worker up to [`init`](workerset::init) (also in the
//! [`prelude`]): make it the first line. Remote functions are `fn` items or closures
//! that capture nothing.
//!
//! # Platform support
//!
//! | target | `shm`, `fork` | `workerset`, `stasks`, `queue` |
//! |---|---|---|
//! | Linux | yes (tested) | yes (tested; 5.3 or later) |
//! | macOS | written, type-checked, not yet run | stub |
//! | other Unix | stub | stub |
//! | not Unix | does not compile | does not compile |
//!
//! A stub compiles and makes no system call; its operations fail at run time with the
//! facility's typed error: [`shm::ShmError::Unsupported`],
//! [`fork::PforkError::Unsupported`], and for workers [`workerset::Error::Io`] of kind
//! `ErrorKind::Unsupported` ([`workerset::Error::is_unsupported`]) from `addprocs`,
//! before anything is started. So a program can use a facility where it exists and still
//! build everywhere. `RUSTFLAGS="--cfg ptools_stub"` selects the stubs on any target
//! (`cargo xtask ci` type-checks the workspace that way).
//!
//! # Features
//!
//! - `ndarray`: `ndarray` views of shared arrays.
//! - `progress`: progress bars for `pmap_progress` and the queue's `wait_idle_progress`.
//! - `cli`: the `ptools` command-line tool (`ptools shm list`, `ptools shm clean`).

// Each facility is a module holding everything its crate exports (`pub use crate::*`), with
// a module doc written for the facade: its examples use `ptools::` paths, as a user of the
// facade writes them, and are tested here. The crate's own docs go into the details.

pub mod shm {
    //! Named POSIX shared-memory typed N-d arrays (crate `ptools-shm`; the whole story is
    //! in [its docs](ptools_shm)).
    //!
    //! An array is described by a [`ShmCfg`] (name, element type, dims, as PTools.jl's
    //! `ShmCfg(name, type, dims)`). A list of them is created as one [`ShmSet`] under a
    //! [`Prefix`], and attached by name from any other process of the job; each array is a
    //! [`ShmArray<T>`] that derefs to `[T]`, row-major. Attaching checks element type and
    //! dims; the creator's drop unlinks; [`remove_stale_shm`] cleans up after crashed jobs.
    //!
    //! ```
    //! use ptools::shm::{Prefix, ShmCfg, ShmError, ShmSet};
    //!
    //! fn main() -> Result<(), ShmError> {
    //!     let cfgs = [
    //!         ShmCfg::new::<f64>("field", [64, 64])?,
    //!         ShmCfg::new::<u32>("counts", 10)?,
    //!     ];
    //!     let prefix = Prefix::job(); // unique to this job
    //!     let mut set = ShmSet::create(&cfgs, &prefix)?;
    //!     let field = set.get_mut::<f64>("field")?;
    //!     field[0] = 3.5;
    //!     assert_eq!(field.dims(), &[64, 64]);
    //!     // Another process of the job: `ShmSet::attach(&cfgs, &prefix)?`.
    //!     Ok(())
    //! }
    //! ```
    #[doc(inline)]
    pub use ptools_shm::*;
}

pub mod fork {
    //! `pfork(n, f)` and `pfork_shm`: fork-based fan-out (crate `ptools-fork`; the whole
    //! story is in [its docs](ptools_fork)).
    //!
    //! Child `i` of [`pfork`] runs `f(i)` in a fork of the caller: it sees the parent's data
    //! with nothing copied in, and its result comes back (any serde type). A child that
    //! panics, aborts or is killed fails alone, with a typed [`ChildError`]. A process with
    //! other threads is refused ([`PforkError::Threaded`]); in tests, write
    //! [`pfork_test!`](crate::fork::pfork_test) instead of `#[test]`.
    //!
    //! ```
    //! use ptools::fork::{PforkError, pfork};
    //!
    //! fn main() -> Result<(), PforkError<f64>> {
    //!     let data: Vec<f64> = (0..1000).map(f64::from).collect();
    //!     let sums = pfork(2, |i| data[i * 500..(i + 1) * 500].iter().sum::<f64>())?;
    //!     assert_eq!(sums[0] + sums[1], data.iter().sum::<f64>());
    //!     Ok(())
    //! }
    //! ```
    //!
    //! ```
    //! // In a test file (tests/*.rs), under plain `cargo test`:
    //! ptools::fork::pfork_test! {
    //!     fn squares() {
    //!         assert_eq!(ptools::fork::pfork(3, |i| i * i).unwrap(), [0, 1, 4]);
    //!     }
    //! }
    //! # fn main() {}
    //! ```
    #[doc(inline)]
    pub use ptools_fork::*;
}

pub mod workerset {
    //! Worker processes, remote calls and [`WorkerSet`] pools (crate `ptools-workerset`;
    //! the whole story is in [its docs](ptools_workerset)).
    //!
    //! A worker is this same executable, started again: `main` runs in every worker up to
    //! [`init()`], where a worker serves calls and never returns, so make it the first line
    //! of `main` (in a test file, [`enable_test_support!`](crate::workerset::enable_test_support)
    //! at the top instead). A remote function is a `fn` item or a closure that captures
    //! nothing, `fn(A) -> R` with serde types.
    //!
    //! ```
    //! use ptools::workerset::{Error, WorkerSet, addprocs, remotecall, remotecall_fetch, rmprocs};
    //!
    //! fn square(x: u64) -> u64 {
    //!     x * x
    //! }
    //!
    //! fn main() -> Result<(), Error> {
    //!     ptools::workerset::init();
    //!     let ids = addprocs(2)?;
    //!     assert_eq!(remotecall_fetch(ids[0], square, 7)?, 49);
    //!     let r = remotecall(ids[1], |(a, b): (u64, u64)| a + b, (2, 3))?;
    //!     assert_eq!(r.fetch()?, 5);
    //!     let pool = WorkerSet::new(&ids)?; // first-free
    //!     assert_eq!(pool.pmap(square, 1..=3)?, [1, 4, 9]);
    //!     rmprocs(&ids)
    //! }
    //! ```
    #[doc(inline)]
    pub use ptools_workerset::*;
}

pub mod stasks {
    //! Server tasks: long-running worker loops with task-local state and shared arrays
    //! (crate `ptools-stasks`; the whole story is in [its docs](ptools_stasks)).
    //!
    //! [`start_stasks`] creates the arrays in the master and starts one task per worker
    //! (with no worker, [`Error::NoWorkers`]; see [`STasksBuilder::addprocs_if_none`]);
    //! [`pmap_stasks`] runs a handler in every task with one argument each; the handler's
    //! [`TaskContext`] holds the task's state and arrays.
    //!
    //! ```
    //! use ptools::shm::{Prefix, ShmCfg};
    //! use ptools::stasks::{self, TaskContext};
    //!
    //! fn count(ctx: &mut TaskContext, (): ()) -> u64 {
    //!     let calls = ctx.get_or_insert_with("calls", || 0u64);
    //!     *calls += 1;
    //!     *calls
    //! }
    //!
    //! fn main() -> Result<(), Box<dyn std::error::Error>> {
    //!     ptools::workerset::init();
    //!     let ids = ptools::workerset::addprocs(2)?;
    //!     let cfgs = [ShmCfg::new::<i32>("svar1", 1000)?];
    //!     let mut h = stasks::start_stasks(&cfgs, &Prefix::job())?;
    //!     stasks::pmap_stasks(&h, count, [(), ()])?;
    //!     assert_eq!(stasks::pmap_stasks(&h, count, [(), ()])?, [2, 2]); // state kept
    //!     stasks::stop_stasks(&mut h)?; // unlinks svar1
    //!     ptools::workerset::rmprocs(&ids)?;
    //!     Ok(())
    //! }
    //! ```
    #[doc(inline)]
    pub use ptools_stasks::*;
}

pub mod queue {
    //! Queued tasks: a priority queue of tasks for workers, with targets, callbacks and
    //! recomputable priorities (crate `ptools-queue`; the whole story is in
    //! [its docs](ptools_queue)).
    //!
    //! Idle workers take a task as soon as it is queued, so priorities order the tasks that
    //! wait: [`TaskQueue::pause`] the queue to queue a batch first.
    //!
    //! ```
    //! use ptools::queue::{self, QueuedWorkerTask, Target};
    //!
    //! fn reverse(s: String) -> String {
    //!     s.chars().rev().collect()
    //! }
    //!
    //! fn main() -> Result<(), Box<dyn std::error::Error>> {
    //!     ptools::workerset::init();
    //!     let ids = ptools::workerset::addprocs(2)?;
    //!     let t = QueuedWorkerTask::new("abc".to_owned(), reverse, |s, r| {
    //!         println!("{s} -> {r:?}");
    //!     }, Target::Any);
    //!     queue::queue_worker_task(t)?;
    //!     let t = QueuedWorkerTask::without_callback("ptools".to_owned(), reverse, Target::Any);
    //!     assert_eq!(queue::execute_worker_task(t)?, "slootp");
    //!     queue::default_queue().wait_idle();
    //!     ptools::workerset::rmprocs(&ids)?;
    //!     Ok(())
    //! }
    //! ```
    #[doc(inline)]
    pub use ptools_queue::*;
}

/// The README's examples, run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The names a PTools.jl user looks for, in one import.
pub mod prelude {
    #[doc(inline)]
    pub use ptools_fork::{ChildError, Pfork, PforkError, pfork, pfork_shm};
    #[doc(inline)]
    pub use ptools_queue::{
        QueuedWorkerTask, Target, TaskQueue, dequeue_worker_task, execute_worker_task, num_remotes,
        prep_remotes, queue_worker_task, set_priorities,
    };
    #[doc(inline)]
    pub use ptools_shm::{
        Prefix, ShmArray, ShmBuilder, ShmCfg, ShmElem, ShmError, ShmSet, list_shm,
        remove_stale_shm, unlink_shm,
    };
    #[doc(inline)]
    pub use ptools_stasks::{
        STasks, TaskContext, count_stasks, pmap_shm_create, pmap_shm_unlink, pmap_stasks,
        start_stasks, stop_stasks,
    };
    #[doc(inline)]
    pub use ptools_workerset::{
        Cluster, Mode, RemoteRef, SharedSlice, WorkerSet, addprocs, init, myid, nprocs, nworkers,
        pmap, procs, remotecall, remotecall_fetch, remotecall_wait, rmprocs, workers,
    };
}
