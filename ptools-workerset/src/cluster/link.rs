//! One worker's link, seen from the master: sending calls, reading replies, completing
//! slots, and the reader thread. See `PROTOCOL.md` for who reads and writes when.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Inner, lock, outcome};
use crate::codec::{EncodeArg, Out};
use crate::error::{Error, Result, Termination};
use crate::func::{FnRef, Status};
use crate::remote_ref::{Drive, Payload, Slot};
use crate::sys;
use crate::wire::{self, FrameReader, Link};

pub(super) struct Pending {
    pub(super) queue: VecDeque<Arc<Slot>>,
    /// Calls made on the read side (by a completion hook), waiting for the sender thread
    /// to write them: the read side never writes (see `PROTOCOL.md`).
    pub(super) outbox: VecDeque<(Vec<u8>, Arc<Slot>)>,
    /// Why the worker is gone, once it is: what every later call on it fails with.
    pub(super) dead: Option<Error>,
}

/// What stands for a worker's process on the master: the process itself (a local
/// worker) or its TCP peer (a worker on another host, or started by a launcher).
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Local(Arc<sys::Process>),
    Tcp(Arc<crate::net::TcpPeer>),
}

impl Peer {
    /// The worker's process id (on its own host; for messages only).
    pub(crate) fn pid(&self) -> i32 {
        match self {
            Peer::Local(p) => p.pid(),
            Peer::Tcp(t) => t.pid,
        }
    }

    /// Ends the worker: `SIGKILL` to a local one, both connections closed for a TCP one.
    pub(crate) fn kill(&self) {
        match self {
            Peer::Local(p) => p.kill(),
            Peer::Tcp(t) => t.kill(),
        }
    }

    /// Closes a TCP worker's connections (it exits at their end); nothing for a local one,
    /// whose link ends with its process (its socket pair, or its ring, which the death
    /// watcher shuts down).
    pub(crate) fn kill_links(&self) {
        if let Peer::Tcp(t) = self {
            t.kill();
        }
    }

    /// Reaps a local worker (waits up to `grace`, then kills it); for a TCP worker, reaps
    /// its own launcher process and says how the link ended.
    pub(crate) fn reap(&self, grace: Duration) -> Termination {
        match self {
            Peer::Local(p) => p.reap(grace),
            Peer::Tcp(t) => t.reap(grace),
        }
    }

    /// The local process whose end is this worker's end: the worker itself, or the
    /// launcher that brought it.
    pub(crate) fn watched(&self) -> Option<Arc<sys::Process>> {
        match self {
            Peer::Local(p) => Some(p.clone()),
            Peer::Tcp(t) => t.launcher.clone(),
        }
    }
}

/// A local worker's two shared-memory regions (see `PROTOCOL.md`, "Large payloads").
pub(crate) struct Zc {
    /// The argument region (the master writes, the worker reads) and the number of the last
    /// call that referenced it: free again once that call's reply is in. Under `tx`.
    arg: Mutex<(sys::Region, Option<u64>)>,
    /// The result region and its count of results read: shared with the results left
    /// there until they are read ([`InRegion`]).
    res: Arc<Results>,
    /// Calls written to the data link (counted under `tx`).
    sent: AtomicU64,
    /// Replies read from it.
    replied: AtomicU64,
}

/// The master's side of a result region.
struct Results {
    /// The region (the worker writes, the master reads). Locked to map it further (by
    /// whoever holds the read side) and to read a result out of it.
    region: Mutex<sys::Region>,
    /// `REPLY_ZC` results read out of the region (decoded, copied out, or dropped
    /// unread): told to the worker in every call, which then may write the region again.
    acked: AtomicU64,
}

impl Zc {
    /// The master's side of two regions made for a worker (and passed to it at its start).
    pub(crate) fn new(arg: sys::Region, res: sys::Region) -> Zc {
        Zc {
            arg: Mutex::new((arg, None)),
            res: Arc::new(Results {
                region: Mutex::new(res),
                acked: AtomicU64::new(0),
            }),
            sent: AtomicU64::new(0),
            replied: AtomicU64::new(0),
        }
    }
}

