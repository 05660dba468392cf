//! The master side: the public [`Cluster`] API and its builder.
//!
//! The parts, by concern (who reads and writes the links when, and the invariants:
//! `PROTOCOL.md` beside this file, included below):
//!
//! - `spawn`: starting worker processes and the handshake;
//! - `link`: one worker's link, [`link::Remote`]: sending calls, reading replies,
//!   completing slots, the reader thread and the hand-off of the read side to callers;
//! - `shutdown`: stopping workers (`rmprocs`, dropping the cluster).
//!
#![doc = include_str!("PROTOCOL.md")]

mod link;
pub(crate) use link::{InRegion, on_read_side};
mod remote;
mod shutdown;
mod spawn;

pub(crate) use spawn::on_spawner;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::func::{FnRef, Status, decode_panic};
use crate::remote_ref::{DriveToken, RemoteRef, Slot};
use crate::wire;

use link::Remote;
use shutdown::stop_all;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

/// Options for a [`Cluster`].
#[derive(Debug, Clone)]
#[must_use = "a ClusterBuilder does nothing until `build` is called"]
pub struct ClusterBuilder {
    program: Option<PathBuf>,
    args: Vec<OsString>,
    start_timeout: Duration,
    grace: Duration,
    max_frame: usize,
    bind: std::net::SocketAddr,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    remote_program: Option<PathBuf>,
    ring: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            program: None,
            args: Vec::new(),
            start_timeout: Duration::from_secs(20),
            grace: Duration::from_secs(2),
            max_frame: wire::DEFAULT_MAX_FRAME,
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            remote_program: None,
            ring: true,
        }
    }
}

impl ClusterBuilder {
    /// The executable to start as a worker. The default, `/proc/self/exe`, is the only
    /// choice that can pass the handshake; another file is rejected with
    /// [`Error::BuildMismatch`] (this option exists to test exactly that).
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Arguments given to each worker process (none by default; worker mode ignores them).
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How long a new worker has to complete the handshake (default 20 s).
    pub fn start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = t;
        self
    }

    /// How long `rmprocs` and drop wait for a graceful exit before `SIGKILL` (default 2 s).
    pub fn grace_period(mut self, t: Duration) -> Self {
        self.grace = t;
        self
    }

    /// The largest argument or result, in encoded bytes, that one call may carry (default
    /// 1 GiB, at most `u32::MAX`). An argument over it fails with
    /// [`Error::ArgumentTooLarge`] before anything is sent; a result over it fails with
    /// [`Error::ResultTooLarge`], raised by the worker before it sends; the link stays
    /// usable either way. A frame over it from a worker is a protocol error
    /// ([`Error::Protocol`]). Server tasks and queues use the cap of their cluster.
    ///
    /// The memory a link holds grows with the bytes that actually arrive, never with a
    /// length the peer announces.
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame = n;
        self
    }

    /// Where the cluster listens for workers started by a
    /// [`Launcher`](crate::Launcher) (default `127.0.0.1:0`: this host only, any free
    /// port). Workers on other hosts need an address they can reach: bind one of this
    /// host's addresses, or `0.0.0.0:PORT` (workers are then told this host's name). Every
    /// connection must prove the job's secret before anything is read from it.
    pub fn bind(mut self, addr: std::net::SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// How often the master pings each worker on a TCP link, and how long it waits for
    /// the answer before declaring it lost ([`Termination::Unresponsive`]); defaults 1 s
    /// and 10 s. A lost worker's calls fail within `timeout + interval` of its last
    /// answer. A worker that hears nothing from its master for `timeout` exits. The
    /// interval must be below the timeout (checked by
    /// [`addprocs_with`](Cluster::addprocs_with)). Local workers need none: their death
    /// is seen through their process.
    ///
    /// [`Termination::Unresponsive`]: crate::Termination::Unresponsive
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// The path of this program on the hosts a [`Launcher`](crate::Launcher) starts
    /// workers on (default: its path here). The file there must be the same build (by
    /// content); another build is refused with [`Error::BuildMismatch`].
    pub fn remote_program(mut self, path: impl Into<PathBuf>) -> Self {
        self.remote_program = Some(path.into());
        self
    }

    /// Whether local workers talk to the master through a shared-memory ring (the
    /// default) or through their socket alone.
    ///
    /// The ring carries the same frames as the socket, without a system call on either
    /// side while both are busy: a waiting side spins for a few tens of microseconds
    /// before it sleeps on a futex, so a short call is answered without waking anyone,
    /// and an idle worker uses no CPU. On a machine with one CPU for this process, nothing
    /// spins. Turn it off when other work on the machine needs every cycle of the
    /// spinning (many more busy processes than cores), or to compare the two.
    /// Workers started by a [`Launcher`](crate::Launcher) always use TCP.
    pub fn shared_memory_ring(mut self, on: bool) -> Self {
        self.ring = on;
        self
    }

    /// The cluster, with no worker yet.
    pub fn build(self) -> Cluster {
        Cluster {
            inner: Arc::new(Inner::new(self)),
        }
    }
}

