//! Fork-based fan-out for ptools: [`pfork`] forks `n` children, child `i` runs `f(i)`, and
//! the parent gets the `n` results in index order; [`pfork_shm`] lets the children write
//! straight into shared arrays from [`ptools-shm`](https://docs.rs/ptools-shm) that the parent
//! gets back.
//!
//! A child is a `fork` of the caller, so `f` sees everything the parent holds (a large data
//! set, an open library handle) without any copying in: memory is shared copy-on-write.
//! Results come back encoded with postcard through one pipe per child, so `R` is any serde
//! type. A child that panics, aborts, crashes or is killed fails alone: its outcome says why,
//! and every other child's result is kept.
//!
//! ```
//! let squares = ptools_fork::pfork(4, |i| i * i)?;
//! assert_eq!(squares, vec![0, 1, 4, 9]);
//!
//! // Children see the parent's data without it being copied or sent.
//! let data: Vec<f64> = (0..1000).map(f64::from).collect();
//! let sums = ptools_fork::pfork(2, |i| data[i * 500..(i + 1) * 500].iter().sum::<f64>())?;
//! assert_eq!(sums[0] + sums[1], data.iter().sum::<f64>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Pfork`] sets the options of a run and returns one outcome per child:
//!
//! ```
//! use std::time::Duration;
//! use ptools_fork::{ChildError, Pfork};
//!
//! let outcomes = Pfork::new()
//!     .max_alive(2) // at most two children alive at once
//!     .timeout(Duration::from_secs(60)) // children still running then are killed
//!     .run(3, |i| {
//!         if i == 1 {
//!             panic!("child {i} gives up");
//!         }
//!         i
//!     })?;
//! assert_eq!(outcomes[0], Ok(0));
//! assert!(matches!(&outcomes[1], Err(ChildError::Panicked { message, .. }) if message == "child 1 gives up"));
//! assert_eq!(outcomes[2], Ok(2));
//! # Ok::<(), ptools_fork::PforkError<usize>>(())
//! ```
//!
//! # How a run goes
//!
//! The parent flushes its buffered output (Rust's stdout and C stdio), then forks the children,
//! `max_alive` at a time. Each child asks the kernel to kill it when the parent dies
//! (`PR_SET_PDEATHSIG`, then re-checks `getppid()` in case the parent died first), runs `f(i)`
//! inside `catch_unwind`, encodes the result, flushes what it printed itself (Rust's stdout,
//! and C's stdout when it holds output), writes one frame (a tag, a 64-bit length, the
//! payload) into its pipe and leaves with `_exit`: no destructor or `atexit` handler of the
//! parent's state runs in a child, and nothing the parent buffered is printed twice. The
//! parent reads all pipes at once as data arrives (`poll`), so no child blocks on a full pipe,
//! and reaps each child exactly once through its own handle (by its pidfd on Linux 5.3 and
//! later, which also wakes the poll; by its pid, while unreaped, elsewhere); it never calls
//! `wait(-1)`, so it never reaps a child that is not its own, and it kills (on timeout) at
//! most once and never after the reap, so it never signals a process that reused a child's
//! pid.
//!
//! # Shared arrays
//!
//! [`pfork_shm`] creates shared arrays (element type and dims for each, as
//! [`ShmCfg`](ptools_shm::ShmCfg)s) before forking, under a prefix unique to the run; child `i`
//! runs `f(i, &mut set)` and writes into them directly (the mapping is `MAP_SHARED`, inherited
//! by the fork), and the parent gets the set back holding every child's writes. If a child
//! fails, `pfork_shm` drops the set, which unlinks the segments; [`Pfork::run_shm`] returns
//! the set with the outcomes instead. A child never unlinks. `examples/mandelbrot` renders a
//! Mandelbrot image this way and writes it as a PNG file.
//!
//! # Failures
//!
//! Each child ends in exactly one outcome: its result, or a [`ChildError`]: a panic (message
//! and location), death by a signal (`abort`, a crash, `SIGKILL` from outside), a non-zero
//! exit, exit 0 without a result, a malformed or truncated frame, a result that cannot be
//! encoded or decoded, a result over the size cap (or too large for the parent's memory),
//! the timeout, or `fork` failing (then the children alive are
//! killed and reaped, and the children not started are [`ChildError::Cancelled`]).
//! [`pfork`] returns the results when every child succeeded, else a
//! [`PforkError::Children`] that carries every outcome ([`PforkError::into_outcomes`]).
//! `n = 0` forks nothing and returns an empty vector.
//!
//! # Threads
//!
//! After `fork` in a multi-threaded process, POSIX allows the child only async-signal-safe
//! calls until it exits: any lock another thread held at the fork (in malloc, in stdio, in a
//! Rust `Mutex` that `f` uses) stays locked forever in the child. A pfork child runs arbitrary
//! Rust code, so **by default a run refuses to fork a process that has more than one thread**
//! and returns [`PforkError::Threaded`] before forking anything. The threads are counted at
//! the start of every run, from the link count of `/proc/self/task` on Linux (one `statx`,
//! about 1.5 µs here) and with `proc_pidinfo` on macOS; a count that cannot be read is
//! treated as "several".
//!
//! [`Pfork::allow_threads`] opts in, and is `unsafe`: the caller promises that the other
//! threads hold no lock the child needs. In practice glibc makes `malloc` usable in a child
//! (it takes its arena locks around `fork`), so the remaining risks are locks of your own and
//! of libraries (stdout, a logger, a pool's queue) held by another thread at the moment of the
//! fork. The child's own work in pfork (encoding, one `write`, `_exit`) needs the allocator and
//! the stdout lock for its final flush.
//!
//! # Tests
//!
//! Under `cargo test` the libtest harness runs each test on a thread of its own, even with
//! `--test-threads=1` (checked with Rust 1.95), so a plain `#[test]` that calls pfork sees
//! at least two threads and is refused. Write such tests with [`pfork_test!`] instead of
//! `#[test]`; they work under plain `cargo test` in a normal test file:
//!
//! ```
//! ptools_fork::pfork_test! {
//!     fn squares_in_children() {
//!         assert_eq!(ptools_fork::pfork(4, |i| i * i).unwrap(), [0, 1, 4, 9]);
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The policy is not bent for tests: the generated `#[test]` runs the test binary again,
//! and in that process the body runs on the main thread before `main` (from a
//! constructor), while it is the only thread; the test passes or fails with that process
//! (see [`test_support`]). A body that starts threads and then calls pfork is still refused.
//! This crate's own tests that need no libtest at all run in test binaries with
//! `harness = false` and a plain `main`; `tests/libtest.rs` uses [`pfork_test!`].
//! ([`Pfork::allow_threads`] under libtest also works in practice, but it is the `unsafe`
//! promise above, and libtest's output capture does not see what a child prints.)
//!
//! # Nesting
//!
//! A pfork inside a pfork child is refused by default with [`PforkError::Nested`]:
//! [`Pfork::max_depth`] is 1, and a child is at depth 1. Each level of nesting must be allowed
//! explicitly (`max_depth(2)` lets a child run its own pfork, whose children cannot), so the
//! number of processes is bounded by the product of the `n` of each allowed level and never
//! grows by accident.
//!
//! # Caveats
//!
//! - `f` runs in another process: its side effects on memory (a counter it increments, a
//!   cache it fills) are lost with the child. Only the returned value, and writes to shared
//!   memory (`pfork_shm`), come back.
//! - A run waits for all its children. Without a timeout, a child that never ends makes the
//!   run never end; with one, the child is killed with `SIGKILL` at the deadline and reaped.
//! - Every child is reaped before a run returns, whatever happened: no zombie is left. If the
//!   parent itself is killed, its children are killed by the kernel (Linux) and reaped by init
//!   or the nearest subreaper.
//! - Open files are shared with the children (as after any fork); a child that reads from a
//!   shared file descriptor moves the parent's offset too.
//! - A child's panic is not printed: the child's panic hook records it, and it comes back as
//!   [`ChildError::Panicked`]. With `panic = "abort"` the hook sends the report before the
//!   abort, so the panic is still reported as a panic.
//! - One result is at most [`Pfork::max_result_bytes`] encoded bytes, by default
//!   [`Pfork::DEFAULT_MAX_RESULT_BYTES`] (1 GiB); raise it for larger results (above 4 GiB
//!   works: lengths are 64-bit). The child checks the cap while it encodes and sends only the
//!   size of an oversized result ([`ChildError::ResultTooLarge`]), so it costs no transfer and
//!   the child holds at most the cap.
//! - The parent trusts no length a child announces: it checks the header against the cap,
//!   then its buffer grows with the bytes actually received (doubling from 64 KiB, never past
//!   the announced length), so a child that writes a forged header (1 TiB, `u64::MAX`) or a
//!   frame cut short costs the parent only what it really sent, and is reported as
//!   [`ChildError::ResultTooLarge`] or [`ChildError::BadFrame`] beside its siblings' results.
//!   If the parent cannot get memory for a result under the cap, that child is
//!   [`ChildError::OutOfMemory`]; the parent never aborts on it.
//! - Before `_exit` a child flushes Rust's stdout and C's `stdout`. Other C stdio streams `f`
//!   writes to (a `FILE` opened by a C library) must be flushed or closed by `f`: flushing all
//!   streams takes a lock on each, and those writes cost a trivial child about 15% more
//!   (copy-on-write faults). The parent flushes all C streams before it forks.
//! - A child that forks on its own (without `exec`) passes its pipe to the grandchild; the run
//!   still ends when the child is reaped, reading what the child wrote.
//! - Each alive child holds two descriptors in the parent (its pipe and its pidfd). With the
//!   default `max_alive` (all `n`), `n` is therefore bounded by `RLIMIT_NOFILE` (often 1024)
//!   and the process limit: past them `fork` or `pipe` fails ([`ChildError::ForkFailed`] with
//!   `EMFILE` or `EAGAIN`) and the run stops. Set [`Pfork::max_alive`] for large `n`.
//! - If the parent ignores `SIGCHLD` (`SIG_IGN`), the kernel reaps the children itself and
//!   their exit statuses are lost: outcomes then come from what each child sent, and a child
//!   that sent nothing is [`ChildError::NoResult`] whatever its exit code was.
//!
//! # Platform support
//!
//! Linux (glibc or musl) is the target that is built and tested: pidfds (Linux 5.3+) wake the
//! parent exactly when a child ends, with a 2 ms `waitpid` tick as the fallback on older
//! kernels, and `PR_SET_PDEATHSIG` kills children whose parent died. The macOS code paths
//! are written (no pidfd, so the tick; no parent-death signal, so a child only checks at its
//! start that its parent is still there; threads counted with `proc_pidinfo`); the library
//! type-checks for `x86_64-apple-darwin` but has not been run on macOS yet, and the tests use
//! Linux-only calls.
//!
//! Other Unix targets build with a stub backend that makes no system call: every run fails
//! with [`PforkError::Unsupported`] before creating or forking anything, so a program that
//! forks only on some platforms still compiles everywhere. `--cfg ptools_stub` selects that
//! backend on any target, which is how CI type-checks it on Linux. Non-Unix targets are
//! refused at compile time (by `ptools-sys`).
//!
//! # Design notes
//!
//! - The per-child [`ChildError`] and the run's [`PforkError`] are two types: a run's error
//!   must carry the successful results, so it is generic over `R`; a child's error is not.
//! - [`pfork`] requires `R: Serialize + DeserializeOwned` and `F: Fn(usize) -> R`, nothing
//!   more: no `Send`, `Sync` or `'static`, since a fork copies the whole address space.
//! - [`Pfork`] is an options value with `run` rather than a builder with `build()`: a run
//!   holds nothing between calls, and one `Pfork` can start many runs.
//! - `pfork_shm` passes `&mut ShmSet` (each child has its own copy of the handle) rather than
//!   `&mut [T]` slices: the set may hold several arrays of different types and shapes.
//! - Cost: a trivial child costs about a raw `fork`/`pipe`/`waitpid` loop's, plus the fixed
//!   work above; page faults are most of the rest (a child copies every page it writes and
//!   maps every page of code it runs, some microseconds each in a VM). So a child encodes
//!   small results on its stack and makes its few system calls through one libc entry
//!   point, the parent keeps small frames inline and its per-child state in memory that
//!   `fork` neither shares nor write-protects (`MADV_WIPEONFORK`), and it waits for a child
//!   that has sent its frame on the pidfd alone. See `benches/README.md`.