/// A successful result a local worker left in its result region, checked to lie inside
/// it, not read yet. Whoever takes the call's outcome reads it where it lies: decodes it
/// straight from the mapping ([`InRegion::decode`], what `RemoteRef::fetch` does) or
/// copies it out ([`InRegion::into_vec`]); either, or dropping it unread, acknowledges it
/// (the region is the worker's again from the next call on). The worker does not write
/// the region before that: it leaves later results on the socket meanwhile.
pub(crate) struct InRegion {
    res: Arc<Results>,
    off: usize,
    len: usize,
}

impl InRegion {
    /// Decodes the result straight from the region, then acknowledges it; a
    /// [`SharedSlice`](crate::SharedSlice) in it is a view of the region instead, which
    /// holds the acknowledgement until the last such view is dropped (see
    /// `codec/shared.rs`).
    ///
    /// Why decoding from memory the worker can write is sound: see `codec::decode_shared`
    /// (every byte copied out once, into the value or a local, and nothing decided on the
    /// shared bytes). A worker writing its region while it is read (it should not: it was
    /// not acknowledged) can make the value wrong or the decoding fail, nothing more.
    pub(crate) fn decode<R: serde::de::DeserializeOwned>(self) -> std::result::Result<R, String> {
        let (res, off, len) = (self.res.clone(), self.off, self.len);
        let region = lock(&res.region);
        // The mapping only grows (`Region::cover` maps further, never less), so the
        // range checked when the reply came still lies inside it.
        let p = region.shared(off, len);
        // Views hold the mapping and this result: acknowledged when the last goes (at
        // the end of the decoding when there is none).
        let home = region.home().map(|h| h.with(Arc::new(self)));
        // SAFETY: `[p, p + len)` lies inside the mapping (checked by `shared`), which
        // stays mapped while `region` is locked (only `&mut` methods remap or unmap it),
        // and is backed by the file (sealed against shrinking), so reading it cannot fault.
        unsafe { crate::codec::decode_shared(p, len, home) }
    }

    /// Copies the result out once into a buffer of our own, then acknowledges it.
    pub(crate) fn into_vec(self) -> Vec<u8> {
        let mut out = wire::result_buf(self.len);
        lock(&self.res.region).copy_out(self.off, self.len, &mut out);
        out
    }
}

impl Drop for InRegion {
    fn drop(&mut self) {
        self.res.acked.fetch_add(1, Ordering::Release);
    }
}

/// One worker process, seen from the master.
pub(crate) struct Remote {
    pub(super) id: usize,
    pub(super) proc: Peer,
    /// The largest body a call may carry (the cluster's `max_frame_bytes`).
    pub(super) cap: usize,
    /// A protocol fault seen by a caller driving the read side, for the reader to report.
    pub(super) fault: Mutex<Option<String>>,
    /// Sticky: someone saw the link end (a driver read the end or a fault, or the death
    /// watcher fired). The reader then reads whatever `drivers` says, and a leaving
    /// driver always wakes it, so an end seen once is never lost.
    pub(super) ended_seen: std::sync::atomic::AtomicBool,
    pub(super) data: Arc<dyn Link>,
    pub(super) ctl: Mutex<(Arc<dyn Link>, FrameReader, u64)>,
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
    /// Callers currently driving the read side (or about to: see
    /// [`Remote::call_and_drive`]).
    pub(super) drivers: AtomicUsize,
    /// Where the reader thread sleeps while callers drive; woken by [`Remote::kick`].
    pub(super) idle: Mutex<Park>,
    pub(super) idle_cv: Condvar,
    /// Wakes the sender thread when the outbox gets a frame or the worker is gone.
    pub(super) out_cv: Condvar,
    /// The shared-memory path for large payloads: local workers only.
    pub(super) zc: Option<Zc>,
}

/// The reader thread's parking state, under `Remote::idle`.
#[derive(Default)]
pub(super) struct Park {
    /// The reader sleeps on `idle_cv`.
    parked: bool,
    /// Set by [`Remote::kick`]: the reader must look again.
    kicked: bool,
}

/// A belt only: every wake-up the reader needs is notified (see `PROTOCOL.md`); this
/// bounds the cost of a bug in that reasoning to a delay instead of a hang.
const PARK_BELT: Duration = Duration::from_secs(1);

thread_local! {
    /// True on a thread that holds some link's read side (a reader thread, or a caller
    /// inside [`Drive::drive`]): a call made here, by a completion hook, is queued for the
    /// link's sender thread instead of written, so a read side never blocks in a write.
    static READ_SIDE: Cell<bool> = const { Cell::new(false) };
}

