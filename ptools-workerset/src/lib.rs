//! Worker processes for ptools: the same executable re-started in worker mode, remote calls
//! (`remotecall`, `remotecall_fetch`, `remotecall_wait`), `pmap`, and [`WorkerSet`], a pool
//! of workers used round-robin or first-free. After Julia's `Distributed` and PTools.jl.
//!
//! ```
//! ptools_workerset::enable_test_support!(); // in `main`: `ptools_workerset::init();`
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), ptools_workerset::Error> {
//! let cluster = ptools_workerset::Cluster::new();
//! let ids = cluster.addprocs(2)?;
//! assert_eq!(cluster.remotecall_fetch(ids[0], square, 7)?, 49);
//! let r = cluster.remotecall(ids[1], |(a, b): (u64, u64)| a + b, (2, 3))?;
//! assert_eq!(r.fetch()?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! # Worker mode
//!
//! A worker is this same executable, started again with one end of two Unix socket pairs
//! inherited and `PTOOLS_WORKER_FD` in its environment. It becomes a worker instead of
//! running the program when it reaches:
//!
//! - [`init()`], the first line of `main`, or
//! - [`enable_test_support!()`], one line at the top of a test file (or `main.rs`): it puts
//!   a constructor in `.init_array`, so worker mode starts before the test harness (or
//!   `main`) runs at all. This is what makes plain `cargo test` work.
//!
//! In worker mode the call never returns: the process serves calls and exits when told to,
//! or when the master is gone. Everything `main` does before [`init()`] runs in every
//! worker too (a worker is the whole program started again), so make it the first line. A program that forgot both lines cannot become a runaway
//! master: `addprocs` in a process with `PTOOLS_WORKER_FD` set (meaning it was started as a
//! worker) fails with [`Error::InvalidArgument`] and says why on stderr, and its master
//! gives up with [`Error::WorkerStartFailed`] when no handshake comes within the start
//! timeout. Inside a worker, `addprocs` is refused too.
//!
//! # Remote functions
//!
//! A remote function is a `fn(A) -> R` pointer: a `fn` item or a closure that captures
//! nothing, with `A` and `R` serde types (several arguments: a tuple). It travels as its
//! offset from an anchor function of this crate, together with the offset of a trampoline
//! monomorphised for `A` and `R` that decodes the argument (ptools' own serde format, in
//! which vectors of numbers travel as one copy), calls, and encodes the result. This is
//! only sound when master and worker run the very same executable image,
//! which the handshake checks: the worker reports the identity of `/proc/self/exe` (device,
//! inode, size, modification time) and the anchor's offset within its image, and the master
//! compares with its own ([`Error::BuildMismatch`] otherwise). Workers are started from
//! `/proc/self/exe`, which names the master's own file even if the path was rebuilt since.
//! Functions must live in the executable itself (not a `dlopen`ed library).
//!
//! # Faults
//!
//! - A remote panic is [`Error::RemotePanic`] with message and location; the worker serves
//!   the next call.
//! - A worker that dies (killed, abort, segfault, exit) fails every call pending on it, and
//!   every later call to its id, with [`Error::WorkerDied`] carrying the exit code or signal;
//!   it leaves `procs()` and every [`WorkerSet`]. Other workers are not affected.
//! - A worker's death is seen through its pidfd, not only through its sockets: a worker
//!   that forked a helper (which keeps its sockets open) and is then killed is reported
//!   [`Error::WorkerDied`] within milliseconds all the same (the `death_latency` bench
//!   measures it). Each worker is killed at most once and reaped exactly once, through its
//!   pidfd, never by a pid that may have been reused.
//! - Arguments and results that fail to encode or decode give [`Error::Encode`] /
//!   [`Error::Decode`] with the message of the serde impl that failed; the link stays
//!   usable. One over the cluster's frame cap
//!   ([`ClusterBuilder::max_frame_bytes`], 1 GiB by default) gives
//!   [`Error::ArgumentTooLarge`] (nothing sent) or [`Error::ResultTooLarge`] (raised by the
//!   worker before it sends); the link stays usable.
//! - No byte from a worker is trusted: a frame's length is checked against the cap before
//!   any buffer grows, and buffers grow only with the bytes that arrived. A worker that
//!   sends something that is not a frame (a bad length, an unknown kind, a reply to no
//!   call) is killed and reaped, and every call on it fails with [`Error::Protocol`] naming
//!   the cause. During start-up every read honours the start timeout and the handshake
//!   frame is capped at 4 KiB, so a program that writes junk or half a frame and goes silent
//!   fails `addprocs` in time with [`Error::WorkerStartFailed`]. A worker started by hand
//!   with descriptors that are not its sockets says so on one line and exits with code 2.
//! - Workers never outlive the master: a worker exits when its control link reaches end of
//!   stream (the master is gone), and `PR_SET_PDEATHSIG(SIGKILL)` kills one stuck in a call.
//!   Workers are forked from one long-lived thread of this crate, because the death signal
//!   follows the *thread* that forked (prctl(2)).
//! - Workers inherit only their two sockets, their shared-memory regions and ring (memfds),
//!   and stdio (stdin is `/dev/null`): every other
//!   descriptor is marked close-on-exec in the child before exec (`close_range`).
//! - `SIGINT` (Ctrl-C) or `SIGTERM` to the master stops its workers before it dies by that
//!   signal: `SIGTERM` to each (by pidfd), up to [`signals::WORKER_GRACE_MS`] to exit,
//!   then `SIGKILL`; segments it created are unlinked too (see ptools-shm), and a second
//!   signal ends it at once. The handler is installed at the first worker started (or
//!   segment created), only where the disposition is still `SIG_DFL`; opt out with
//!   `PTOOLS_NO_SIGNAL_HANDLERS=1` or [`signals::disable`]. Exec resets handlers, so a
//!   worker has ptools' handler only once it creates a segment; then a `SIGINT` or
//!   `SIGTERM` to the worker (Ctrl-C reaches the whole process group, the master sends
//!   `SIGTERM`) unlinks that worker's segments before it dies. A worker that created none
//!   keeps the default action and just dies.
//!
//! # Wire and handshake
//!
//! Each worker has two Unix socket pairs to its master, both inherited at exec: a *data*
//! link for calls and replies, and a *control* link for ping and shutdown. Two links
//! instead of one let the worker's call thread read calls straight from its socket (no
//! hand-off between threads per call) while a second thread answers control messages
//! even when a call runs for hours. Frames are a little-endian `u32` length and a body
//! whose first byte is the kind:
//!
//! - worker to master, first: `HELLO` (magic, protocol version, pid, build identity);
//!   the master answers `WELCOME(id)` or `REJECT` (the worker then exits with code 3);
//! - master to worker: `CALL(function offset, trampoline offset, acked, encoded argument)`;
//! - worker to master: one reply per call, in call order: `OK(result)`,
//!   `PANIC(message, location)`, `DECODE(message)` (argument), `ENCODE(message)` (result)
//!   or `TOO_LARGE(length, cap)` (a result over the frame cap, not sent).
//!
//! A local worker also gets two shared-memory regions at exec (memfds sealed against
//! shrinking: never in `/dev/shm`, gone with the last process holding them). An argument
//! or result of 64 KiB or more goes through them when they are free (`CALL_ZC`,
//! `REPLY_ZC`: the frame carries only its offset and length), so a large payload costs
//! user-space copies into mappings kept from call to call instead of the socket's kernel
//! copies into fresh buffers. Both sides encode straight into the region and decode
//! straight from it; the master checks every reference a worker sends, and decodes a
//! result without trusting the region's bytes to stay put: each is copied out once and
//! checked on the copy (`src/cluster/PROTOCOL.md`, "Large payloads").
//!
//! A `Vec<T>` must own memory of its own process, so one echoed through a worker is
//! copied four times: into the argument region, into the worker's `Vec`, into the result
//! region, into the caller's `Vec`. A [`SharedSlice<T>`](SharedSlice) (numbers only, used
//! in a remote function's argument or result in place of a `Vec<T>`) is read where it
//! lies instead: the worker reads its argument in the master's region, the master reads
//! the result in the worker's, and the round trip copies once each way (`BENCHMARKS.md`
//! holds a 16 MiB one against two `memcpy`s). A view the master holds keeps its worker's result
//! region (later large results take the socket meanwhile) and stays readable whatever
//! happens to the worker; a view a worker keeps past its call is given a private copy of
//! its pages before the reply lets the master write the region again. This is the one
//! place the master reads bytes a worker can write without copying them: the view's length
//! and place are the master's own checked copy, any bits are a valid number, and the
//! bytes stay put as long as the worker keeps the protocol, which only `unsafe` code gone
//! wrong in the master's own program could break (the trust level of a shared array of
//! ptools-shm; see [`SharedSlice`]).
//!
//! After the handshake a local worker's calls and replies travel through a shared-memory
//! ring instead of its socket (one more memfd, sealed at its size): the same frames, but a
//! side that waits spins briefly before it sleeps on a futex, so a short call is answered
//! without a system call or a wake-up on either side, and an idle worker uses no CPU
//! ([`ClusterBuilder::shared_memory_ring`]; `src/cluster/PROTOCOL.md`, "The ring").
//!
//! Replies need no call id: a worker runs calls one at a time in arrival order, so the
//! n-th reply answers the n-th call, and the master keeps a FIFO of completion slots per
//! worker. The transport is the private `Link` trait (send, receive, wait, shut down); a
//! TCP link for workers on other hosts implements the same four methods.
//!
//! # Performance
//!
//! - `remotecall_fetch` to a local worker costs no system call while both sides are busy
//!   (the ring); over a socket (TCP, or the ring turned off) one `send` and one `recv` on
//!   each side. A caller waiting
//!   for its reply reads the worker's link itself (the per-worker reader thread steps
//!   aside while a caller "drives"), so the reply wakes the caller directly, as in a plain
//!   socket ping-pong, instead of waking a reader thread that wakes the caller. The
//!   reader thread stays parked between such calls; it is woken only when something is
//!   left for it to read (who reads and writes when: `src/cluster/PROTOCOL.md`).
//! - A read side never writes: a call made by a completion hook on the thread reading
//!   replies (first-free `WorkerSet` handing a freed worker to the next call) is written
//!   by the link's sender thread, so large calls and large replies in flight at once
//!   cannot block each other.
//! - A worker that finds several calls already buffered answers them with one write; a
//!   flusher thread writes any reply held back this way within 200 µs, so a reply never
//!   waits behind a long call.
//! - `pmap` sends items in batches sized to about 2 ms of work (measured as it goes), so
//!   a million trivial items cost a few hundred round trips, not a million.
//!
//! `benches/README.md` lists the benchmarks and the targets they are held to.
//!
//! # Worker status and deaths
//!
//! [`Cluster::worker_status`] says, without I/O, whether a worker is alive, gone (with the
//! error its calls failed with, which says how it ended) or unknown.
//! [`Cluster::on_worker_exit`] runs a hook once per worker that dies or is removed, after
//! its pending calls have failed; server tasks and queues use these instead of probing.
//!
//! # Caveats
//!
//! Dropping the last handle on a [`Cluster`] shuts its workers down (shutdown request, then
//! `SIGKILL` after the grace period) and reaps them. The default cluster used by the free
//! functions lives until the process exits; an `atexit` handler stops its workers then.
//! Remote calls go from the master to workers only: inside a worker, `remotecall` and
//! friends return [`Error::InvalidArgument`] (Julia lets workers call each other; that needs
//! links between workers, a later step).
//!
//! # Platform support
//!
//! Linux (5.3 or later: a worker is watched through its pidfd, and `PR_SET_PDEATHSIG`
//! makes it die with its master). macOS has neither, so worker processes are Linux only for
//! now. Every other target, macOS included, builds with a stub backend that makes no system
//! call: [`Cluster::addprocs`] (and [`addprocs`]) returns [`Error::Io`] of kind
//! `ErrorKind::Unsupported` ([`Error::is_unsupported`]) before starting anything, calls
//! on a cluster without workers fail as they do on Linux ([`Error::NoWorkers`],
//! [`Error::UnknownWorker`]), and the master's calls to itself (worker 1) still run.
//! `--cfg ptools_stub` selects that backend on any target, which is how CI type-checks it on
//! Linux. Non-Unix targets are refused at compile time (by `ptools-sys`).

mod cluster;
mod codec;
mod deaths;
mod error;
mod func;
mod net;
mod pmap;
mod remote_ref;
mod sys;
mod wire;
mod worker;
mod workerset;

/// Hooks for the crate's own fault tests; not part of the API.
#[doc(hidden)]
pub mod __test_hooks {
    /// In a worker: writes `bytes` on the data link as they are, past the framing, as a
    /// worker with corrupt memory might. Fails with `NotConnected` outside a worker.
    ///
    /// # Errors
    ///
    /// The write's own error.
    pub fn write_raw_to_data_link(bytes: &[u8]) -> std::io::Result<()> {
        crate::worker::write_raw_to_data_link(bytes)
    }

    /// In a worker whose data link is a shared-memory ring: publishes `pos` as its write
    /// position (`write`) or its read position, as a worker with corrupt memory might.
    /// False without a ring.
    pub fn forge_ring_position(write: bool, pos: u64) -> bool {
        crate::worker::forge_ring_position(write, pos)
    }
}

/// Cleanup on `SIGINT` and `SIGTERM`: workers this process started are stopped, segments
/// it created are unlinked, then it dies by the same signal. Shared with ptools-shm (the
/// same items as `ptools_shm::signals`); the whole story, limits and opt-outs are on
/// [`ptools_sys::signals`].
pub mod signals {
    pub use ptools_sys::signals::{
        NO_HANDLERS_ENV, PROCESS_SLOTS, SEGMENT_SLOTS, WORKER_GRACE_MS, disable, is_active,
    };
}

use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use cluster::{Cluster, ClusterBuilder, WorkerHost, WorkerStatus};
pub use codec::{Number, SharedSlice};
pub use error::{Error, Result, Termination};
pub use func::CodeOffset;
pub use net::launch::{
    CommandLauncher, ENV_SECRET, ENV_SECRET_FILE, HostSpec, LaunchJob, Launched, Launcher,
    MpiFlavor, Mpirun, SecretVia, Srun, Ssh, shell_quote,
};
pub use remote_ref::RemoteRef;
pub use workerset::{Mode, WorkerSet};

/// Enters worker mode when this process was started as a worker, and never returns then;
/// returns at once otherwise. Call it first in `main`, before any thread is started.
///
/// ```
/// // The first line of `main`:
/// ptools_workerset::init();
/// // ... the program, as the master
/// ```
pub fn init() {
    worker::enter_if_worker();
}

/// Puts worker-mode entry ([`init`]) in a constructor that runs before `main`: one line at
/// the top of a test file makes `cargo test` binaries usable as workers.
///
/// ```
/// ptools_workerset::enable_test_support!();
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! enable_test_support {
    () => {
        #[used]
        #[cfg_attr(target_os = "linux", unsafe(link_section = ".init_array"))]
        static __PTOOLS_WORKERSET_INIT: extern "C" fn() = {
            extern "C" fn __ptools_workerset_init() {
                $crate::init();
            }
            __ptools_workerset_init
        };
    };
}

/// The process-wide cluster the free functions act on.
pub fn default_cluster() -> &'static Cluster {
    static DEFAULT: OnceLock<Cluster> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        extern "C" fn stop_default() {
            if let Some(c) = DEFAULT.get() {
                let ids = c.workers();
                if ids != [1] {
                    let _ = c.rmprocs(&ids);
                }
            }
        }
        // Failure only means the workers exit on their own when they see the master gone.
        let _ = crate::sys::at_exit(stop_default);
        Cluster::new()
    })
}

