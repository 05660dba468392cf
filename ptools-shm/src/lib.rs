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
//! let field = set.get_mut::<f64>("field")?;
//! field[0] = 3.5;
//! assert_eq!(field.dims(), &[64, 64]);
//!
//! // Any other process of the job (a worker, a server task) attaches by name with the
//! // same configuration, and sees the same memory:
//! //     let seen = ShmSet::attach(&cfgs, &prefix)?;
//! // Dropping the creator's set unlinks the segments.
//! # Ok::<(), ptools_shm::ShmError>(())
//! ```
//!
//! # What a segment holds
//!
//! Each segment, named `/ptools_<prefix>_<name>`, starts with a 128-byte header: a magic
//! number, a version, the element type's tag, the dims, the creator's pid and start time,
//! a random generation id, and a ready flag published last. Attaching checks all of it, so
//! a wrong element type or shape is an error ([`ShmError::TypeMismatch`],
//! [`ShmError::DimsMismatch`]), never a mis-typed view. Element types are the primitive
//! numbers, behind the `unsafe` marker trait [`ShmElem`].
//!
//! # Safety model
//!
//! **The choice.** Creating and attaching are safe functions, and so are the slices and
//! views they give ([`ShmArray::as_slice`], [`ShmArray::as_mut_slice`], `Deref`,
//! [`ShmSet::get`], [`ShmSet::get_mut`], the `ndarray` views). This is a deliberate,
//! documented exception to "safe code cannot cause undefined behaviour": memory that
//! other processes map is outside what the compiler can check, and ptools states the
//! contract here instead of making every attach `unsafe` (as `memmap2` makes `map`).
//!
//! **What is checked, within one process.** Slices are checked for type,
//! length and alignment against the segment's header when it is mapped; lengths, dims and
//! the base pointer live in the handle (this process's memory), never re-read from the
//! shared pages; elements are [`ShmElem`] plain numbers, for which every bit pattern is
//! valid. A process maps each segment through one handle only (a second attach is
//! [`ShmError::AlreadyMapped`]), so the borrow checker's rules hold between this
//! process's slices: no `&mut [T]` ever overlaps another slice of the same process.
//!
//! **The contract, for what it cannot see: other processes.** While one process writes an
//! element, no other process reads or writes that element. Data changes hands only where
//! the reader waits for the writer through the kernel: a remote call whose reply was
//! read, a child that was reaped or whose frame was read, a `pmap_stasks` that returned.
//! ptools' own code keeps the rule: it never writes an array's elements (a new segment's
//! pages are zero when it is published as ready; reserving and pre-faulting pages leaves
//! their contents alone), and its calls and forks hand data over only at such waits.
//! User code that writes the same element from two processes between waits breaks it. To
//! signal through the memory itself, use atomics on raw pointers
//! (`AtomicU64::from_ptr(a.as_mut_ptr())`) while no slice over those elements is alive;
//! plain and volatile accesses do not synchronize.
//!
//! **What breaking it means.** A data race, which Rust defines as undefined behaviour,
//! however plain the elements are: the compiler may assume that memory behind a live
//! `&[T]` does not change and that memory behind a `&mut [T]` is not observed by anyone
//! else, so it may read an element twice and get two values, or keep a stale one across a
//! loop. In particular a value another process may be writing must never be used as an
//! index or a length: the bounds check and the access may see different values. The
//! library's own memory safety does not rest on element values (none is ever a length or
//! a pointer), so a race cannot corrupt a handle, but it is still UB in the racing code.
//!
//! **Why safe, and not `unsafe` constructors.** The accesses that matter are the reads and
//! writes between waits, in user code, not the attach: an `unsafe` attach would put the
//! same unverifiable promise on every worker's, server task's and child's start-up
//! without making one access checkable, and creation would need it too (attachers write
//! the creator's pages). memmap2's `map` is `unsafe` because any process may modify or
//! truncate an ordinary file; ptools' segments are created exclusively, mode 0600, under a
//! job-unique [`Prefix`] unless a program chooses a shared one, so only processes of the
//! same user that know the name can touch them, the same trust as `ptrace` and `/proc/<pid>/mem`, which Rust's guarantees
//! do not cover either. A process that shrinks a segment from outside (truncating the
//! file in `/dev/shm`) makes every process mapping it die with `SIGBUS`; no API can
//! prevent that.
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
//! - On `SIGINT` (Ctrl-C) and `SIGTERM` (a scheduler's stop), a process unlinks the
//!   segments it created and still owns, then dies by that signal (exit status 130 or 143 in
//!   a shell); a second signal during that cleanup ends it at once, still unlinking. The
//!   handler is installed at the first segment this process creates, for each signal whose
//!   disposition is still the default: a handler of your own, or `SIG_IGN`, is never
//!   replaced. Opt out with `PTOOLS_NO_SIGNAL_HANDLERS=1` in the environment or
//!   [`signals::disable`]. Up to [`signals::SEGMENT_SLOTS`] live segments per process are
//!   covered; kept segments ([`ShmBuilder::keep`]) and attached ones never are. See
//!   [`signals`] for how it works.
//! - A process killed with `SIGKILL` (or another fatal signal, or with the handlers off)
//!   runs no destructor: its segments stay in `/dev/shm`.
//!   [`list_shm`] shows them with `owner_alive: false`, and [`remove_stale_shm`] (or the
//!   `ptools shm clean` command) removes them. The next job to create the same name takes
//!   it over.
//! - A creator killed between `shm_open` and its first write leaves an empty object with
//!   our name. Nothing lists it (it has no header); the next creator of that name takes
//!   it over once it is two seconds old and nobody holds its lock.
//! - Liveness is judged by pid and start time in this pid namespace. Containers with
//!   their own pid namespaces that share one `/dev/shm` see each other's segments as
//!   stale: do not run `remove_stale_shm` (or `ptools shm clean`) across them.
//!
//! # Platform support
//!
//! Linux is tested. macOS is designed for and type-checks (`cargo check --target
//! x86_64-apple-darwin`, which `cargo xtask ci` runs when the target is installed), but has
//! never run, so treat it as unsupported until CI covers it: the backend shortens names longer than its 31-byte
//! limit by a hash and reads start times with `proc_pidinfo`; segments cannot be listed
//! there (no `/dev/shm`, so [`list_shm`] is [`ShmError::Unsupported`]); and its shared
//! memory objects report no inode and refuse `flock`, so the identity checks and stale
//! takeover need another mechanism there (the header's generation id is meant for it).
//!
//! Other Unix targets build with a stub backend that makes no system call: creating,
//! attaching, unlinking and listing fail with [`ShmError::Unsupported`] (naming the call
//! that is missing), so a program that uses shared arrays only on some platforms still
//! compiles everywhere. `--cfg ptools_stub` selects that backend on any target, which is how
//! CI type-checks it on Linux. Windows has no POSIX shared memory, and non-Unix targets are
//! refused at compile time.
//!
//! # Features
//!
//! - `ndarray`: `ShmArray::view` and `view_mut` give `ndarray` views with the dims.