mod child;
mod error;
mod frame;
mod parent;
mod scratch;
mod shm;
mod sys;
pub mod test_support;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::error::{ChildError, FrameError, PforkError};
pub use crate::shm::pfork_shm;

/// Forks `n` children; child `i` (0-based) runs `f(i)`; returns the `n` results in index
/// order.
///
/// Uses the default options of [`Pfork::new`]: all `n` children alive at once, no timeout,
/// results of at most 1 GiB, single-threaded callers only, no nesting.
///
/// # Examples
///
/// ```
/// let ids = ptools_fork::pfork(3, |i| (i, std::process::id()))?;
/// assert_eq!(ids.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2]);
/// assert!(ids.iter().all(|r| r.1 != std::process::id()));
/// # Ok::<(), ptools_fork::PforkError<(usize, u32)>>(())
/// ```
///
/// # Errors
///
/// [`PforkError::Children`] with every child's outcome if any child failed;
/// [`PforkError::Threaded`] if the process has other threads; [`PforkError::Nested`] if
/// called in a pfork child; [`PforkError::Unsupported`] on a target without fork support
/// (see "Platform support"). Nothing is forked in the last three cases.
pub fn pfork<R, F>(n: usize, f: F) -> Result<Vec<R>, PforkError<R>>
where
    F: Fn(usize) -> R,
    R: Serialize + DeserializeOwned,
{
    all_ok(Pfork::new().run(n, f)?)
}

