//! Completion slots and `RemoteRef`, the handle on a call's future result.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub(crate) type Hook = Box<dyn FnOnce() + Send>;

/// A successful call's encoded result.
pub(crate) enum Payload {
    /// Bytes of our own.
    Bytes(Vec<u8>),
    /// Left by a local worker in its result region, read where it lies.
    Region(crate::cluster::InRegion),
}

impl Payload {
    /// The bytes, in a buffer of our own (a result in a region is copied out once).
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Bytes(v) => v,
            Payload::Region(r) => r.into_vec(),
        }
    }
}

enum State {
    Pending,
    Ready(Result<Payload>),
    Taken,
}

struct Inner {
    state: State,
    worker: usize,
    waker: Option<Waker>,
    hook: Option<Hook>,
    sleepers: usize,
    /// The link the reply will come on, once the call is sent; dropped at completion
    /// (the link's pending queue holds this slot, so keeping it longer would be a cycle).
    driver: Option<Arc<dyn Drive>>,
}

/// A link whose replies a waiting caller can read itself (see `Remote::drive`).
pub(crate) trait Drive: Send + Sync {
    /// Reads replies until `slot` is complete or the link has ended.
    fn drive(&self, slot: &Slot);
    /// As [`drive`](Drive::drive), returning at `deadline` at the latest.
    fn drive_until(&self, slot: &Slot, deadline: Instant);
    /// As [`drive`](Drive::drive) or [`drive_until`](Drive::drive_until), for a caller
    /// already counted as a driver (a [`DriveToken`]'s holder).
    fn drive_counted(&self, slot: &Slot, deadline: Option<Instant>);
    /// A caller counted as a driver leaves without reading.
    fn leave_counted(&self);
}

/// A caller counted as a driver of a link from before its call was queued, so that the
/// link's parked reader thread was not woken for the call: the holder reads the reply
/// itself with [`drive`](DriveToken::drive). Dropped unused, it gives the read side back
/// (the reader thread is woken if replies are still to come), so an early return never
/// leaves a link unread.
pub(crate) struct DriveToken(Option<Arc<dyn Drive>>);

impl DriveToken {
    pub(crate) fn new(link: Arc<dyn Drive>) -> DriveToken {
        DriveToken(Some(link))
    }

    /// Reads replies until `slot` is complete, the link ends or `deadline` passes; the
    /// read side is then given back.
    pub(crate) fn drive(mut self, slot: &Slot, deadline: Option<Instant>) {
        if let Some(d) = self.0.take() {
            d.drive_counted(slot, deadline);
        }
    }
}

impl Drop for DriveToken {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            d.leave_counted();
        }
    }
}

impl fmt::Debug for DriveToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DriveToken")
    }
}

/// Where a call's outcome lands: completed once, by the reader of the worker's link (or by
/// whoever learns that the call cannot run).
pub(crate) struct Slot {
    inner: Mutex<Inner>,
    cv: Condvar,
    /// Set (after the state) on completion: `is_ready` without the lock.
    done: AtomicBool,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("ready", &self.is_ready())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl Slot {
    /// A pending slot; `hook` runs once, right after completion, on the completing thread.
    pub(crate) fn new(worker: usize, hook: Option<Hook>) -> Arc<Slot> {
        Arc::new(Slot {
            inner: Mutex::new(Inner {
                state: State::Pending,
                worker,
                waker: None,
                hook,
                sleepers: 0,
                driver: None,
            }),
            cv: Condvar::new(),
            done: AtomicBool::new(false),
        })
    }

    /// Adds a hook to run after completion (after any hook set before). The slot must
    /// still be pending: hooks are added before the call is submitted.
    pub(crate) fn add_hook(&self, hook: Hook) {
        let mut g = lock(&self.inner);
        debug_assert!(matches!(g.state, State::Pending));
        g.hook = Some(match g.hook.take() {
            None => hook,
            Some(first) => Box::new(move || {
                first();
                hook();
            }),
        });
    }

    pub(crate) fn set_worker(&self, id: usize) {
        lock(&self.inner).worker = id;
    }

    /// Records the link the reply comes on (before the call is written), so that a caller
    /// who then waits reads the reply itself. A caller already asleep (a first-free call
    /// that waited for a worker) is not woken for this: measured with 8 callers on 2
    /// workers, the extra wake-ups and contention cost a third of the throughput.
    pub(crate) fn set_driver(&self, id: usize, d: Arc<dyn Drive>) {
        let mut g = lock(&self.inner);
        g.worker = id;
        if matches!(g.state, State::Pending) {
            g.driver = Some(d);
        }
    }

    pub(crate) fn worker(&self) -> usize {
        lock(&self.inner).worker
    }

    /// Completes the slot; later completions are ignored.
    pub(crate) fn complete(&self, r: Result<Vec<u8>>) {
        self.complete_payload(r.map(Payload::Bytes));
    }

    /// Completes the slot with a payload; later completions are ignored (and drop it).
    pub(crate) fn complete_payload(&self, r: Result<Payload>) {
        let mut g = lock(&self.inner);
        if !matches!(g.state, State::Pending) {
            return;
        }
        g.state = State::Ready(r);
        self.done.store(true, Ordering::Release);
        let waker = g.waker.take();
        let hook = g.hook.take();
        let driver = g.driver.take();
        let sleepers = g.sleepers;
        drop(g);
        if sleepers > 0 {
            self.cv.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
        if let Some(h) = hook {
            h();
        }
        drop(driver);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits until completed, reading the reply on this thread once the call is on a link.
    pub(crate) fn wait(&self) {
        self.wait_until(None);
    }

    /// Reads replies on this thread until completed or `deadline`, when the call is on a
    /// link; returns at once otherwise. True when completed.
    pub(crate) fn drive_until(&self, deadline: Instant) -> bool {
        let driver = {
            let g = lock(&self.inner);
            match g.state {
                State::Pending => g.driver.clone(),
                _ => return true,
            }
        };
        if let Some(d) = driver {
            d.drive_until(self, deadline);
        }
        self.is_ready()
    }

    /// Waits until completed or the deadline passes; true when completed. Without a
    /// deadline, the waiter reads the reply itself once the call is on a link.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        let mut g = lock(&self.inner);
        while matches!(g.state, State::Pending) {
            if let (None, Some(d)) = (deadline, g.driver.clone()) {
                drop(g);
                d.drive(self);
                g = lock(&self.inner);
                if !matches!(g.state, State::Pending) {
                    break;
                }
                // The link ended: its reader thread fails the slot. Sleep below.
                g.driver = None;
            }
            g.sleepers += 1;
            match deadline {
                None => self.cv.wait(&mut g),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        g.sleepers -= 1;
                        return false;
                    }
                    self.cv.wait_for(&mut g, left);
                }
            }
            g.sleepers -= 1;
        }
        true
    }