/// True on a thread that holds some link's read side: a call made here is queued for
/// that link's sender thread instead of written.
pub(crate) fn on_read_side() -> bool {
    READ_SIDE.get()
}

impl Remote {
    /// Sends a call; the slot gets the outcome. On a read side (a completion hook) the
    /// frame is queued for the sender thread instead of written.
    pub(super) fn submit(
        &self,
        f: FnRef,
        encode: &mut EncodeArg<'_>,
        slot: Arc<Slot>,
    ) -> Result<()> {
        self.submit_to_drive(f, encode, slot, false).map(drop)
    }

    /// [`submit`](Self::submit); with `drive` (the caller reads its own reply next), the
    /// caller is counted in `drivers` before its call is queued when the write cannot
    /// block, so that the parked reader thread is not woken for the call. True when it was
    /// counted so.
    ///
    /// A write cannot block when nothing is pending on the link and the frame is small:
    /// every earlier call has been answered and its reply read, so the worker is idle and
    /// its link empty, and a frame of `ZC_THRESHOLD` or less fits in a socket's buffer or
    /// the ring. Otherwise (the worker may be blocked writing replies that only the reader
    /// would read) the caller counts itself only after the write.
    pub(super) fn submit_to_drive(
        &self,
        f: FnRef,
        encode: &mut EncodeArg<'_>,
        slot: Arc<Slot>,
        drive: bool,
    ) -> Result<bool> {
        if READ_SIDE.get() {
            return self.submit_deferred(f, encode, slot).map(|()| false);
        }
        let mut tx = lock(&self.tx);
        let buf = std::mem::take(&mut *tx);
        let buf = self.frame(buf, f, encode, true)?;
        let (kick, counted) = {
            let mut p = lock(&self.pending);
            if let Some(why) = p.dead.clone() {
                drop(p);
                *tx = buf;
                drop(tx);
                slot.complete(Err(why));
                return Ok(false);
            }
            let counted = drive
                && p.queue.is_empty()
                && p.outbox.is_empty()
                && buf.len() <= wire::ZC_THRESHOLD;
            if counted {
                // Under `pending`, like the read below: a leaving driver then sees a
                // driver still there, and nobody kicks the reader for this call.
                self.drivers.fetch_add(1, Ordering::SeqCst);
            }
            p.queue.push_back(slot);
            // Read under `pending`, the lock under which a leaving driver looks at the
            // queue: either it sees this call, or this sees it gone.
            (self.drivers.load(Ordering::SeqCst) == 0, counted)
        };
        if kick {
            // Nobody drives: the reader must read the reply.
            self.kick();
        }
        // A failed write means the worker is gone (its reader sees the end of the stream,
        // or the death watcher shuts the link, and fails the slot just queued with the
        // exit status) or broke the link (see `write`).
        self.write(&buf);
        self.count_sent();
        if buf.capacity() <= wire::KEEP_BUF {
            *tx = buf;
        }
        Ok(counted)
    }

    /// Writes a frame (under `tx`). A write that finds the link broken by the worker (a
    /// shared-memory ring whose read position the worker forged) is a protocol fault,
    /// reported by the reader like any other; any other failure means the worker is gone.
    fn write(&self, buf: &[u8]) {
        if let Err(e) = self.data.send_all(buf)
            && e.kind() == std::io::ErrorKind::InvalidData
        {
            self.fault(e.to_string());
            self.kick();
        }
    }

