//! `WorkerSet`: a fixed set of workers used round-robin or first-free.
//!
//! First-free keeps a free list and a FIFO queue of waiting calls under one mutex. A call
//! takes a free worker at once, or waits in the queue; when a call ends (success *or*
//! failure: PTools.jl leaks the worker on error), the completion hook, running on
//! whichever thread read the reply, hands the worker to the oldest waiting call or puts it
//! back on the free list. That thread holds the link's read side, so the handed-over call
//! is queued and written by the link's sender thread, never by the reader (see the
//! cluster's `PROTOCOL.md`). A dead worker is dropped from the set instead; when none is left, the
//! waiting calls fail with [`Error::NoWorkers`].
//!
//! A blocking call (`remotecall_fetch`, `remotecall_wait`) that finds every worker busy
//! waits in the same queue as a *caller*, not as an encoded call: the hook hands it the
//! worker and wakes it, and the caller writes its call and reads its own reply itself.
//! With more callers than workers this saves the sender thread's hop and the reader
//! thread's wake-up on every call (a hook that only wakes a thread never writes, so
//! it needs no sender thread).
//!
//! A waiting caller younger than the set's fairness bound (1 ms by default) is not handed
//! the worker but *nudged*: the worker goes on the free list, the oldest waiting caller
//! is woken to take it, and a thread that calls meanwhile (most often the one that just
//! freed it, calling again) may take it first. Handing every worker over in strict FIFO
//! order put each call of 8 threads on 2 workers behind a sleep and a wake-up, about 1.8×
//! the time per call of 2 threads; with barging, 8 threads make calls faster than 2 (see
//! BENCHMARKS.md). This is the trade `parking_lot`'s and Go's mutexes make, bounded the
//! same way: a caller that has waited past the bound is handed the next worker freed.
//! At most one caller is nudged at a time, and a nudged caller that finds the worker
//! taken sleeps again, still the oldest; the next worker freed nudges it again.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::func::FnRef;
use crate::pmap;
use crate::remote_ref::{DriveToken, RemoteRef, Slot};

/// How a [`WorkerSet`] picks a worker for each call. The default is
/// [`FirstFree`](Mode::FirstFree), what [`WorkerSet::new`] and `pmap` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Each call goes to the next worker in the list, whatever it is doing; calls pile up
    /// on a worker and run there in order.
    RoundRobin,
    /// Each call goes to a worker that runs nothing from this set; when all are busy,
    /// callers wait in FIFO order, though a blocked caller may be passed over for up to
    /// the set's fairness bound ([`WorkerSet::set_fair_after`]). At most one call of the
    /// set runs on a worker at a time.
    #[default]
    FirstFree,
}

/// A call waiting for a free worker: its function, encoded argument and slot.
pub(crate) struct Job {
    pub(crate) f: FnRef,
    pub(crate) arg: Vec<u8>,
    pub(crate) slot: Arc<Slot>,
}

/// What waits for a free worker in first-free mode, in FIFO order.
enum Waiter {
    /// A call, encoded: written by whoever frees a worker.
    Job(Job),
    /// A thread blocked in a call of its own, which writes it once handed a worker.
    Caller(Arc<Handoff>),
}

/// Where a waiting caller is handed its worker (or told there is none), or nudged to
/// look at the free list. Its state changes under the set's lock while the caller is
/// queued (a failed queue, already taken off, is told after).
struct Handoff {
    state: Mutex<Wake>,
    cv: Condvar,
    /// When the caller started waiting: past the set's fairness bound it is handed the
    /// next worker freed, never barged past.
    since: Instant,
}

/// What a waiting caller is woken with.
enum Wake {
    /// Nothing yet: sleep.
    Asleep,
    /// A worker was put on the free list while this caller was the oldest waiting: try to
    /// take it.
    Nudged,
    /// This worker is the caller's (or no worker is left).
    Given(Result<usize>),
}

impl Handoff {
    fn new() -> Handoff {
        Handoff {
            state: Mutex::new(Wake::Asleep),
            cv: Condvar::new(),
            since: Instant::now(),
        }
    }

    /// Sets the state (the set's lock held, unless the caller has been taken off the
    /// queue).
    fn set(&self, w: Wake) {
        *lock(&self.state) = w;
    }

    #[cfg(test)]
    fn is_nudged(&self) -> bool {
        matches!(*lock(&self.state), Wake::Nudged)
    }