mod array;
mod cfg;
mod elem;
mod error;
mod header;
mod segment;
mod stale;
mod sys;

/// Cleanup on `SIGINT` and `SIGTERM`: segments this process created are unlinked, workers
/// it started are stopped, then it dies by the same signal. Shared by ptools-shm and
/// ptools-workerset (the same items as `ptools_workerset::signals`).
///
/// The whole story, its limits and the opt-outs are on [`ptools_sys::signals`]; in short:
/// the handler is installed at the first segment created (or worker started), only where
/// the disposition is still `SIG_DFL`, and [`disable`](signals::disable) or
/// [`NO_HANDLERS_ENV`](signals::NO_HANDLERS_ENV)` = 1` turn it off.
pub mod signals {
    pub use ptools_sys::signals::{
        NO_HANDLERS_ENV, PROCESS_SLOTS, SEGMENT_SLOTS, WORKER_GRACE_MS, disable, is_active,
    };
}

pub use array::{ShmArray, ShmBuilder, ShmSet, unlink_shm};
pub use cfg::{Dims, MAX_NAME_LEN, MAX_PREFIX_LEN, MAX_RANK, PREFIX_ENV, Prefix, ShmCfg};
pub use elem::{ElemKind, ElemType, ShmElem};
pub use error::{Result, ShmError};
pub use stale::{SegmentInfo, list_shm, remove_stale_shm};