/// A master and its workers. Cloning gives another handle on the same cluster; the workers
/// are shut down when the last handle is dropped.
///
/// The free functions ([`addprocs`](crate::addprocs), [`remotecall`](crate::remotecall),
/// ...) act on a process-wide default cluster.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("procs", &self.procs())
            .finish()
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

pub(crate) struct Inner {
    opts: ClusterBuilder,
    next_id: AtomicUsize,
    workers: RwLock<BTreeMap<usize, Arc<Remote>>>,
    /// Workers that died or were removed, and how they ended.
    gone: Mutex<HashMap<usize, Error>>,
    local: Mutex<Option<mpsc::Sender<LocalJob>>>,
    /// Called once for each worker that dies or is removed (see `on_worker_exit`).
    exit_hooks: RwLock<Vec<ExitHook>>,
    /// The listener and secret for workers that connect over TCP, once one was started.
    net: Mutex<Option<Arc<crate::net::Net>>>,
    /// The host each worker reported when it joined (TCP workers).
    hosts: Mutex<HashMap<usize, WorkerHost>>,
    /// Launcher processes that brought several workers and could not be tied to one
    /// group of them: stopped and reaped with the cluster.
    launchers: Mutex<Vec<Arc<crate::sys::Process>>>,
}

/// A worker's host, as the worker reported it when it joined.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerHost {
    /// Its host name (`gethostname`).
    pub hostname: String,
    /// Its host's addresses: the one its connection came from as the master saw it, the
    /// one it reached the master from, then its interfaces' (loopback included).
    pub addresses: Vec<std::net::IpAddr>,
}

impl WorkerHost {
    /// This process's host: its name (`gethostname`) and its interfaces' addresses
    /// (`getifaddrs`, loopback included), sorted. What a worker reports when it joins,
    /// and what ptools-queue asks a local worker for.
    pub fn this_host() -> WorkerHost {
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut addresses: Vec<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let a = i.address?;
                a.as_sockaddr_in()
                    .map(|s| std::net::IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())))
            })
            .collect();
        addresses.sort();
        addresses.dedup();
        WorkerHost {
            hostname,
            addresses,
        }
    }
}

type ExitHook = Arc<dyn Fn(usize, &Error) + Send + Sync>;

/// What a [`Cluster`] knows of a worker, without asking it: see
/// [`Cluster::worker_status`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerStatus {
    /// The master (id 1), or a worker whose death has not been noticed.
    Alive,
    /// The worker died or was removed; the error is what its calls failed with:
    /// [`Error::WorkerDied`] (with how it ended) or [`Error::Protocol`].
    Gone(Error),
    /// No worker of this cluster ever had this id.
    Unknown,
}

/// How [`Inner::send`] sends a call.
#[derive(Clone, Copy)]
enum SendHow {
    /// Queued; the reader thread reads the reply unless a waiter drives.
    Queue,
    /// The caller reads the reply next, on its own thread.
    Drive,
    /// The caller reads the reply later, holding a [`DriveToken`] when it could be counted.
    Counted,
}

struct LocalJob {
    f: FnRef,
    arg: Vec<u8>,
    slot: Arc<Slot>,
}