/// Options of a pfork run: how many children may be alive at once, a timeout, a cap on
/// result sizes, and the thread and nesting policies.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let outcomes = ptools_fork::Pfork::new()
///     .max_alive(2)
///     .timeout(Duration::from_secs(60))
///     .max_result_bytes(1 << 20)
///     .run(8, |i| vec![i as u8; i])?;
/// assert!(outcomes.iter().all(Result::is_ok));
/// # Ok::<(), ptools_fork::PforkError<Vec<u8>>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Pfork does nothing until `run` is called"]
pub struct Pfork {
    max_alive: Option<usize>,
    timeout: Option<Duration>,
    max_result_bytes: u64,
    allow_threads: bool,
    max_depth: usize,
    shm_prefix: Option<ptools_shm::Prefix>,
}

impl Default for Pfork {
    fn default() -> Self {
        Self::new()
    }
}

impl Pfork {
    /// The default of [`max_result_bytes`](Self::max_result_bytes): 1 GiB. Large enough for
    /// most results, and small enough that one child cannot make the parent hold more than
    /// that for it.
    pub const DEFAULT_MAX_RESULT_BYTES: u64 = 1 << 30;

    /// Default options: all children alive at once, no timeout, results of at most
    /// [`DEFAULT_MAX_RESULT_BYTES`](Self::DEFAULT_MAX_RESULT_BYTES) (1 GiB), refuse a
    /// multi-threaded process, no pfork inside a pfork child.
    pub fn new() -> Self {
        Self {
            max_alive: None,
            timeout: None,
            max_result_bytes: Self::DEFAULT_MAX_RESULT_BYTES,
            allow_threads: false,
            max_depth: 1,
            shm_prefix: None,
        }
    }

