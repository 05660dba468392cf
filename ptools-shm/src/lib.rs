//! Named POSIX shared-memory typed N-d arrays, the shared-memory facility of ptools.
//!
//! An array is described by a [`ShmCfg`] (name, element type, dims, as PTools.jl's
//! `ShmCfg(name, type, dims)`). A list of them is created as one [`ShmSet`] under a
//! [`Prefix`], and attached by name from any other process of the job; each array is a
//! [`ShmArray<T>`] that derefs to `[T]`, row-major.
//!
//! ```
//! use ptools_shm::{Prefix, ShmCfg, ShmSet};
//!
//! let cfgs = [
//!     ShmCfg::new::<f64>("field", [64, 64])?,
//!     ShmCfg::new::<u32>("counts", 10)?,
//! ];
//! let prefix = Prefix::job();                  // unique to this job
//! let mut set = ShmSet::create(&cfgs, &prefix)?;
//! set.get_mut::<f64>("field")?[0] = 3.5;
//!
//! // Any process of the job (a pfork child, a worker) attaches by name:
//! let seen = ShmSet::attach(&cfgs, &prefix)?;
//! assert_eq!(seen.get::<f64>("field")?[0], 3.5);
//! assert_eq!(seen.get::<f64>("field")?.dims(), &[64, 64]);
//! # Ok::<(), ptools_shm::ShmError>(())
//! ```
//!
//! # What a segment holds
//!
//! Each segment, named `/ptools_<prefix>_<name>`, starts with a 128-byte header: a magic
//! number, a version, the element type's tag, the dims, the creator's pid and start time,
//! and a ready flag written last. Attaching checks all of it, so a wrong element type or
//! shape is an error ([`ShmError::TypeMismatch`], [`ShmError::DimsMismatch`]), never a
//! mis-typed view, and attaching stays a safe function. Element types are the primitive
//! numbers, behind the `unsafe` marker trait [`ShmElem`].
//!
//! # Creation
//!
//! Creation is exclusive (`O_EXCL`) and mode 0600. By default the pages are reserved with
//! `posix_fallocate`, so a full `/dev/shm` is an [`ShmError::OutOfSpace`] at creation and
//! never a `SIGBUS` later; [`ShmBuilder::reserve`] skips that for small throw-away
//! arrays. A name held by a live owner is [`ShmError::AlreadyExists`]; a name left by a
//! dead owner is taken over. Every input error is found before the first system call, and
//! a set that fails half-way unlinks what it had created.
//!
//! # Prefixes
//!
//! [`Prefix::job`] is unique per job (the pid and start time of the process that first
//! asks, unless `PTOOLS_SHM_PREFIX` names one, as ptools' worker runtime does for its
//! workers), so two jobs never collide. [`Prefix::new`] lets independent programs meet.
//!
//! # Caveats
//!
//! - The creator's handle unlinks its segment when dropped, in the creating process only
//!   (a forked child that drops an inherited handle does not unlink). Attached handles only
//!   unmap. [`unlink_shm`] unlinks by name.
//! - A process killed with `SIGKILL` runs no destructor: its segments stay in `/dev/shm`.
//!   [`list_shm`] shows them with `owner_alive: false`, and [`remove_stale_shm`] (or the
//!   `ptools shm clean` command) removes them. The next job to create the same name takes
//!   it over.
//! - The borrow checker sees one process: see [`ShmArray`]'s caveats on concurrent writers.
//!
//! # Platform support
//!
//! Linux is tested. macOS is supported by design: names longer than its 31-byte limit
//! are shortened by a hash, pages are allocated at `ftruncate` there, and segments cannot
//! be listed (there is no `/dev/shm`), so [`list_shm`] is [`ShmError::Unsupported`].
//! Windows has no POSIX shared memory and is not supported.
//!
//! # Features
//!
//! - `ndarray`: [`ShmArray::view`] and `view_mut` give `ndarray` views with the dims.

mod array;
mod cfg;
mod elem;
mod error;
mod header;
mod segment;
mod stale;
mod sys;

pub use array::{ShmArray, ShmBuilder, ShmSet, unlink_shm};
pub use cfg::{Dims, MAX_NAME_LEN, MAX_PREFIX_LEN, MAX_RANK, PREFIX_ENV, Prefix, ShmCfg};
pub use elem::{ElemKind, ElemType, ShmElem};
pub use error::{Result, ShmError};
pub use stale::{SegmentInfo, list_shm, remove_stale_shm};