    /// Marks a sleeping caller nudged; false when it already was (a queued caller is
    /// never `Given`: that takes it off the queue first).
    fn nudge(&self) -> bool {
        let mut g = lock(&self.state);
        let asleep = matches!(*g, Wake::Asleep);
        if asleep {
            *g = Wake::Nudged;
        }
        asleep
    }

    fn give(&self, w: Result<usize>) {
        self.set(Wake::Given(w));
        self.cv.notify_one();
    }

    /// Sleeps until nudged or given; `None` when nudged (the state is left `Nudged`, for
    /// the caller to take under the set's lock).
    fn wait(&self) -> Option<Result<usize>> {
        let mut g = lock(&self.state);
        loop {
            if matches!(*g, Wake::Nudged) {
                return None;
            }
            if let Wake::Given(w) = std::mem::replace(&mut *g, Wake::Asleep) {
                return Some(w);
            }
            self.cv.wait(&mut g);
        }
    }
}

impl Waiter {
    /// No worker is left for it.
    fn fail(self) {
        match self {
            Waiter::Job(j) => j.slot.complete(Err(Error::NoWorkers)),
            Waiter::Caller(h) => h.give(Err(Error::NoWorkers)),
        }
    }
}

impl Job {
    /// The call `f(arg)`, encoded, with a fresh slot for its outcome.
    fn new<A, R>(f: fn(A) -> R, arg: A) -> Result<Job>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let arg =
            crate::codec::encode(&arg).map_err(|e| Error::Encode(format!("argument: {e}")))?;
        Ok(Job {
            f: FnRef::single(f)?,
            arg,
            slot: Slot::new(0, None),
        })
    }
}

struct FirstFree {
    free: VecDeque<usize>,
    live: Vec<usize>,
    /// Only the caller at the front is ever nudged (at most one at a time), so "a nudge
    /// is outstanding" is that caller's state, not a flag kept beside it.
    queue: VecDeque<Waiter>,
    /// How long a waiting caller may be barged past before a freed worker is handed to it
    /// directly: `FAIR_AFTER` unless [`WorkerSet::set_fair_after`] said otherwise.
    fair_after: Duration,
    /// Workers handed straight to a waiting caller (to tell that from a nudge in tests).
    #[cfg(test)]
    handed: usize,
}

impl FirstFree {
    /// Whether the oldest waiting caller has been nudged and has not looked yet.
    #[cfg(test)]
    fn nudged(&self) -> bool {
        matches!(self.queue.front(), Some(Waiter::Caller(h)) if h.is_nudged())
    }

    /// No worker is left: every waiting call is to be failed.
    fn fail_all(&mut self, after: &mut After) {
        after.failed.extend(self.queue.drain(..));
    }
}

/// The default fairness bound of a first-free set (Go's `sync.Mutex` also turns fair
/// after 1 ms; `parking_lot`'s mutexes after 0.5 ms on average).
const FAIR_AFTER: Duration = Duration::from_millis(1);

struct SetInner {
    cluster: Cluster,
    mode: Mode,
    ids: Vec<usize>,
    next: AtomicUsize,
    ff: Mutex<FirstFree>,
}

/// A set of workers that calls are spread over: round-robin or first-free (PTools.jl's
/// `WorkerSet`). Cloning gives another handle on the same set; it is `Send + Sync` and
/// meant to be used from many threads at once.
///
/// ```
/// ptools_workerset::enable_test_support!();
/// use ptools_workerset::{Cluster, Mode, WorkerSet};
///
/// # fn main() -> Result<(), ptools_workerset::Error> {
/// let c = Cluster::new();
/// let ids = c.addprocs(2)?;
/// let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree)?;
/// assert_eq!(ws.remotecall_fetch(|x: u32| x + 1, 1)?, 2);
/// assert_eq!(ws.pmap(|x: u32| x * 2, 0..5)?, vec![0, 2, 4, 6, 8]);
/// # Ok(())
/// # }
/// ```
///
/// # Drop
///
/// Dropping a handle never cancels a call, not even dropping the last one. Every call
/// accepted by [`remotecall`](Self::remotecall) (and the calls built on it) is served:
/// one already running finishes, and in first-free mode one still waiting for a free
/// worker is sent when its turn comes, in FIFO order as usual, with the same outcomes as
/// if the set were still held (its result, or [`Error::WorkerDied`] /
/// [`Error::NoWorkers`] when workers die). The set's state lives on in its calls in
/// flight (each running call, when it ends, hands its worker to the next waiting call)
/// and is freed when the last of them has ended. A thread blocked in
/// [`remotecall_fetch`](Self::remotecall_fetch) holds a handle itself (a clone or a
/// borrow), so the set can only be dropped under calls whose [`RemoteRef`]s outlive every
/// handle; those resolve as usual.
///
/// ```
/// ptools_workerset::enable_test_support!();
/// use ptools_workerset::{Cluster, Mode, WorkerSet};
///
/// # fn main() -> Result<(), ptools_workerset::Error> {
/// let c = Cluster::new();
/// let ws = WorkerSet::with_cluster(&c, &c.addprocs(1)?, Mode::FirstFree)?;
/// // One call runs, the others wait for the one worker.
/// let calls = (0..3)
///     .map(|i| ws.remotecall(|x: u32| x * 10, i))
///     .collect::<Result<Vec<_>, _>>()?;
/// drop(ws);
/// let got = calls.into_iter().map(|r| r.fetch()).collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(got, [0, 10, 20]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WorkerSet {
    inner: Arc<SetInner>,
}

