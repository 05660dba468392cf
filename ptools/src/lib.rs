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
//!
//! pfork, worker sets, server tasks and queued tasks join as they land (see the
//! repository's README for their status).
//!
//! ```
//! use ptools::prelude::*;
//!
//! let cfgs = [ShmCfg::new::<f64>("samples", [8, 1024])?];
//! let mut set = ShmSet::create(&cfgs, &Prefix::job())?;
//! let samples = set.get_mut::<f64>("samples")?;
//! samples.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
//! assert_eq!(samples.dims(), &[8, 1024]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `ndarray`: `ndarray` views of shared arrays.

#[doc(inline)]
pub use ptools_shm as shm;

/// The README's examples, run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The names a PTools.jl user looks for, in one import.
pub mod prelude {
    #[doc(inline)]
    pub use ptools_shm::{
        Prefix, ShmArray, ShmBuilder, ShmCfg, ShmElem, ShmError, ShmSet, list_shm,
        remove_stale_shm, unlink_shm,
    };
}