/// This process's id: 1 in the master, 2, 3, ... in a worker.
pub fn myid() -> usize {
    worker::myid()
}

/// Starts `n` workers in the default cluster; see [`Cluster::addprocs`].
///
/// # Errors
///
/// As [`Cluster::addprocs`].
pub fn addprocs(n: usize) -> Result<Vec<usize>> {
    default_cluster().addprocs(n)
}

/// Stops workers of the default cluster; see [`Cluster::rmprocs`].
///
/// # Errors
///
/// As [`Cluster::rmprocs`].
pub fn rmprocs(ids: &[usize]) -> Result<()> {
    default_cluster().rmprocs(ids)
}

/// Master and worker ids of the default cluster; see [`Cluster::procs`].
pub fn procs() -> Vec<usize> {
    default_cluster().procs()
}

/// Worker ids of the default cluster (`[1]` without workers); see [`Cluster::workers`].
pub fn workers() -> Vec<usize> {
    default_cluster().workers()
}

/// Number of processes in the default cluster; see [`Cluster::nprocs`].
pub fn nprocs() -> usize {
    default_cluster().nprocs()
}

/// Number of workers in the default cluster (1 without workers); see [`Cluster::nworkers`].
pub fn nworkers() -> usize {
    default_cluster().nworkers()
}

