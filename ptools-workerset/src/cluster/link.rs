//! One worker's link, seen from the master: sending calls, reading replies, completing
//! slots, and the reader thread. See `PROTOCOL.md` for who reads and writes when.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::{Inner, lock, outcome};
use crate::error::{Error, Result, Termination};
use crate::func::{FnRef, Status};
use crate::remote_ref::{Drive, Slot};
use crate::sys;
use crate::wire::{self, FrameReader, Link, UnixLink};

pub(super) struct Pending {
    pub(super) queue: VecDeque<Arc<Slot>>,
    /// Why the worker is gone, once it is: what every later call on it fails with.
    pub(super) dead: Option<Error>,
}

/// One worker process, seen from the master.
pub(crate) struct Remote {
    pub(super) id: usize,
    pub(super) proc: Arc<sys::Process>,
    /// The largest body a call may carry (the cluster's `max_frame_bytes`).
    pub(super) cap: usize,
    /// A protocol fault seen by a caller driving the read side, for the reader to report.
    pub(super) fault: Mutex<Option<String>>,
    pub(super) data: Arc<dyn Link>,
    pub(super) ctl: Mutex<(UnixLink, FrameReader, u64)>,
    /// The write side: held while a frame is built and written, so frames never interleave
    /// and the pending queue has the order of the wire.
    pub(super) tx: Mutex<Vec<u8>>,
    pub(super) pending: Mutex<Pending>,
    pub(super) ended: Mutex<Option<Termination>>,
    pub(super) ended_cv: Condvar,
    /// The read side. Whoever holds it reads replies and completes their slots: the
    /// reader thread, or a caller of `remotecall_fetch` waiting for its own reply (see
    /// [`Remote::drive`]).
    pub(super) rx: Mutex<FrameReader>,
    /// Callers currently driving the read side.
    pub(super) drivers: AtomicUsize,
    /// Where the reader thread sleeps while callers drive.
    pub(super) idle: Mutex<()>,
    pub(super) idle_cv: Condvar,
}

impl Remote {
    pub(super) fn submit(
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
    pub(super) fn read_loop(self: Arc<Self>, cluster: Weak<Inner>) {
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
}