impl Inner {
    fn new(opts: ClusterBuilder) -> Inner {
        Inner {
            opts,
            next_id: AtomicUsize::new(2),
            workers: RwLock::new(BTreeMap::new()),
            gone: Mutex::new(HashMap::new()),
            local: Mutex::new(None),
            exit_hooks: RwLock::new(Vec::new()),
            net: Mutex::new(None),
            hosts: Mutex::new(HashMap::new()),
            launchers: Mutex::new(Vec::new()),
        }
    }

    fn get(&self, id: usize) -> Option<Arc<Remote>> {
        self.workers.read().get(&id).cloned()
    }

    fn died(&self, id: usize, why: Error) {
        // Recorded as gone before it leaves the map, so a lookup in between never calls a
        // worker that existed "unknown".
        lock(&self.gone).entry(id).or_insert(why);
        self.workers.write().remove(&id);
    }

    /// Sends a call to `id`, the argument written by `encode`; the slot gets the outcome.
    pub(crate) fn submit(
        &self,
        id: usize,
        f: FnRef,
        encode: &mut crate::codec::EncodeArg<'_>,
        slot: Arc<Slot>,
    ) -> Result<()> {
        self.send(id, f, encode, slot, SendHow::Queue).map(drop)
    }

    /// [`submit`](Self::submit) for a caller that waits for the call next: it reads the
    /// replies on its own thread until `slot` is complete, and the worker's reader thread
    /// is not woken (see `Remote::call_and_drive`, which also says when it falls back to a
    /// plain submit). Calls to the master itself are plain submits.
    pub(crate) fn call_and_drive(
        &self,
        id: usize,
        f: FnRef,
        encode: &mut crate::codec::EncodeArg<'_>,
        slot: Arc<Slot>,
    ) -> Result<()> {
        self.send(id, f, encode, slot, SendHow::Drive).map(drop)
    }

    /// [`submit`](Self::submit) for a caller that reads the reply itself later (`pmap`
    /// reading its batches): when the write cannot block (see
    /// `Remote::submit_to_drive`), the caller is counted as a driver of the link before
    /// the call is queued, so the link's parked reader thread is not woken for it, and
    /// gets the token of that count; `None` otherwise (the reader thread reads the reply
    /// unless the caller drives it).
    pub(crate) fn submit_driven(
        &self,
        id: usize,
        f: FnRef,
        encode: &mut crate::codec::EncodeArg<'_>,
        slot: Arc<Slot>,
    ) -> Result<Option<DriveToken>> {
        self.send(id, f, encode, slot, SendHow::Counted)
    }

    fn send(
        &self,
        id: usize,
        f: FnRef,
        encode: &mut crate::codec::EncodeArg<'_>,
        slot: Arc<Slot>,
        how: SendHow,
    ) -> Result<Option<DriveToken>> {
        if crate::worker::myid() != 1 {
            // A worker has no links to other processes yet (Julia allows it; a later step).
            return Err(Error::InvalidArgument(
                "remote calls from a worker are not supported yet".into(),
            ));
        }
        if id == 1 {
            let mut out = crate::codec::Out::new(Vec::new());
            encode(&mut out).map_err(|e| Error::Encode(format!("argument: {e}")))?;
            let arg = out.finish().0;
            let tx = {
                let mut g = lock(&self.local);
                g.get_or_insert_with(start_local).clone()
            };
            slot.set_worker(1);
            if let Err(mpsc::SendError(job)) = tx.send(LocalJob { f, arg, slot }) {
                job.slot.complete(Err(Error::UnknownWorker(1)));
            }
            return Ok(None);
        }
        match self.get(id) {
            Some(w) => {
                slot.set_driver(id, w.clone());
                match how {
                    SendHow::Queue => w.submit(f, encode, slot).map(|()| None),
                    SendHow::Drive => w.call_and_drive(f, encode, &slot).map(|()| None),
                    SendHow::Counted => Ok(w
                        .submit_to_drive(f, encode, slot, true)?
                        .then(|| DriveToken::new(w))),
                }
            }
            None => Err(self.gone_error(id)),
        }
    }

