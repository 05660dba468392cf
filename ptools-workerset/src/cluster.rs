//! The master side: starting workers, sending calls, reading replies, noticing deaths.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result, Termination};
use crate::func::{FnRef, Status, decode_panic};
use crate::remote_ref::{Drive, RemoteRef, Slot};
use crate::sys;
use crate::wire::{self, FrameReader, Link, UnixLink};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here are short and leave no broken invariant when they unwind.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            program: None,
            args: Vec::new(),
            start_timeout: Duration::from_secs(20),
            grace: Duration::from_secs(2),
            max_frame: wire::DEFAULT_MAX_FRAME,
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
        }
    }

    fn get(&self, id: usize) -> Option<Arc<Remote>> {
        self.workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn died(&self, id: usize, why: Error) {
        // Recorded as gone before it leaves the map, so a lookup in between never calls a
        // worker that existed "unknown".
        lock(&self.gone).entry(id).or_insert(why);
        self.workers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Sends a call to `id`, the argument written by `encode`; the slot gets the outcome.
    pub(crate) fn submit(
        &self,
        id: usize,
        f: FnRef,
        encode: &mut dyn FnMut(Vec<u8>) -> std::result::Result<Vec<u8>, String>,
        slot: Arc<Slot>,
    ) -> Result<()> {
        if crate::worker::myid() != 1 {
            // A worker has no links to other processes yet (Julia allows it; a later step).
            return Err(Error::InvalidArgument(
                "remote calls from a worker are not supported yet".into(),
            ));
        }
        if id == 1 {
            let arg = encode(Vec::new()).map_err(|e| Error::Encode(format!("argument: {e}")))?;
            let tx = {
                let mut g = lock(&self.local);
                g.get_or_insert_with(start_local).clone()
            };
            slot.set_worker(1);
            if let Err(mpsc::SendError(job)) = tx.send(LocalJob { f, arg, slot }) {
                job.slot.complete(Err(Error::UnknownWorker(1)));
            }
            return Ok(());
        }
        match self.get(id) {
            Some(w) => {
                slot.set_driver(id, w.clone());
                w.submit(f, encode, slot)
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
            let mut out = Vec::new();
            for job in rx {
                out.clear();
                // SAFETY: the offsets were made by `FnRef::single`/`batch` in this process.
                let status = unsafe { job.f.invoke(&job.arg, &mut out) };
                job.slot.complete(outcome(1, status, &out));
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
        Status::Ok => Ok(payload.to_vec()),
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

struct Pending {
    queue: VecDeque<Arc<Slot>>,
    /// Why the worker is gone, once it is: what every later call on it fails with.
    dead: Option<Error>,
}

/// One worker process, seen from the master.
pub(crate) struct Remote {
    id: usize,
    proc: Arc<sys::Process>,
    /// The largest body a call may carry (the cluster's `max_frame_bytes`).
    cap: usize,
    /// A protocol fault seen by a caller driving the read side, for the reader to report.
    fault: Mutex<Option<String>>,
    data: Arc<dyn Link>,
    ctl: Mutex<(UnixLink, FrameReader, u64)>,
    /// The write side: held while a frame is built and written, so frames never interleave
    /// and the pending queue has the order of the wire.
    tx: Mutex<Vec<u8>>,
    pending: Mutex<Pending>,
    ended: Mutex<Option<Termination>>,
    ended_cv: Condvar,
    /// The read side. Whoever holds it reads replies and completes their slots: the
    /// reader thread, or a caller of `remotecall_fetch` waiting for its own reply (see
    /// [`Remote::drive`]).
    rx: Mutex<FrameReader>,
    /// Callers currently driving the read side.
    drivers: AtomicUsize,
    /// Where the reader thread sleeps while callers drive.
    idle: Mutex<()>,
    idle_cv: Condvar,
}

impl Remote {
    fn submit(
        &self,
        f: FnRef,
        encode: &mut dyn FnMut(Vec<u8>) -> std::result::Result<Vec<u8>, String>,
        slot: Arc<Slot>,
    ) -> Result<()> {
        let mut tx = lock(&self.tx);
        let mut buf = std::mem::take(&mut *tx);
        wire::begin(&mut buf, wire::CALL);
        buf.extend_from_slice(&f.f_off.to_le_bytes());
        buf.extend_from_slice(&f.tramp_off.to_le_bytes());
        let mut buf = encode(buf).map_err(|e| Error::Encode(format!("argument: {e}")))?;
        // The body: kind, two offsets, the argument.
        if buf.len() - 4 > self.cap {
            let len = (buf.len() - 4 - 17) as u64;
            return Err(Error::ArgumentTooLarge {
                len,
                cap: (self.cap - 17) as u64,
            });
        }
        wire::finish(&mut buf);
        {
            let mut p = lock(&self.pending);
            if let Some(why) = p.dead.clone() {
                drop(p);
                *tx = buf;
                drop(tx);
                slot.complete(Err(why));
                return Ok(());
            }
            p.queue.push_back(slot);
        }
        // A failed write means the worker is gone: its reader sees the end of the stream
        // and fails the slot just queued, with the exit status.
        let _ = self.data.send_all(&buf);
        if buf.capacity() <= 1 << 20 {
            *tx = buf;
        }
        Ok(())
    }

    /// Completes the oldest pending slot with a reply; the cause on a protocol error.
    fn dispatch(&self, body: &[u8]) -> std::result::Result<(), String> {
        let Some(status) = Status::from_u8(body[0]) else {
            return Err(format!("reply of unknown kind {}", body[0]));
        };
        let Some(slot) = lock(&self.pending).queue.pop_front() else {
            return Err("reply to no call".into());
        };
        slot.complete(outcome(self.id, status, &body[1..]));
        Ok(())
    }

    /// Records a protocol fault and wakes the reader thread, which reports it.
    fn fault(&self, cause: String) {
        lock(&self.fault).get_or_insert(cause);
        self.data.shutdown();
    }
}

impl Drive for Remote {
    /// Reads replies on the caller's thread until `slot` is complete (or the link ends).
    ///
    /// This is the fast path of `remotecall_fetch`: the reply wakes the caller directly,
    /// as in a plain socket ping-pong, instead of waking the reader thread which would then
    /// wake the caller (two wake-ups per reply on a busy machine cost about 10 us). Replies
    /// to other calls that arrive first are completed here as well, in order.
    fn drive(&self, slot: &Slot) {
        self.drivers.fetch_add(1, Ordering::SeqCst);
        let mut ended = false;
        {
            let mut rx = lock(&self.rx);
            while !slot.is_ready() {
                let r = rx.next(&*self.data);
                let cause = match r {
                    Ok(Some(body)) => match self.dispatch(body) {
                        Ok(()) => continue,
                        Err(c) => Some(c),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Some(e.to_string()),
                    Ok(None) | Err(_) => None,
                };
                if let Some(c) = cause {
                    self.fault(c);
                }
                ended = true;
                break;
            }
        }
        let left = self.drivers.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 && (ended || !lock(&self.pending).queue.is_empty()) {
            // Hand the read side back to the reader thread: it notices the death (the
            // end of the stream stays readable) or reads the replies still to come.
            let _g = lock(&self.idle);
            self.idle_cv.notify_all();
        }
    }
}

impl Remote {
    /// The reader thread: reads replies whenever no caller drives the read side, until
    /// the worker is gone; then reaps it and fails what was pending.
    fn read_loop(self: Arc<Self>, cluster: Weak<Inner>) {
        'outer: loop {
            if self.drivers.load(Ordering::SeqCst) > 0 {
                let g = lock(&self.idle);
                // Bounded, so a missed notification costs a millisecond, never a hang.
                let _ = self
                    .idle_cv
                    .wait_timeout_while(g, Duration::from_millis(1), |_| {
                        self.drivers.load(Ordering::SeqCst) > 0
                    })
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            match self.data.wait_readable(Duration::from_secs(3600)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => break,
            }
            if self.drivers.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let mut rx = lock(&self.rx);
            // A caller may have taken what woke us: read only what is there, so the read
            // side is never held in a blocking read that a caller could do itself.
            while rx.has_frame() || self.data.wait_readable(Duration::ZERO).unwrap_or(true) {
                match rx.next(&*self.data) {
                    Ok(Some(body)) => {
                        if let Err(c) = self.dispatch(body) {
                            lock(&self.fault).get_or_insert(c);
                            break 'outer;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        lock(&self.fault).get_or_insert(e.to_string());
                        break 'outer;
                    }
                    Ok(None) | Err(_) => break 'outer,
                }
            }
        }
        self.data.shutdown();
        let fault = lock(&self.fault).take();
        if fault.is_some() {
            // The worker broke the protocol: nothing more it sends can be trusted.
            self.proc.kill();
        }
        let t = self.proc.reap(Duration::from_secs(1));
        let why = match fault {
            Some(cause) => Error::Protocol {
                id: self.id,
                pid: self.proc.pid(),
                cause,
            },
            None => Error::WorkerDied {
                id: self.id,
                pid: self.proc.pid(),
                termination: t,
            },
        };
        let failed = {
            let mut p = lock(&self.pending);
            p.dead = Some(why.clone());
            std::mem::take(&mut p.queue)
        };
        if let Some(c) = cluster.upgrade() {
            c.died(self.id, why.clone());
        }
        *lock(&self.ended) = Some(t);
        self.ended_cv.notify_all();
        for s in failed {
            s.complete(Err(why.clone()));
        }
    }

    fn send_ctl(&self, kind: u8, token: u64) {
        let g = lock(&self.ctl);
        let mut f = Vec::with_capacity(16);
        wire::begin(&mut f, kind);
        f.extend_from_slice(&token.to_le_bytes());
        wire::finish(&mut f);
        let _ = g.0.send_all(&f);
    }

    fn wait_ended(&self, timeout: Duration) -> Option<Termination> {
        let g = lock(&self.ended);
        let (g, _) = self
            .ended_cv
            .wait_timeout_while(g, timeout, |e| e.is_none())
            .unwrap_or_else(|p| p.into_inner());
        *g
    }

    /// After a shutdown request: waits `grace`, then `SIGKILL`; returns once reaped.
    fn stop(&self, grace: Duration) {
        if self.wait_ended(grace).is_none() {
            // Once: the pidfd watcher sees the death and wakes the reader, which reaps.
            self.proc.kill();
            while self.wait_ended(Duration::from_secs(5)).is_none() {}
        }
    }
}

/// Starts processes from one long-lived thread: `PR_SET_PDEATHSIG` fires when the thread
/// that forked a child ends (prctl(2)), so forking from a short-lived caller thread (a test,
/// a scoped worker) would kill the workers with it.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnReq>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        let _ = std::thread::Builder::new()
            .name("ptools-spawner".into())
            .spawn(move || {
                for req in rx {
                    let r =
                        sys::spawn_worker(&req.program, &req.args, &req.data, &req.ctl, req.limits);
                    let _ = req.reply.send(r);
                }
            });
        Mutex::new(tx)
    })
}

struct SpawnReq {
    program: PathBuf,
    args: Vec<OsString>,
    data: OwnedFd,
    ctl: OwnedFd,
    limits: sys::WorkerLimits,
    reply: mpsc::Sender<std::io::Result<sys::Process>>,
}

/// A started process, between spawn and registration.
struct Starting {
    proc: Arc<sys::Process>,
    data: Arc<UnixLink>,
    ctl: UnixLink,
    reader: FrameReader,
    id: usize,
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
    ///
    /// Each worker is this same executable re-started in worker mode (see
    /// [`init`](crate::init)). All `n` start, or none: on failure every process of this call
    /// is killed and reaped and nothing is registered.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStartFailed`] (spawn failed, the program exited, or no handshake within
    /// the start timeout: typically a program whose `main` lacks [`init`](crate::init)),
    /// [`Error::BuildMismatch`], [`Error::InvalidArgument`] when called inside a worker.
    pub fn addprocs(&self, n: usize) -> Result<Vec<usize>> {
        check_master()?;
        let cap = self.inner.opts.max_frame;
        if !(64..=wire::MAX_FRAME_LIMIT).contains(&cap) {
            return Err(Error::InvalidArgument(format!(
                "max_frame_bytes {cap} outside 64..={}",
                wire::MAX_FRAME_LIMIT
            )));
        }
        let me = sys::BuildId::of_self()?;
        let program = self
            .inner
            .opts
            .program
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let mut started: Vec<Starting> = Vec::with_capacity(n);
        let result = (|| {
            for _ in 0..n {
                let (d_master, d_child) = sys::socketpair()?;
                let (c_master, c_child) = sys::socketpair()?;
                let (reply, rx) = mpsc::channel();
                let req = SpawnReq {
                    program: program.clone(),
                    args: self.inner.opts.args.clone(),
                    data: d_child,
                    ctl: c_child,
                    limits: sys::WorkerLimits {
                        max_frame: cap,
                        handshake: self.inner.opts.start_timeout,
                    },
                    reply,
                };
                lock(spawner())
                    .send(req)
                    .map_err(|_| Error::WorkerStartFailed("spawner thread is gone".into()))?;
                let proc = rx
                    .recv()
                    .map_err(|_| Error::WorkerStartFailed("spawner thread is gone".into()))?
                    .map_err(|e| {
                        Error::WorkerStartFailed(format!("spawn {}: {e}", program.display()))
                    })?;
                started.push(Starting {
                    proc: Arc::new(proc),
                    data: Arc::new(UnixLink(d_master)),
                    ctl: UnixLink(c_master),
                    reader: FrameReader::with_cap(wire::HANDSHAKE_CAP),
                    id: 0,
                });
            }
            let deadline = Instant::now() + self.inner.opts.start_timeout;
            for s in started.iter_mut() {
                handshake(s, &me, deadline, &self.inner.next_id)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for s in started {
                s.data.shutdown();
                s.proc.kill();
                s.proc.reap(Duration::from_secs(5));
            }
            return Err(e);
        }
        let mut ids = Vec::with_capacity(n);
        for s in started {
            let remote = Arc::new(Remote {
                id: s.id,
                proc: s.proc,
                cap,
                fault: Mutex::new(None),
                data: s.data,
                ctl: Mutex::new((s.ctl, FrameReader::with_cap(wire::CONTROL_CAP), 0)),
                tx: Mutex::new(Vec::with_capacity(4096)),
                pending: Mutex::new(Pending {
                    queue: VecDeque::new(),
                    dead: None,
                }),
                ended: Mutex::new(None),
                ended_cv: Condvar::new(),
                rx: Mutex::new(s.reader.with_new_cap(cap)),
                drivers: AtomicUsize::new(0),
                idle: Mutex::new(()),
                idle_cv: Condvar::new(),
            });
            self.inner
                .workers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(s.id, remote.clone());
            let weak = Arc::downgrade(&self.inner);
            let r2 = remote.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ptools-reader-{}", s.id))
                .spawn(move || r2.read_loop(weak));
            let link = Arc::downgrade(&remote.data);
            let watched = spawned.map(drop).and_then(|()| {
                crate::deaths::watch(
                    remote.proc.clone(),
                    Box::new(move || {
                        // Wakes whoever reads the link; the reader then reaps.
                        if let Some(l) = link.upgrade() {
                            l.shutdown();
                        }
                    }),
                )
            });
            if let Err(e) = watched {
                // Without a reader or a watch a death could go unseen: take it down. The
                // reader, if it runs, sees the end of the stream and reaps.
                self.inner
                    .workers
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&s.id);
                remote.data.shutdown();
                remote.proc.kill();
                remote.proc.reap(Duration::from_secs(5));
                return Err(e.into());
            }
            ids.push(s.id);
        }
        Ok(ids)
    }

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
        self.inner
            .workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// The ids of the live workers, ascending; `[1]` when there is none (as in Julia).
    pub fn workers(&self) -> Vec<usize> {
        let w = self.workers_ids();
        if w.is_empty() { vec![1] } else { w }
    }

    /// The number of processes: master and live workers.
    pub fn nprocs(&self) -> usize {
        1 + self
            .inner
            .workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The number of live workers; 1 when there is none (as in Julia).
    pub fn nworkers(&self) -> usize {
        self.nprocs().saturating_sub(1).max(1)
    }

    /// The process id of worker `id`, if it is alive.
    pub fn pid(&self, id: usize) -> Option<i32> {
        if id == 1 {
            return Some(std::process::id() as i32);
        }
        self.inner.get(id).map(|w| w.proc.pid())
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
        let mut g = lock(&w.ctl);
        let (link, reader, token) = &mut *g;
        *token += 1;
        let want = *token;
        let mut f = Vec::with_capacity(16);
        wire::begin(&mut f, wire::PING);
        f.extend_from_slice(&want.to_le_bytes());
        wire::finish(&mut f);
        let t0 = Instant::now();
        link.send_all(&f)?;
        let deadline = t0 + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !reader.has_frame() && !link.wait_readable(left)? {
                return Err(Error::Timeout);
            }
            match reader.next(link)? {
                Some(b) if b[0] == wire::PONG && wire::u64_at(b, 1) == Some(want) => {
                    return Ok(t0.elapsed());
                }
                Some(_) => {}
                None => return Err(self.inner.gone_error(id)),
            }
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
            &mut |b| crate::codec::encode_into(&arg, b),
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

fn check_master() -> Result<()> {
    if crate::worker::forgot_init() {
        eprintln!(
            "ptools-workerset: this process was started as a worker but never entered worker \
             mode: main runs in every worker up to init(), so call ptools::workerset::init() \
             (ptools_workerset::init() without the facade) first in main, or put \
             ptools::workerset::enable_test_support!(); at the top of a test file"
        );
        return Err(Error::InvalidArgument(
            "this process is an uninitialised worker: it must not start workers".into(),
        ));
    }
    if crate::worker::myid() != 1 {
        return Err(Error::InvalidArgument(
            "workers cannot start workers".into(),
        ));
    }
    Ok(())
}

fn handshake(
    s: &mut Starting,
    me: &sys::BuildId,
    deadline: Instant,
    next_id: &AtomicUsize,
) -> Result<()> {
    let pid = s.proc.pid();
    let fail = |m: String| Error::WorkerStartFailed(format!("pid {pid}: {m}"));
    // Every read honours the deadline: a program that writes part of a frame and goes
    // silent fails here in time, and the frame is capped at a few KiB.
    let body = match s.reader.next_before(&*s.data, deadline) {
        Ok(Some(b)) => b,
        Ok(None) => {
            // The link closes a moment before the process can be reaped: give it that
            // moment (bounded), then kill it.
            let t = s.proc.reap(Duration::from_secs(2));
            return Err(fail(format!("exited before the handshake ({t})")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(fail(format!("no handshake before the start timeout: {e}")));
        }
        Err(e) => return Err(fail(format!("handshake: {e}"))),
    };
    if body[0] != wire::HELLO {
        return Err(fail(format!("bad handshake: frame of kind {}", body[0])));
    }
    let hello: wire::Hello =
        postcard::from_bytes(&body[1..]).map_err(|e| fail(format!("bad handshake: {e}")))?;
    if hello.magic != wire::MAGIC {
        return Err(fail("bad handshake: not a ptools worker".into()));
    }
    if hello.protocol != wire::PROTOCOL || hello.build != *me {
        let mut f = Vec::new();
        wire::begin(&mut f, wire::REJECT);
        wire::finish(&mut f);
        let _ = s.data.send_all(&f);
        return Err(Error::BuildMismatch);
    }
    if hello.pid as i32 != pid {
        return Err(fail(format!("handshake from pid {}", hello.pid)));
    }
    s.id = next_id.fetch_add(1, Ordering::Relaxed);
    let mut f = Vec::new();
    wire::begin(&mut f, wire::WELCOME);
    f.extend_from_slice(&(s.id as u64).to_le_bytes());
    wire::finish(&mut f);
    s.data.send_all(&f)?;
    Ok(())
}

/// Stops workers in parallel: shutdown to all first, then the waits.
fn stop_all(inner: &Inner, list: Vec<Arc<Remote>>) {
    for w in &list {
        w.send_ctl(wire::SHUTDOWN, 0);
    }
    for w in &list {
        w.stop(inner.opts.grace);
        inner.died(
            w.id,
            Error::WorkerDied {
                id: w.id,
                pid: w.proc.pid(),
                termination: w.wait_ended(Duration::ZERO).unwrap_or(Termination::Unknown),
            },
        );
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let list: Vec<_> =
            std::mem::take(&mut *self.workers.write().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        stop_all(self, list);
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}
