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
//! # Features
//!
//! - `ndarray`: `ndarray` views of shared arrays.
//! - `progress`: progress bars for `pmap_progress` and the queue's `wait_idle_progress`.
//! - `cli`: the `ptools` command-line tool (`ptools shm list`, `ptools shm clean`).

#[doc(inline)]
pub use ptools_fork as fork;
#[doc(inline)]
pub use ptools_queue as queue;
#[doc(inline)]
pub use ptools_shm as shm;
#[doc(inline)]
pub use ptools_stasks as stasks;
#[doc(inline)]
pub use ptools_workerset as workerset;

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
        Cluster, Mode, RemoteRef, WorkerSet, addprocs, init, myid, nprocs, nworkers, pmap, procs,
        remotecall, remotecall_fetch, remotecall_wait, rmprocs, workers,
    };
}