    /// At most `k` children alive at once (default: all `n`). When one ends, the next is
    /// forked. `0` is refused by [`run`](Self::run) with [`PforkError::InvalidArgument`].
    pub fn max_alive(mut self, k: usize) -> Self {
        self.max_alive = Some(k);
        self
    }

    /// Children still running `d` after the run started are killed (`SIGKILL`), reaped and
    /// reported as [`ChildError::TimedOut`]; children not started by then as
    /// [`ChildError::Cancelled`]. Default: no timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Cap on the size of one encoded result, in bytes (inclusive; default
    /// [`DEFAULT_MAX_RESULT_BYTES`](Self::DEFAULT_MAX_RESULT_BYTES), 1 GiB). A child whose
    /// result is larger sends nothing of it and is reported as
    /// [`ChildError::ResultTooLarge`]. `u64::MAX` lifts the cap; the parent still holds only
    /// what a child really sent, never what it announced.
    pub fn max_result_bytes(mut self, bytes: u64) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// Allows nesting: a run is refused in a process at nesting depth `max_depth` or deeper
    /// (the original process is at depth 0, a pfork child at depth 1). Default: 1, no pfork
    /// inside a pfork child. See the crate docs, "Nesting".
    pub fn max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Allows forking a process that has other threads.
    ///
    /// # Safety
    ///
    /// When the run forks, no other thread may hold a lock (or be in the middle of updating
    /// state) that a child will need: the child has only the forking thread, and a lock held
    /// by another thread is never released in it. This covers locks taken by `f` and by the
    /// libraries it calls, the stdout lock (the child flushes stdout before leaving), the
    /// panic-hook lock, and the allocator where it is not fork-safe (glibc's is). See the
    /// crate docs, "Threads".
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Forks `n` children; child `i` runs `f(i)`; returns one outcome per child, in index
    /// order, each the child's result or why it has none.
    ///
    /// # Errors
    ///
    /// Errors that stop the run before any fork: [`PforkError::InvalidArgument`] for
    /// `max_alive(0)`, [`PforkError::Unsupported`], [`PforkError::Threaded`],
    /// [`PforkError::Nested`]. Failures of single
    /// children are in the outcomes, never here.
    pub fn run<R, F>(&self, n: usize, f: F) -> Result<Vec<Result<R, ChildError>>, PforkError<R>>
    where
        F: Fn(usize) -> R,
        R: Serialize + DeserializeOwned,
    {
        self.check()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(parent::run(self, n, &f))
    }