    /// Counts a call written (under `tx`), for the argument region's bookkeeping.
    fn count_sent(&self) {
        if let Some(z) = &self.zc {
            z.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The frame of a call, built in `buf`. With `zc` (the caller holds `tx` and writes
    /// the frame next), a large argument goes to the argument region when it is free.
    fn frame(
        &self,
        mut buf: Vec<u8>,
        f: FnRef,
        encode: &mut EncodeArg<'_>,
        zc: bool,
    ) -> Result<Vec<u8>> {
        wire::begin(&mut buf, wire::CALL);
        buf.extend_from_slice(&f.f_off.to_le_bytes());
        buf.extend_from_slice(&f.tramp_off.to_le_bytes());
        let acked = self
            .zc
            .as_ref()
            .map_or(0, |z| z.res.acked.load(Ordering::Acquire));
        buf.extend_from_slice(&acked.to_le_bytes());
        // The body: kind, two offsets, `acked`, the argument.
        const HEAD: usize = wire::CALL_HEAD;
        // With `zc`, an argument of `ZC_THRESHOLD` bytes or more is encoded straight into
        // the argument region (one copy, by the codec) when the region is free: the reply
        // to the last call that referenced it is in.
        let mut arg = self.zc.as_ref().filter(|_| zc).map(|z| (lock(&z.arg), z));
        let region = arg.as_mut().and_then(|(g, z)| {
            let (region, last) = &mut **g;
            let free = last.is_none_or(|k| z.replied.load(Ordering::Acquire) > k);
            free.then_some(region)
        });
        let mut out = match region {
            Some(r) => Out::with_region(buf, r, wire::ZC_THRESHOLD, self.cap.saturating_sub(HEAD)),
            None => Out::new(buf),
        };
        let encoded = encode(&mut out);
        let len = out.payload_len();
        let (mut buf, spilled) = out.finish();
        encoded.map_err(|e| Error::Encode(format!("argument: {e}")))?;
        if HEAD + len > self.cap {
            return Err(Error::ArgumentTooLarge {
                len: len as u64,
                cap: (self.cap - HEAD) as u64,
            });
        }
        if let (Some(n), Some((g, z))) = (spilled, arg.as_mut()) {
            // The argument is in the region, from offset 0 (a region that could not grow
            // left it in `buf`, for the socket).
            g.1 = Some(z.sent.load(Ordering::Relaxed));
            buf[4] = wire::CALL_ZC;
            buf.extend_from_slice(&0u64.to_le_bytes());
            buf.extend_from_slice(&(n as u64).to_le_bytes());
        }
        drop(arg);
        wire::finish(&mut buf);
        Ok(buf)
    }

    /// A call made on a read side: queued for the sender thread, which writes it.
    fn submit_deferred(&self, f: FnRef, encode: &mut EncodeArg<'_>, slot: Arc<Slot>) -> Result<()> {
        // Not under `tx`: the argument stays on the socket (the region's bookkeeping
        // counts calls in the order of the wire, which the sender thread decides).
        let buf = self.frame(Vec::new(), f, encode, false)?;
        let mut p = lock(&self.pending);
        if let Some(why) = p.dead.clone() {
            drop(p);
            slot.complete(Err(why));
            return Ok(());
        }
        p.outbox.push_back((buf, slot));
        drop(p);
        self.out_cv.notify_one();
        Ok(())
    }

    /// The sender thread: writes the calls queued on read sides, in order, until the
    /// worker is gone. It holds the write side like any caller, never the read side, so a
    /// write blocked on a full link never stops replies from being read.
    pub(super) fn send_loop(self: Arc<Self>) {
        loop {
            {
                let mut p = lock(&self.pending);
                self.out_cv
                    .wait_while(&mut p, |p| p.outbox.is_empty() && p.dead.is_none());
                if p.dead.is_some() {
                    // The reader failed what the outbox held when it set `dead`.
                    return;
                }
            }
            let tx = lock(&self.tx);
            let (buf, kick) = {
                let mut p = lock(&self.pending);
                let Some((buf, slot)) = p.outbox.pop_front() else {
                    continue;
                };
                if let Some(why) = p.dead.clone() {
                    drop(p);
                    slot.complete(Err(why));
                    continue;
                }
                p.queue.push_back(slot);
                (buf, self.drivers.load(Ordering::SeqCst) == 0)
            };
            if kick {
                self.kick();
            }
            self.write(&buf);
            self.count_sent();
            drop(tx);
        }
    }

    /// Wakes the reader thread if it is parked, so it looks at the link again.
    pub(super) fn kick(&self) {
        let mut g = lock(&self.idle);
        // Recorded even when the reader is not parked: it then does not park.
        g.kicked = true;
        if g.parked {
            self.idle_cv.notify_one();
        }
    }

    /// Marks the link ended (see `ended_seen`) and wakes the reader.
    pub(super) fn end_seen(&self) {
        self.ended_seen.store(true, Ordering::SeqCst);
        self.kick();
    }

    /// True once a protocol fault is recorded: no later frame may complete a call.
    fn faulted(&self) -> bool {
        self.ended_seen.load(Ordering::SeqCst) && lock(&self.fault).is_some()
    }

    /// Completes the oldest pending slot with a reply; the cause on a protocol error.
    fn dispatch(&self, body: &[u8]) -> std::result::Result<(), String> {
        if body[0] == wire::REPLY_ZC {
            return self.dispatch_zc(body);
        }
        let Some(status) = Status::from_u8(body[0]) else {
            return Err(format!("reply of unknown kind {}", body[0]));
        };
        let Some(slot) = lock(&self.pending).queue.pop_front() else {
            return Err("reply to no call".into());
        };
        if let Some(z) = &self.zc {
            z.replied.fetch_add(1, Ordering::Release);
        }
        slot.complete(outcome(self.id, status, &body[1..]));
        Ok(())
    }

    /// A result left in the result region: checked against the region (and mapped that
    /// far), then handed to the slot where it lies (see [`InRegion`]).
    fn dispatch_zc(&self, body: &[u8]) -> std::result::Result<(), String> {
        let Some(z) = &self.zc else {
            return Err("shared-memory reply on a link without regions".into());
        };
        let (Some(off), Some(len), 17) = (wire::u64_at(body, 1), wire::u64_at(body, 9), body.len())
        else {
            return Err("malformed shared-memory reply".into());
        };
        // Checked before anything is allocated: a forged length costs nothing.
        lock(&z.res.region).cover(off, len, self.cap)?;
        let Some(slot) = lock(&self.pending).queue.pop_front() else {
            return Err("reply to no call".into());
        };
        z.replied.fetch_add(1, Ordering::Release);
        // `cover` checked that both fit in `usize` and lie in the region.
        slot.complete_payload(Ok(Payload::Region(InRegion {
            res: z.res.clone(),
            off: off as usize,
            len: len as usize,
        })));
        Ok(())
    }

    /// Records a protocol fault and wakes the reader thread, which reports it.
    fn fault(&self, cause: String) {
        lock(&self.fault).get_or_insert(cause);
        self.ended_seen.store(true, Ordering::SeqCst);
        self.data.shutdown();
    }
}

impl Drive for Remote {
    /// Reads replies on the caller's thread until `slot` is complete (or the link ends).
    ///
    /// This is the fast path of waiting (and of `remotecall_fetch`, through
    /// [`Remote::call_and_drive`]): the reply wakes the caller directly,
    /// as in a plain socket ping-pong, instead of waking the reader thread which would then
    /// wake the caller (two wake-ups per reply on a busy machine cost about 10 us). Replies
    /// to other calls that arrive first are completed here as well, in order.
    fn drive(&self, slot: &Slot) {
        self.drivers.fetch_add(1, Ordering::SeqCst);
        self.drive_registered(slot, None);
    }

    /// As `drive`, but gives the read side back to the reader thread at `deadline`.
    fn drive_until(&self, slot: &Slot, deadline: Instant) {
        self.drivers.fetch_add(1, Ordering::SeqCst);
        self.drive_registered(slot, Some(deadline));
    }

    fn drive_counted(&self, slot: &Slot, deadline: Option<Instant>) {
        self.drive_registered(slot, deadline);
    }

    fn leave_counted(&self) {
        self.leave(false);
    }
}

impl Remote {
    /// Calls `f` and reads replies on this thread until its slot is complete: the
    /// caller counts as a driver from before the call is queued, so the parked reader
    /// thread is not woken for it (the `remotecall_fetch` fast path).
    pub(super) fn call_and_drive(
        &self,
        f: FnRef,
        encode: &mut EncodeArg<'_>,
        slot: &Arc<Slot>,
    ) -> Result<()> {
        if READ_SIDE.get() {
            // A hook cannot drive (it holds a read side): queue it, the caller waits.
            return self.submit(f, encode, slot.clone());
        }
        // Counted as a driver before the call is queued only when its write cannot block
        // (see `submit_to_drive`); otherwise once it is written: while a large call's
        // write blocks (the worker busy writing a large reply), the reader must go on
        // reading.
        if !self.submit_to_drive(f, encode, slot.clone(), true)? {
            self.drivers.fetch_add(1, Ordering::SeqCst);
        }
        self.drive_registered(slot, None);
        Ok(())
    }

    /// `drive` for a caller already counted in `drivers`; leaves when done (or at
    /// `deadline`: a frame half read then stays buffered for the next reader).
    fn drive_registered(&self, slot: &Slot, deadline: Option<Instant>) {
        let mut ended = false;
        {
            let mut rx = lock(&self.rx);
            // Restored after: a hook on another read side may wait here for its own call.
            let outer = READ_SIDE.replace(true);
            // Until this call's reply is in, then whatever whole frames are buffered
            // behind it (the reader waits on the socket, not on the buffer).
            while !slot.is_ready() || rx.has_frame() {
                if self.faulted() {
                    ended = true;
                    break;
                }
                let r = match deadline {
                    None => rx.next(&*self.data),
                    Some(d) => rx.next_before(&*self.data, d),
                };
                let cause = match r {
                    Ok(Some(body)) => match self.dispatch(body) {
                        Ok(()) => continue,
                        Err(c) => Some(c),
                    },
                    // The deadline passed: the reader thread takes over (see `leave`).
                    Err(e) if deadline.is_some() && e.kind() == std::io::ErrorKind::TimedOut => {
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Some(e.to_string()),
                    Ok(None) | Err(_) => None,
                };
                if let Some(c) = cause {
                    self.fault(c);
                }
                ended = true;
                break;
            }
            READ_SIDE.set(outer);
        }
        self.leave(ended);
    }

    /// A driver is done with the read side: the last one hands it back to the reader
    /// thread when there is something to read (replies still to come, or the end).
    fn leave(&self, ended: bool) {
        if ended {
            self.ended_seen.store(true, Ordering::SeqCst);
        }
        let left = self.drivers.fetch_sub(1, Ordering::SeqCst) - 1;
        // `pending` is read after the decrement and under its lock: a call queued
        // meanwhile either shows here or saw `drivers == 0` and kicked (see `submit`).
        // An end seen by any driver always wakes the reader, whoever leaves last.
        if self.ended_seen.load(Ordering::SeqCst)
            || (left == 0 && !lock(&self.pending).queue.is_empty())
        {
            self.kick();
        }
    }
}

impl Remote {
    /// The reader thread: reads replies whenever no caller drives the read side, until
    /// the worker is gone; then reaps it and fails what was pending.
    pub(super) fn read_loop(self: Arc<Self>, cluster: Weak<Inner>) {
        // This thread never writes the data link: calls made by hooks here are queued.
        READ_SIDE.set(true);
        'outer: loop {
            {
                let mut g = lock(&self.idle);
                if self.drivers.load(Ordering::SeqCst) > 0
                    && !self.ended_seen.load(Ordering::SeqCst)
                    && !g.kicked
                {
                    // Parked until kicked: by the last driver when replies are still to
                    // come or the link ended, by a call queued with no driver, or by the
                    // death watcher. It stays parked between the calls of a caller that
                    // drives its own replies, so that fast path wakes nobody.
                    g.parked = true;
                    self.idle_cv
                        .wait_while_for(&mut g, |p| !p.kicked, PARK_BELT);
                    g.parked = false;
                    g.kicked = false;
                    continue;
                }
                g.kicked = false;
            }
            // Frames a driver left buffered are read without waiting on the socket.
            let buffered = lock(&self.rx).has_frame();
            if !buffered {
                // Quietly: the reader is the fallback, and must not spin a core away
                // from the workers (nor count as the link's spins: see `sys/ring.rs`).
                match self.data.wait_readable_quietly(Duration::from_secs(3600)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => break,
                }
            }
            if self.drivers.load(Ordering::SeqCst) > 0 && !self.ended_seen.load(Ordering::SeqCst) {
                continue;
            }
            let mut rx = lock(&self.rx);
            // A caller may have taken what woke us: read only what is there, so the read
            // side is never held in a blocking read that a caller could do itself.
            while rx.has_frame() || self.data.wait_readable(Duration::ZERO).unwrap_or(true) {
                if self.faulted() {
                    break 'outer;
                }
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
        self.proc.kill_links();
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
        let failed: Vec<Arc<Slot>> = {
            let mut p = lock(&self.pending);
            p.dead = Some(why.clone());
            let mut v: Vec<_> = std::mem::take(&mut p.queue).into();
            v.extend(std::mem::take(&mut p.outbox).into_iter().map(|(_, s)| s));
            v
        };
        self.out_cv.notify_all();
        let cluster = cluster.upgrade();
        if let Some(c) = &cluster {
            c.died(self.id, why.clone());
        }
        *lock(&self.ended) = Some(t);
        self.ended_cv.notify_all();
        for s in failed {
            s.complete(Err(why.clone()));
        }
        if let Some(c) = cluster {
            // Once per worker (this loop ends once), after its calls have failed.
            c.exited(self.id, &why);
        }
    }
}