    pub(crate) fn gone_error(&self, id: usize) -> Error {
        match lock(&self.gone).get(&id) {
            Some(e) => e.clone(),
            None => Error::UnknownWorker(id),
        }
    }

    /// Runs the exit hooks for worker `id` (its reader thread, once, after its calls
    /// have failed).
    pub(super) fn exited(&self, id: usize, why: &Error) {
        let hooks: Vec<ExitHook> = self.exit_hooks.read().clone();
        for h in hooks {
            h(id, why);
        }
    }

    fn status(&self, id: usize) -> WorkerStatus {
        if id == 1 {
            return WorkerStatus::Alive;
        }
        if let Some(w) = self.get(id) {
            return match &lock(&w.pending).dead {
                None => WorkerStatus::Alive,
                Some(e) => WorkerStatus::Gone(e.clone()),
            };
        }
        match lock(&self.gone).get(&id) {
            Some(e) => WorkerStatus::Gone(e.clone()),
            None => WorkerStatus::Unknown,
        }
    }

    /// True for the master and for a worker whose death has not been noticed.
    pub(crate) fn is_alive(&self, id: usize) -> bool {
        id == 1
            || self
                .get(id)
                .is_some_and(|w| lock(&w.pending).dead.is_none())
    }
}

fn start_local() -> mpsc::Sender<LocalJob> {
    let (tx, rx) = mpsc::channel::<LocalJob>();
    let spawned = std::thread::Builder::new()
        .name("ptools-local".into())
        .spawn(move || {
            let mut buf = Vec::new();
            for job in rx {
                buf.clear();
                let mut out = crate::codec::Out::new(buf);
                // SAFETY: the offsets were made by `FnRef::single`/`batch` in this process.
                let status = unsafe { job.f.invoke(&job.arg, None, &mut out) };
                buf = out.finish().0;
                job.slot.complete(outcome(1, status, &buf));
            }
        });
    if spawned.is_err() {
        // The receiver is gone with the closure, so sends fail and report the error.
        let (tx, _) = mpsc::channel();
        return tx;
    }
    tx
}

/// The outcome of a call from a reply's status and payload.
fn outcome(id: usize, status: Status, payload: &[u8]) -> Result<Vec<u8>> {
    let text = || String::from_utf8_lossy(payload).into_owned();
    match status {
        Status::Ok => {
            let mut v = wire::result_buf(payload.len());
            v.extend_from_slice(payload);
            Ok(v)
        }
        Status::Panic => {
            let (message, location) = decode_panic(payload);
            Err(Error::RemotePanic {
                id,
                message,
                location,
            })
        }
        Status::DecodeArg => Err(Error::Decode(format!("argument: {}", text()))),
        Status::EncodeResult => Err(Error::Encode(format!("result: {}", text()))),
        Status::TooLarge => {
            let len = wire::u64_at(payload, 0).unwrap_or(0);
            let cap = wire::u64_at(payload, 8).unwrap_or(0);
            Err(Error::ResultTooLarge { id, len, cap })
        }
    }
}

impl Cluster {
    /// A cluster with default options and no worker.
    pub fn new() -> Cluster {
        ClusterBuilder::default().build()
    }

    /// Options for a new cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts `n` workers and returns their ids.
    /// Shuts the given workers down: each finishes its running call, then exits; one still
    /// running after the grace period gets `SIGKILL`. Returns once all are reaped. Calls
    /// still queued on them fail with [`Error::WorkerDied`].
    ///
    /// # Errors
    ///
    /// [`Error::UnknownWorker`] (checked for every id before any is stopped) or
    /// [`Error::InvalidArgument`] for id 1.
    pub fn rmprocs(&self, ids: &[usize]) -> Result<()> {
        let mut list = Vec::with_capacity(ids.len());
        for &id in ids {
            if id == 1 {
                return Err(Error::InvalidArgument(
                    "cannot remove the master (id 1)".into(),
                ));
            }
            match self.inner.get(id) {
                Some(w) => list.push(w),
                None => return Err(self.inner.gone_error(id)),
            }
        }
        stop_all(&self.inner, list);
        Ok(())
    }

    /// The ids of the master and all live workers, ascending.
    pub fn procs(&self) -> Vec<usize> {
        let mut v = vec![1];
        v.extend(self.workers_ids());
        v
    }