    /// Checks the options and the thread and nesting policies.
    fn check<R>(&self) -> Result<(), PforkError<R>> {
        if self.max_alive == Some(0) {
            return Err(PforkError::InvalidArgument("max_alive must be at least 1"));
        }
        // First of the checks that ask the system: a target that cannot fork cannot count
        // threads either, and must not be told it has too many.
        sys::can_fork().map_err(PforkError::Unsupported)?;
        let depth = child::depth();
        if depth >= self.max_depth {
            return Err(PforkError::Nested {
                depth,
                max_depth: self.max_depth,
            });
        }
        if !self.allow_threads {
            match sys::thread_count() {
                Some(1) => {}
                threads => return Err(PforkError::Threaded { threads }),
            }
        }
        Ok(())
    }
}

/// Not part of the API: hooks for this crate's own tests, which may change or go at any time.
#[doc(hidden)]
pub mod __test_hooks {
    /// In a pfork child, writes `bytes` as they are to the child's result pipe, as a child
    /// that forges its frame would. The caller then leaves the process itself (`_exit`).
    ///
    /// # Errors
    ///
    /// `EBADF` outside a pfork child; the write's error otherwise.
    pub fn write_raw_to_result_pipe(bytes: &[u8]) -> std::io::Result<()> {
        crate::child::write_raw(bytes)
    }
}

/// All results, or the outcomes as an error if any child failed.
fn all_ok<R>(outcomes: Vec<Result<R, ChildError>>) -> Result<Vec<R>, PforkError<R>> {
    if outcomes.iter().all(Result::is_ok) {
        Ok(outcomes.into_iter().filter_map(Result::ok).collect())
    } else {
        Err(PforkError::Children(outcomes))
    }
}