    /// The outcome, once; `None` while pending.
    fn take(&self) -> Option<Result<Payload>> {
        let mut g = lock(&self.inner);
        match std::mem::replace(&mut g.state, State::Taken) {
            State::Pending => {
                g.state = State::Pending;
                None
            }
            State::Ready(r) => Some(r),
            State::Taken => Some(Err(Error::AlreadyFetched)),
        }
    }

    /// The outcome of a completed slot (pending counts as already taken).
    pub(crate) fn take_done(&self) -> Result<Vec<u8>> {
        self.take()
            .unwrap_or(Err(Error::AlreadyFetched))
            .map(Payload::into_vec)
    }

    /// The error, if the call failed, without taking anything.
    fn peek_error(&self) -> Option<Error> {
        match &lock(&self.inner).state {
            State::Ready(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn poll_take(&self, cx: &mut Context<'_>) -> Option<Result<Payload>> {
        let mut g = lock(&self.inner);
        if matches!(g.state, State::Pending) {
            g.waker = Some(cx.waker().clone());
            return None;
        }
        drop(g);
        self.take()
    }
}

/// A handle on the result of a [`remotecall`](crate::Cluster::remotecall): Julia's `Future`.
///
/// The result is taken by [`fetch`](Self::fetch) (or `.await`, or a successful
/// [`try_fetch`](Self::try_fetch) / [`fetch_timeout`](Self::fetch_timeout)); a second take
/// gives [`Error::AlreadyFetched`]. Dropping a `RemoteRef` does not cancel the call.
#[must_use = "a RemoteRef is the only way to the call's result and error; dropping it does not cancel the call"]
pub struct RemoteRef<R> {
    slot: Arc<Slot>,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for RemoteRef<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRef")
            .field("worker", &self.slot.worker())
            .field("ready", &self.slot.is_ready())
            .finish()
    }
}

fn decode<R: DeserializeOwned>(r: Result<Payload>) -> Result<R> {
    let r = match r? {
        Payload::Bytes(bytes) => {
            let r = crate::codec::decode(&bytes);
            crate::wire::give_back(bytes);
            r
        }
        // Straight from the region: one copy, into the value.
        Payload::Region(r) => r.decode(),
    };
    r.map_err(|e| Error::Decode(format!("result: {e}")))
}

impl<R: DeserializeOwned> RemoteRef<R> {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        RemoteRef {
            slot,
            _r: PhantomData,
        }
    }

    /// The worker the call runs on (0 while a first-free `WorkerSet`
    /// has not picked one yet).
    pub fn worker(&self) -> usize {
        self.slot.worker()
    }

    /// True once the call has finished (or failed).
    pub fn is_ready(&self) -> bool {
        self.slot.is_ready()
    }

    /// Blocks until the call finishes and returns its result.
    ///
    /// # Errors
    ///
    /// [`Error::RemotePanic`], [`Error::WorkerDied`], [`Error::Decode`] (argument or
    /// result), [`Error::Encode`] (result), [`Error::AlreadyFetched`].
    pub fn fetch(self) -> Result<R> {
        self.slot.wait_until(None);
        decode(self.slot.take().unwrap_or(Err(Error::AlreadyFetched)))
    }

    /// Blocks until the call finishes; the result stays for a later fetch.
    ///
    /// # Errors
    ///
    /// The call's failure, as for [`fetch`](Self::fetch) (but not a result that will fail to
    /// decode).
    pub fn wait(&self) -> Result<()> {
        self.slot.wait_until(None);
        self.slot.peek_error().map_or(Ok(()), Err)
    }

    /// Takes the result if the call has finished; `None` while it runs.
    pub fn try_fetch(&self) -> Option<Result<R>> {
        self.slot.take().map(decode)
    }

    /// Like [`fetch`](Self::fetch), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the call is still running (the `RemoteRef` stays usable), or
    /// the errors of [`fetch`](Self::fetch).
    pub fn fetch_timeout(&self, timeout: Duration) -> Result<R> {
        if !self.slot.wait_until(Some(Instant::now() + timeout)) {
            return Err(Error::Timeout);
        }
        decode(self.slot.take().unwrap_or(Err(Error::AlreadyFetched)))
    }
}

impl<R: DeserializeOwned> Future for RemoteRef<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.slot.poll_take(cx) {
            Some(r) => Poll::Ready(decode(r)),
            None => Poll::Pending,
        }
    }
}