/// [`Cluster::remotecall`] on the default cluster.
///
/// # Errors
///
/// As [`Cluster::remotecall`].
pub fn remotecall<A, R>(id: usize, f: fn(A) -> R, arg: A) -> Result<RemoteRef<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    default_cluster().remotecall(id, f, arg)
}

/// [`Cluster::remotecall_fetch`] on the default cluster.
///
/// # Errors
///
/// As [`Cluster::remotecall_fetch`].
pub fn remotecall_fetch<A, R>(id: usize, f: fn(A) -> R, arg: A) -> Result<R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    default_cluster().remotecall_fetch(id, f, arg)
}

/// [`Cluster::remotecall_wait`] on the default cluster.
///
/// # Errors
///
/// As [`Cluster::remotecall_wait`].
pub fn remotecall_wait<A, R>(id: usize, f: fn(A) -> R, arg: A) -> Result<()>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    default_cluster().remotecall_wait(id, f, arg)
}

/// [`Cluster::pmap`] on the default cluster: `f` over `items` on all workers.
///
/// # Errors
///
/// As [`Cluster::pmap`].
pub fn pmap<A, R, I>(f: fn(A) -> R, items: I) -> Result<Vec<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: IntoIterator<Item = A>,
{
    default_cluster().pmap(f, items)
}