impl fmt::Debug for WorkerSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSet")
            .field("mode", &self.inner.mode)
            .field("workers", &self.workers())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl WorkerSet {
    /// A set over workers of the default cluster, in the default mode,
    /// [`Mode::FirstFree`] (PTools.jl's `WorkerSet(ids)`): each call goes to a worker that
    /// is free.
    ///
    /// ```
    /// ptools_workerset::enable_test_support!();
    /// use ptools_workerset::{Mode, WorkerSet, addprocs, rmprocs};
    ///
    /// fn main() -> Result<(), ptools_workerset::Error> {
    ///     ptools_workerset::init();
    ///     let ids = addprocs(2)?;
    ///     let ws = WorkerSet::new(&ids)?;
    ///     assert_eq!(ws.mode(), Mode::FirstFree);
    ///     assert_eq!(ws.pmap(|x: u32| x + 1, 0..3)?, [1, 2, 3]);
    ///     rmprocs(&ids)
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`with_cluster`](Self::with_cluster).
    pub fn new(ids: &[usize]) -> Result<WorkerSet> {
        WorkerSet::with_cluster(crate::default_cluster(), ids, Mode::default())
    }

    /// A set over workers of the default cluster in the given mode.
    ///
    /// # Errors
    ///
    /// As [`with_cluster`](Self::with_cluster).
    pub fn with_mode(ids: &[usize], mode: Mode) -> Result<WorkerSet> {
        WorkerSet::with_cluster(crate::default_cluster(), ids, mode)
    }

    /// A set over workers of `cluster` (id 1, the master, may be one of them).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty list or a duplicate id;
    /// [`Error::UnknownWorker`] / [`Error::WorkerDied`] for an id that is not a live worker.
    pub fn with_cluster(cluster: &Cluster, ids: &[usize], mode: Mode) -> Result<WorkerSet> {
        if ids.is_empty() {
            return Err(Error::InvalidArgument(
                "a worker set needs at least one worker".into(),
            ));
        }
        let mut seen = HashSet::new();
        for &id in ids {
            if !seen.insert(id) {
                return Err(Error::InvalidArgument(format!("worker {id} listed twice")));
            }
            if !cluster.inner.is_alive(id) {
                return Err(cluster.inner.gone_error(id));
            }
        }
        Ok(WorkerSet {
            inner: Arc::new(SetInner {
                cluster: cluster.clone(),
                mode,
                ids: ids.to_vec(),
                next: AtomicUsize::new(0),
                ff: Mutex::new(FirstFree {
                    free: ids.iter().copied().collect(),
                    live: ids.to_vec(),
                    queue: VecDeque::new(),
                    fair_after: FAIR_AFTER,
                    #[cfg(test)]
                    handed: 0,
                }),
            }),
        })
    }

    /// The set's mode.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// First-free mode: how long a thread blocked waiting for a worker may be passed over
    /// by callers that arrive later, before the next worker freed is handed to it directly
    /// (1 ms by default). Meanwhile a freed worker goes on the free list
    /// and the oldest waiting thread is woken to take it, but the thread that freed it may
    /// take it back first if it calls again at once: with more calling threads than
    /// workers, the threads that already run keep their workers busy without a sleep and a
    /// wake-up per call. [`Duration::ZERO`] hands every freed worker to the oldest waiting
    /// call (strict FIFO); a long bound gives the most calls per second and the least
    /// fairness. A call made with [`remotecall`](Self::remotecall) (waiting encoded, no
    /// thread blocked) is handed the next worker freed once it is the oldest waiting.
    /// Applies to all handles on the set.
    ///
    /// ```
    /// # ptools_workerset::enable_test_support!();
    /// # fn main() -> ptools_workerset::Result<()> {
    /// use std::time::Duration;
    /// use ptools_workerset::{Cluster, Mode, WorkerSet};
    ///
    /// let c = Cluster::new();
    /// let ws = WorkerSet::with_cluster(&c, &c.addprocs(1)?, Mode::FirstFree)?;
    /// ws.set_fair_after(Duration::ZERO); // strict FIFO
    /// assert_eq!(ws.remotecall_fetch(|x: u32| x + 1, 1)?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_fair_after(&self, bound: Duration) {
        lock(&self.inner.ff).fair_after = bound;
    }

    /// The set's live workers, in the order given at creation.
    pub fn workers(&self) -> Vec<usize> {
        self.inner
            .ids
            .iter()
            .copied()
            .filter(|&i| self.inner.cluster.inner.is_alive(i))
            .collect()
    }

    /// How many calls wait for a free worker (first-free mode; always 0 in round-robin
    /// mode, where calls queue on the workers themselves).
    pub fn waiting(&self) -> usize {
        lock(&self.inner.ff).queue.len()
    }

    /// Calls `f(arg)` on a worker of the set, chosen by the set's [`Mode`], and returns at
    /// once. In first-free mode the returned `RemoteRef` resolves once a free worker has
    /// run the call (its [`worker`](RemoteRef::worker) is 0 until one is picked).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`]; [`Error::NoWorkers`] when no worker of the set is alive;
    /// [`Error::ForeignFunction`] when `f` is not in the executable's own code.
    pub fn remotecall<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<RemoteRef<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let job = Job::new(f, arg)?;
        let slot = job.slot.clone();
        self.submit(job)?;
        Ok(RemoteRef::new(slot))
    }

    /// Calls `f(arg)` on a worker of the set and waits for the result.
    ///
    /// # Errors
    ///
    /// Those of [`remotecall`](Self::remotecall) and [`RemoteRef::fetch`].
    pub fn remotecall_fetch<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.call_and_wait(f, arg)?.fetch()
    }

    /// A call this thread then waits for: in first-free mode, when every worker is busy,
    /// the thread itself waits for a worker and writes its call (see the module docs).
    fn call_and_wait<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<RemoteRef<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        // On a read side a thread must not block for a worker (the hook that frees one
        // may need this very read side): the call waits as an encoded job instead.
        if self.inner.mode != Mode::FirstFree || crate::cluster::on_read_side() {
            let r = self.remotecall(f, arg)?;
            let _ = r.wait();
            return Ok(r);
        }
        let job = Job::new(f, arg)?;
        let r = RemoteRef::new(job.slot.clone());
        let w = self.inner.acquire()?;
        // This thread reads its own reply (nobody else is woken for it).
        self.inner.clone().run_on(w, job, true);
        let _ = r.wait();
        Ok(r)
    }

    /// Calls `f(arg)` on a worker of the set and waits until it has run.
    ///
    /// # Errors
    ///
    /// Those of [`remotecall`](Self::remotecall) and [`RemoteRef::wait`].
    pub fn remotecall_wait<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<()>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.call_and_wait(f, arg)?.wait()
    }

    /// `f` over `items` on the set's workers; the results in the order of `items`.
    ///
    /// Items travel in batches whose size adapts to how long items take (about 2 ms of
    /// work per batch), so tiny tasks cost little per item and long ones still spread.
    /// When `items` knows its length (an exact `size_hint`: a `Vec`, a slice's iterator,
    /// a range, a `map` of one of them) they are taken from it a batch at a time, never all
    /// held at once; any other iterator is collected first.
    ///
    /// # Errors
    ///
    /// The first failure of any batch ([`Error::RemotePanic`], [`Error::WorkerDied`], ...);
    /// the batches still running then finish unobserved. [`Error::ForeignFunction`], before
    /// anything is sent, when `f` is not in the executable's own code.
    pub fn pmap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        pmap::run(self, f, items.into_iter(), &mut ())
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
        let mut bar = indicatif::ProgressBar::new(0);
        pmap::run(self, f, items.into_iter(), &mut bar)
    }

    /// How many batches `pmap` keeps in flight.
    pub(crate) fn width(&self) -> usize {
        let live = self.workers().len().max(1);
        match self.inner.mode {
            // One running per worker plus one queued each (round-robin: on the worker's
            // link; first-free: in the set's queue), so no worker idles between batches
            // for a round trip.
            Mode::FirstFree | Mode::RoundRobin => 2 * live,
        }
    }

    /// `pmap`: a worker for the next batch. First-free: a free one, or `None` when every
    /// worker is busy, unless `wait`, when it waits its turn (FIFO, with the set's other
    /// callers). Round-robin: always `Some(0)`, the worker being picked at the send. (For
    /// [`send_batch`](Self::send_batch), worker 0 means "by the set's mode": first-free,
    /// the batch then waits in the set's queue like any call.)
    ///
    /// # Errors
    ///
    /// [`Error::NoWorkers`] when no worker of the set is alive.
    pub(crate) fn take_worker(&self, wait: bool) -> Result<Option<usize>> {
        match self.inner.mode {
            Mode::RoundRobin => Ok(Some(0)),
            Mode::FirstFree if wait && !crate::cluster::on_read_side() => {
                self.inner.acquire().map(Some)
            }
            Mode::FirstFree => {
                let mut g = lock(&self.inner.ff);
                let mut after = After::default();
                let got = self.inner.take_free(&mut g, &mut after);
                drop(g);
                after.run(&self.inner);
                match got? {
                    Some(w) => Ok(Some(w)),
                    // A read side must not block for a worker (see `call_and_wait`): the
                    // batch waits in the queue as an encoded call instead.
                    None if wait => Ok(Some(0)),
                    None => Ok(None),
                }
            }
        }
    }

    /// `pmap`: gives back a worker from [`take_worker`](Self::take_worker) that it had no
    /// items left for.
    pub(crate) fn put_back(&self, w: usize) {
        if self.inner.mode == Mode::FirstFree && w != 0 {
            self.inner.clone().release(w);
        }
    }

    /// `pmap`: sends a batch on this thread to `w` from [`take_worker`](Self::take_worker),
    /// its argument encoded straight into the frame; `then` runs once the slot is
    /// complete, after the worker is handed on. An error (the argument did not encode,
    /// the worker is gone) also completes the slot. With `drive` (this thread reads the
    /// reply itself), the token of this thread counted as the link's driver, when it
    /// could be (see `Inner::submit_driven`).
    pub(crate) fn send_batch(
        &self,
        w: usize,
        f: FnRef,
        encode: &mut crate::codec::EncodeArg<'_>,
        slot: Arc<Slot>,
        then: crate::remote_ref::Hook,
        drive: bool,
    ) -> Result<Option<DriveToken>> {
        let inner = &self.inner.cluster.inner;
        let send = |id: usize, encode: &mut crate::codec::EncodeArg<'_>| {
            if drive {
                inner.submit_driven(id, f, encode, slot.clone())
            } else {
                inner.submit(id, f, encode, slot.clone()).map(|()| None)
            }
        };
        let r = match self.inner.mode {
            Mode::FirstFree if w != 0 => {
                let me = self.inner.clone();
                slot.add_hook(Box::new(move || me.release(w)));
                slot.add_hook(then);
                send(w, encode)
            }
            Mode::RoundRobin => {
                slot.add_hook(then);
                self.next_round_robin().and_then(|id| send(id, encode))
            }
            Mode::FirstFree => {
                // Made on a read side: it waits for a worker in the queue like any job.
                slot.add_hook(then);
                let mut out = crate::codec::Out::new(Vec::new());
                let arg = encode(&mut out)
                    .map(|()| out.finish().0)
                    .map_err(|e| Error::Encode(format!("argument: {e}")));
                arg.and_then(|arg| {
                    self.submit(Job {
                        f,
                        arg,
                        slot: slot.clone(),
                    })
                })
                .map(|()| None)
            }
        };
        if let Err(e) = &r {
            slot.complete(Err(e.clone()));
        }
        r
    }

    /// The next live worker in round-robin order.
    fn next_round_robin(&self) -> Result<usize> {
        let ids = &self.inner.ids;
        for _ in 0..ids.len() {
            let id = ids[self.inner.next.fetch_add(1, Ordering::Relaxed) % ids.len()];
            if self.inner.cluster.inner.is_alive(id) {
                return Ok(id);
            }
        }
        Err(Error::NoWorkers)
    }

    /// Sends a job by the set's mode.
    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        match self.inner.mode {
            Mode::RoundRobin => {
                let id = self.next_round_robin()?;
                let arg = job.arg;
                self.inner.cluster.inner.submit(
                    id,
                    job.f,
                    &mut |o| {
                        o.extend(&arg);
                        Ok(())
                    },
                    job.slot,
                )
            }
            Mode::FirstFree => {
                let mut g = lock(&self.inner.ff);
                let mut after = After::default();
                match self.inner.take_free(&mut g, &mut after) {
                    Ok(Some(w)) => {
                        drop(g);
                        self.inner.clone().run_on(w, job, false);
                    }
                    Ok(None) => g.queue.push_back(Waiter::Job(job)),
                    Err(e) => {
                        drop(g);
                        after.run(&self.inner);
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }
}

impl SetInner {
    /// Runs `job` on free worker `w`; when it ends, `w` goes to the next waiting job. With
    /// `drive`, this thread waits for the job next and reads its reply on the way.
    fn run_on(self: Arc<Self>, w: usize, job: Job, drive: bool) {
        let me = self.clone();
        job.slot.add_hook(Box::new(move || me.release(w)));
        let arg = job.arg;
        let mut encode = |o: &mut crate::codec::Out<'_>| {
            o.extend(&arg);
            Ok(())
        };
        let inner = &self.cluster.inner;
        let r = if drive {
            inner.call_and_drive(w, job.f, &mut encode, job.slot.clone())
        } else {
            inner.submit(w, job.f, &mut encode, job.slot.clone())
        };
        if let Err(e) = r {
            job.slot.complete(Err(e));
        }
    }

    /// A free worker for a call of this thread: at once, or after the callers already
    /// waiting (FIFO among them, see [`release`](Self::release)). Blocks.
    fn acquire(self: &Arc<Self>) -> Result<usize> {
        let mut g = lock(&self.ff);
        let mut after = After::default();
        match self.take_free(&mut g, &mut after) {
            Ok(Some(w)) => return Ok(w),
            Ok(None) => {}
            Err(e) => {
                drop(g);
                after.run(self);
                return Err(e);
            }
        }
        let h = Arc::new(Handoff::new());
        g.queue.push_back(Waiter::Caller(h.clone()));
        drop(g);
        loop {
            if let Some(w) = h.wait() {
                return w;
            }
            // Nudged: a worker was freed while this caller was the oldest waiting. It may
            // have been taken since (barged) or handed here meanwhile.
            let mut g = lock(&self.ff);
            // Looked: no longer nudged, whatever it finds.
            if let Wake::Given(w) = std::mem::replace(&mut *lock(&h.state), Wake::Asleep) {
                return w;
            }
            let mut after = After::default();
            let got = match self.take_free(&mut g, &mut after) {
                // Barged: sleep again, still the oldest waiting.
                Ok(None) => continue,
                Ok(Some(w)) => {
                    if let Some(i) = g
                        .queue
                        .iter()
                        .position(|x| matches!(x, Waiter::Caller(c) if Arc::ptr_eq(c, &h)))
                    {
                        g.queue.remove(i);
                    }
                    self.dispatch(&mut g, &mut after);
                    Ok(w)
                }
                // The queue, this caller included, was failed.
                Err(e) => Err(e),
            };
            drop(g);
            after.run(self);
            return got;
        }
    }

    /// Serves the queue from the free list: while workers are free, the encoded calls at
    /// its front are given one each (to run once the lock is released), then the oldest
    /// waiting caller, if any, is nudged (unless one is already).
    fn dispatch(&self, g: &mut FirstFree, after: &mut After) {
        while !g.free.is_empty() && matches!(g.queue.front(), Some(Waiter::Job(_))) {
            match self.take_free(g, after) {
                Ok(Some(w)) => {
                    if let Some(Waiter::Job(job)) = g.queue.pop_front() {
                        after.jobs.push((w, job));
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
        if g.free.is_empty() {
            return;
        }
        if let Some(Waiter::Caller(h)) = g.queue.front()
            && h.nudge()
        {
            after.wake.push(h.clone());
        }
    }

    /// A live free worker, taken off the free list (dead ones found there leave the
    /// set); `None` when every live worker is busy.
    ///
    /// # Errors
    ///
    /// [`Error::NoWorkers`] when no worker of the set is alive; every waiting call is then
    /// failed too (through `after`): no worker will ever end a call to serve them.
    fn take_free(&self, g: &mut FirstFree, after: &mut After) -> Result<Option<usize>> {
        while let Some(w) = g.free.pop_front() {
            if self.cluster.inner.is_alive(w) {
                return Ok(Some(w));
            }
            g.live.retain(|&x| x != w);
        }
        if g.live.is_empty() {
            g.fail_all(after);
            return Err(Error::NoWorkers);
        }
        Ok(None)
    }

    /// Worker `w`'s call has ended: `w` goes to the oldest waiting call. A waiting
    /// *caller* (a blocked thread) younger than the fairness bound is not handed `w` but
    /// nudged, and `w` goes on the free list, where the thread that just freed it may take
    /// it back first when it calls again at once (barging, as in `parking_lot`'s and Go's
    /// mutexes). That spares a sleep and a wake-up per call when callers outnumber
    /// workers. The nudged caller takes `w` when nobody did; one that lost it sleeps
    /// again, still the oldest, until the next worker freed, which is handed to it
    /// directly once it has waited past the bound. Encoded calls at the front of the
    /// queue are always handed `w` directly.
    fn release(self: Arc<Self>, w: usize) {
        let mut g = lock(&self.ff);
        let mut after = After::default();
        if !self.cluster.inner.is_alive(w) {
            g.live.retain(|&x| x != w);
            if g.live.is_empty() {
                g.fail_all(&mut after);
            } else {
                self.dispatch(&mut g, &mut after);
            }
        } else {
            let fair = match g.queue.front() {
                Some(Waiter::Job(_)) => true,
                Some(Waiter::Caller(h)) => h.since.elapsed() >= g.fair_after,
                None => false,
            };
            match if fair { g.queue.pop_front() } else { None } {
                Some(Waiter::Job(job)) => after.jobs.push((w, job)),
                Some(Waiter::Caller(h)) => {
                    h.set(Wake::Given(Ok(w)));
                    #[cfg(test)]
                    {
                        g.handed += 1;
                    }
                    after.wake.push(h);
                }
                None => g.free.push_back(w),
            }
            self.dispatch(&mut g, &mut after);
        }
        drop(g);
        after.run(&self);
    }
}

/// What a change to a first-free set's state leaves to do once its lock is released:
/// callers to wake (handed a worker or nudged), encoded calls to send, and calls to fail
/// when no worker is left.
#[derive(Default)]
struct After {
    wake: Vec<Arc<Handoff>>,
    jobs: Vec<(usize, Job)>,
    failed: Vec<Waiter>,
}

impl After {
    fn run(self, set: &Arc<SetInner>) {
        for h in self.wake {
            h.cv.notify_one();
        }
        for (w, job) in self.jobs {
            set.clone().run_on(w, job, false);
        }
        for w in self.failed {
            w.fail();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The hand-over rules, driven by hand on a set of the master alone (worker 1, always
    //! alive), so each step is this test's own.

    use super::*;

    fn set(bound: Duration) -> WorkerSet {
        let ws = WorkerSet::with_cluster(&Cluster::new(), &[1], Mode::FirstFree).unwrap();
        ws.set_fair_after(bound);
        ws
    }

    /// Starts a thread blocked in `acquire`; returns once it is queued.
    fn waiter(ws: &WorkerSet) -> std::thread::JoinHandle<Result<usize>> {
        let before = ws.waiting();
        let inner = ws.inner.clone();
        let h = std::thread::spawn(move || inner.acquire());
        while ws.waiting() == before {
            std::thread::yield_now();
        }
        h
    }

    fn handed(ws: &WorkerSet) -> usize {
        lock(&ws.inner.ff).handed
    }

    fn double(x: u32) -> u32 {
        2 * x
    }

    #[test]
    fn a_caller_older_than_the_bound_is_handed_the_worker() {
        let ws = set(FAIR_AFTER);
        let w = ws.inner.acquire().unwrap();
        let b = waiter(&ws);
        // Sleeping makes the waiter older than the bound, whatever the machine's speed.
        std::thread::sleep(FAIR_AFTER * 5);
        ws.inner.clone().release(w);
        // Handed over inside `release` (not nudged to take it from the free list).
        assert_eq!(handed(&ws), 1);
        assert_eq!(b.join().unwrap().unwrap(), 1);
    }

    #[test]
    fn strict_fifo_hands_over_at_once() {
        let ws = set(Duration::ZERO);
        let w = ws.inner.acquire().unwrap();
        let b = waiter(&ws);
        ws.inner.clone().release(w);
        assert_eq!(handed(&ws), 1);
        assert_eq!(b.join().unwrap().unwrap(), 1);
    }

    #[test]
    fn a_young_caller_is_nudged_and_may_be_barged() {
        let ws = set(Duration::from_secs(3600));
        let w = ws.inner.acquire().unwrap();
        let b = waiter(&ws);
        ws.inner.clone().release(w);
        assert_eq!(
            handed(&ws),
            0,
            "a young caller is nudged, not handed the worker"
        );
        {
            // Either the worker waits on the free list for the nudged caller, or that
            // caller has already taken it.
            let g = lock(&ws.inner.ff);
            match (g.free.len(), g.queue.len()) {
                (1, 1) => assert!(g.nudged()),
                (0, 0) => assert!(!g.nudged()),
                other => panic!("free list and queue after release: {other:?}"),
            }
        }
        // This thread calls again at once and may take the worker back before the nudged
        // caller runs: that caller then finds nothing, sleeps again, still queued, and the
        // next release nudges it again (or finds it still nudged). Either way it ends up
        // with the worker.
        let mut after = After::default();
        let again = ws
            .inner
            .take_free(&mut lock(&ws.inner.ff), &mut after)
            .unwrap();
        after.run(&ws.inner);
        if let Some(w) = again {
            ws.inner.clone().release(w);
        }
        assert_eq!(b.join().unwrap().unwrap(), 1);
        let g = lock(&ws.inner.ff);
        assert!(g.free.is_empty() && g.queue.is_empty() && !g.nudged());
        assert_eq!(g.handed, 0);
    }

    #[test]
    fn free_workers_serve_queued_calls_before_a_nudge() {
        // A free worker beside a queued encoded call (possible once a nudged caller left
        // the front): the call gets it, and no caller behind is nudged for a worker gone.
        let ws = set(Duration::from_secs(3600));
        let job = Job::new(double, 21).unwrap();
        let r: RemoteRef<u32> = RemoteRef::new(job.slot.clone());
        let h = Arc::new(Handoff::new());
        let mut after = After::default();
        {
            let mut g = lock(&ws.inner.ff);
            g.free = [1].into();
            g.queue = [Waiter::Job(job), Waiter::Caller(h.clone())].into();
            ws.inner.dispatch(&mut g, &mut after);
            assert!(g.free.is_empty() && !g.nudged() && g.queue.len() == 1);
        }
        assert_eq!(after.jobs.len(), 1);
        assert_eq!(after.jobs[0].0, 1);
        assert!(after.wake.is_empty());
        after.run(&ws.inner);
        assert_eq!(r.fetch().unwrap(), 42);
        // The call's end frees worker 1 again: now the caller is nudged to take it.
        let t0 = Instant::now();
        while !h.is_nudged() {
            assert!(t0.elapsed() < Duration::from_secs(60), "never nudged");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lock(&ws.inner.ff).nudged());
    }

    #[test]
    fn the_last_worker_found_dead_fails_everything_waiting() {
        // Waiters beside a free worker (barging allows it) that has died: whoever finds it
        // dead fails them all, since no call will ever end to serve them.
        let ws = set(Duration::from_secs(3600));
        let job = Job::new(double, 1).unwrap();
        let r: RemoteRef<u32> = RemoteRef::new(job.slot.clone());
        let h = Arc::new(Handoff::new());
        {
            let mut g = lock(&ws.inner.ff);
            // 77 is no worker of the cluster: dead.
            g.live = vec![77];
            g.free = [77].into();
            g.queue = [Waiter::Caller(h.clone()), Waiter::Job(job)].into();
            h.set(Wake::Nudged);
        }
        assert!(matches!(ws.inner.acquire(), Err(Error::NoWorkers)));
        assert!(matches!(h.wait(), Some(Err(Error::NoWorkers))));
        assert!(matches!(r.fetch(), Err(Error::NoWorkers)));
        let g = lock(&ws.inner.ff);
        assert!(g.queue.is_empty() && g.live.is_empty() && !g.nudged());
    }
}