    fn workers_ids(&self) -> Vec<usize> {
        self.inner.workers.read().keys().copied().collect()
    }

    /// The ids of the live workers, ascending; `[1]` when there is none (as in Julia).
    pub fn workers(&self) -> Vec<usize> {
        let w = self.workers_ids();
        if w.is_empty() { vec![1] } else { w }
    }

    /// The number of processes: master and live workers.
    pub fn nprocs(&self) -> usize {
        1 + self.inner.workers.read().len()
    }

    /// The number of live workers; 1 when there is none (as in Julia).
    pub fn nworkers(&self) -> usize {
        self.nprocs().saturating_sub(1).max(1)
    }

    /// The process id of worker `id`, if it is alive: on the worker's own host, which for a
    /// worker started by a [`Launcher`](crate::Launcher) may not be this one (see
    /// [`worker_host`](Self::worker_host)).
    pub fn pid(&self, id: usize) -> Option<i32> {
        if id == 1 {
            return Some(std::process::id() as i32);
        }
        self.inner.get(id).map(|w| w.proc.pid())
    }

    /// The address the cluster listens on for workers started by a
    /// [`Launcher`](crate::Launcher), once [`addprocs_with`](Self::addprocs_with) has
    /// started listening (see [`ClusterBuilder::bind`]).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        lock(&self.inner.net).as_ref().map(|n| n.listener.addr())
    }

    /// The host worker `id` reported when it joined over TCP (see
    /// [`addprocs_with`](Self::addprocs_with)); `None` for local workers (they run on this
    /// host) and for ids this cluster never had.
    pub fn worker_host(&self, id: usize) -> Option<WorkerHost> {
        lock(&self.inner.hosts).get(&id).cloned()
    }

    /// What the cluster knows of worker `id`, from its own records: no I/O, no waiting.
    ///
    /// A death is known once the worker's reader has noticed it (the end of its link or
    /// of its process); [`on_worker_exit`](Self::on_worker_exit) says when that happens.
    ///
    /// ```
    /// ptools_workerset::enable_test_support!();
    /// use ptools_workerset::{Cluster, Error, WorkerStatus};
    ///
    /// # fn main() -> Result<(), Error> {
    /// let c = Cluster::new();
    /// let id = c.addprocs(1)?[0];
    /// assert!(matches!(c.worker_status(id), WorkerStatus::Alive));
    /// c.rmprocs(&[id])?;
    /// assert!(matches!(
    ///     c.worker_status(id),
    ///     WorkerStatus::Gone(Error::WorkerDied { .. })
    /// ));
    /// assert!(matches!(c.worker_status(999), WorkerStatus::Unknown));
    /// # Ok(())
    /// # }
    /// ```
    pub fn worker_status(&self, id: usize) -> WorkerStatus {
        self.inner.status(id)
    }

    /// Calls `hook(id, why)` once for every worker of this cluster that dies or is
    /// removed from now on, after every call pending on it has failed with `why` (so
    /// [`worker_status`](Self::worker_status) already says [`WorkerStatus::Gone`]). A
    /// worker that was already gone when the hook was added is not reported: look at
    /// `worker_status` after adding it. Workers stopped by dropping the last handle on
    /// the cluster are not reported (nothing could observe them).
    ///
    /// The hook runs on the worker's reader thread: keep it short and do not wait on a
    /// call there (notify a thread instead). Hooks last as long as the cluster; one that
    /// holds a [`Weak`](std::sync::Weak) to its owner costs nothing once the owner is gone.
    ///
    /// ```
    /// ptools_workerset::enable_test_support!();
    /// use ptools_workerset::Cluster;
    /// use std::sync::mpsc;
    ///
    /// # fn main() -> Result<(), ptools_workerset::Error> {
    /// let c = Cluster::new();
    /// let (tx, rx) = mpsc::channel();
    /// c.on_worker_exit(move |id, why| {
    ///     let _ = tx.send((id, why.clone()));
    /// });
    /// let id = c.addprocs(1)?[0];
    /// c.rmprocs(&[id])?;
    /// let (gone, _why) = rx.recv().unwrap();
    /// assert_eq!(gone, id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_worker_exit(&self, hook: impl Fn(usize, &Error) + Send + Sync + 'static) {
        self.inner.exit_hooks.write().push(Arc::new(hook));
    }

    /// Sends a ping on worker `id`'s control link and waits for the answer; works while the
    /// worker is busy in a call. Returns the round-trip time.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownWorker`] / [`Error::WorkerDied`], [`Error::Timeout`].
    pub fn ping(&self, id: usize, timeout: Duration) -> Result<Duration> {
        let w = self
            .inner
            .get(id)
            .ok_or_else(|| self.inner.gone_error(id))?;
        match w.ping(timeout)? {
            Some(t) => Ok(t),
            None => Err(self.inner.gone_error(id)),
        }
    }

    /// Calls `f(arg)` on worker `id` (1: the master) and returns at once.
    ///
    /// `f` is a `fn` item or a closure that captures nothing. Calls to one worker run one at
    /// a time in the order they were made.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if `arg` fails to encode; [`Error::UnknownWorker`] or
    /// [`Error::WorkerDied`] if `id` is not a live worker; [`Error::ForeignFunction`] if `f`
    /// is not in the executable's own code. Everything that happens later is
    /// reported by the [`RemoteRef`].
    pub fn remotecall<A, R>(&self, id: usize, f: fn(A) -> R, arg: A) -> Result<RemoteRef<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let slot = Slot::new(id, None);
        self.inner.submit(
            id,
            FnRef::single(f)?,
            &mut |o| crate::codec::encode_out(&arg, o),
            slot.clone(),
        )?;
        Ok(RemoteRef::new(slot))
    }

    /// Calls `f(arg)` on worker `id` and waits for the result.
    ///
    /// # Errors
    ///
    /// Those of [`remotecall`](Self::remotecall) and [`RemoteRef::fetch`].
    pub fn remotecall_fetch<A, R>(&self, id: usize, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        if id != 1 && crate::worker::myid() == 1 {
            // The fast path: this thread reads its own reply; nobody else is woken.
            let w = self
                .inner
                .get(id)
                .ok_or_else(|| self.inner.gone_error(id))?;
            let slot = Slot::new(id, None);
            // The argument is dropped as soon as it is encoded, before the wait: a large
            // one's memory is then free for the result to be decoded into (the allocator
            // hands it back instead of new pages that fault in), and the peak is one
            // payload instead of two.
            let mut arg = Some(arg);
            w.call_and_drive(
                FnRef::single(f)?,
                &mut |o| match arg.take() {
                    Some(a) => crate::codec::encode_out(&a, o),
                    None => Err("the argument was already encoded".into()),
                },
                &slot,
            )?;
            return RemoteRef::new(slot).fetch();
        }
        self.remotecall(id, f, arg)?.fetch()
    }

    /// Calls `f(arg)` on worker `id` and waits until it has run; the result is dropped.
    ///
    /// # Errors
    ///
    /// Those of [`remotecall`](Self::remotecall) and [`RemoteRef::wait`].
    pub fn remotecall_wait<A, R>(&self, id: usize, f: fn(A) -> R, arg: A) -> Result<()>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.remotecall(id, f, arg)?.wait()
    }
}

impl Cluster {
    /// `f` over `items` on all workers (on the master when there is none), results in the
    /// order of `items`; see [`WorkerSet::pmap`](crate::WorkerSet::pmap).
    ///
    /// # Errors
    ///
    /// As [`WorkerSet::pmap`](crate::WorkerSet::pmap).
    pub fn pmap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        crate::WorkerSet::with_cluster(self, &self.workers(), crate::Mode::FirstFree)?
            .pmap(f, items)
    }

    /// [`pmap`](Self::pmap) with a progress bar on stderr (feature `progress`).
    ///
    /// # Errors
    ///
    /// As [`pmap`](Self::pmap).
    #[cfg(feature = "progress")]
    pub fn pmap_progress<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        crate::WorkerSet::with_cluster(self, &self.workers(), crate::Mode::FirstFree)?
            .pmap_progress(f, items)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}
