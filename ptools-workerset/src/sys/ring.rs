//! The shared-memory ring: a local worker's data link without the kernel in the path (see
//! `cluster/PROTOCOL.md`, "The ring").
//!
//! One `memfd` of fixed size holds two byte rings, one per direction, each with its own
//! control block. A [`RingLink`] is a [`Link`]: the same byte stream of frames as the
//! socket it replaces, so framing, the order of replies and every check on a frame stay as
//! they are. What changes is the wait: a reader that finds its ring empty spins for a short
//! while (the reply to a short call usually arrives within it, and neither process then
//! enters the kernel at all), then sleeps on a futex in the shared page, which the writer
//! wakes only when a reader said it sleeps. An idle link therefore costs no CPU, and a busy
//! one no system call.
//!
//! ## Trusting no byte
//!
//! The worker can write anything anywhere in the ring's pages, at any time. The master's
//! side therefore keeps its own positions (what it wrote, what it read) in its own memory
//! and reads only the peer's one position from the shared page: the worker's write position
//! must lie at most one ring ahead of what the master has read, the worker's read position
//! at most one ring behind what the master wrote, or the link is faulted
//! (`ErrorKind::InvalidData`, which the master turns into `Error::Protocol`). Bytes are
//! copied out of the shared pages through raw pointers into the reader's own buffer, never
//! borrowed, so bytes changing underneath can only make the copy wrong, and the frame
//! reader checks those like any bytes from a socket. A length in the stream decides no
//! allocation (the frame reader's rule), and the ring's size is fixed and sealed
//! (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): neither side can make the other's mapping
//! fault.
//!
//! ## Ends
//!
//! The ring has no end of stream of its own: a dead peer just stops writing. The master
//! sees a worker's death through its pidfd (the death watcher), which calls
//! [`Link::shutdown`]: that notes the worker's write position, marks this side closed, in
//! this process's memory, and wakes every waiter of this process; a reader then drains what
//! the worker wrote up to that position and reads the end (a helper the worker forked,
//! still mapping the ring, cannot keep the stream going). Each futex sleep is bounded, so
//! a wake-up lost to such a helper writing the futex word back costs a delay, not a hang. A worker sees its master's end on its control socket (and by
//! `PR_SET_PDEATHSIG`), as before.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use parking_lot::Mutex;

use crate::wire::Link;

/// Bytes per direction: a power of two. Payloads of `ZC_THRESHOLD` (64 KiB) and more take
/// the regions, so the ring holds several frames of the largest kind it usually carries;
/// a larger frame still passes, in pieces, as through a socket.
pub(crate) const RING_BYTES: usize = 256 * 1024;
/// How long a wait spins without giving its core away, before it spins by yielding.
const BUSY_SPIN: Duration = Duration::from_micros(4);
/// Spins in a row that found nothing, after which a link spins on one wait in [`RETRY`]
/// only.
const MISSES: u32 = 8;
const RETRY: u32 = 16;
/// The longest one futex sleep lasts before the sleeper looks at its own flags again: a
/// belt against a wake-up lost to a peer that wrote the futex word back.
const MAX_SLEEP: Duration = Duration::from_millis(250);
/// The control page: one block per direction.
const CONTROL: usize = 4096;
/// The whole file: the control page and both rings.
const FILE_BYTES: usize = CONTROL + 2 * RING_BYTES;

/// One direction's control block, in the shared page. Each field sits in its own cache
/// line, so the writer's and the reader's stores do not contend.
#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct Block {
    /// Bytes written so far (the writer's position; only it stores).
    head: Line<AtomicU64>,
    /// Bytes read so far (the reader's position; only it stores).
    tail: Line<AtomicU64>,
    /// The futex a reader waiting for data sleeps on, and how many do.
    data: Line<Wait>,
    /// The futex a writer waiting for room sleeps on, and how many do.
    room: Line<Wait>,
}

#[repr(C)]
struct Wait {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

const _: () = assert!(2 * std::mem::size_of::<Block>() <= CONTROL);

/// Which direction a side writes: the master writes `DOWN` and reads `UP`.
const DOWN: usize = 0;
const UP: usize = 1;

/// The mapped file: its descriptor (to pass to the worker, until the link is made) and
/// the mapping.
#[derive(Debug)]
pub(crate) struct Ring {
    fd: Option<OwnedFd>,
    base: NonNull<u8>,
}

// SAFETY: the mapping is owned by this value alone (unmapped on drop); every access to it
// goes through atomics or raw-pointer copies (see `RingLink`), never through references to
// bytes that another thread or process writes.
unsafe impl Send for Ring {}
// SAFETY: as for `Send`: the only references `&Ring` gives out into the mapping are to
// the control blocks, which are made of atomics (see `block`).
unsafe impl Sync for Ring {}

impl Ring {
    /// A new ring file, sized and sealed, and mapped (the master, before it starts the
    /// worker).
    pub(crate) fn create() -> io::Result<Ring> {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        let fd = super::sealed_memfd(c"ptools-ring", FILE_BYTES, seals)?;
        Ring::map(fd).map_err(io::Error::other)
    }

    /// Takes the ring descriptor `fd` the master passed through the environment (a worker),
    /// once it is checked to be open, sealed and of the right size, and marks it
    /// close-on-exec. When it is not a ring file, `fd` is left alone: it may belong to
    /// something else (a ring file that then fails to map is closed).
    pub(crate) fn adopt(fd: RawFd) -> Result<Ring, String> {
        Ring::map(super::adopt_passed_fd(fd, check)?)
    }

    /// Maps the whole file, once [`check`]ed.
    fn map(fd: OwnedFd) -> Result<Ring, String> {
        check(&fd)?;
        let len = NonZeroUsize::new(FILE_BYTES).expect("nonzero");
        // SAFETY: a new shared mapping of our own descriptor at an address the kernel
        // picks: it aliases no Rust object. The file is exactly this long and sealed
        // against shrinking (checked above), so no access inside it can fault.
        let p = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )
        }
        .map_err(|e| format!("ring: mmap: {e}"))?;
        Ok(Ring {
            fd: Some(fd),
            base: p.cast(),
        })
    }

    /// The descriptor, to pass to a worker at its start (`-1` once a link is made).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    fn block(&self, dir: usize) -> &Block {
        // SAFETY: the control page is mapped for as long as `self` lives, page-aligned
        // (so each block at `dir * size_of::<Block>()` is aligned for it), and holds two
        // blocks (asserted at compile time). `Block` is made of atomics only, for which
        // every bit pattern is valid and which may be accessed concurrently from other
        // threads and processes: a shared reference to them is sound.
        unsafe { &*self.base.as_ptr().cast::<Block>().add(dir) }
    }

    fn data(&self, dir: usize) -> *mut u8 {
        // SAFETY: inside the mapping: CONTROL + dir * RING_BYTES + RING_BYTES <= FILE_BYTES.
        unsafe { self.base.as_ptr().add(CONTROL + dir * RING_BYTES) }
    }

    /// The master's side of the link (made once the worker has its own descriptor).
    pub(crate) fn master(self, spin: Duration) -> RingLink {
        RingLink::new(self, DOWN, UP, spin)
    }

    /// The worker's side of the link.
    pub(crate) fn worker(self, spin: Duration) -> RingLink {
        RingLink::new(self, UP, DOWN, spin)
    }
}

/// Checks the seals and the size of a ring file.
fn check(fd: &OwnedFd) -> Result<(), String> {
    let seals = fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|e| format!("ring: F_GET_SEALS: {e}"))?;
    let need = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    if !SealFlag::from_bits_truncate(seals).contains(need) {
        return Err("ring is not sealed against resizing".into());
    }
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| format!("ring: fstat: {e}"))?;
    if st.st_size != FILE_BYTES as i64 {
        return Err(format!("ring of {} bytes, not {FILE_BYTES}", st.st_size));
    }
    Ok(())
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, of `FILE_BYTES`; no reference into it outlives
        // the borrow of `self` that made it.
        let _ = unsafe { munmap(self.base.cast(), FILE_BYTES) };
    }
}

/// One side of a ring link.
#[derive(Debug)]
pub(crate) struct RingLink {
    ring: Ring,
    /// The direction this side writes, and the one it reads.
    out: usize,
    inn: usize,
    /// This side's own write position (the truth; the shared `head` is its copy for the
    /// peer), under the lock that makes writers take turns.
    head: Mutex<u64>,
    /// This side's own read position, under the lock that makes readers take turns; the
    /// atomic is its copy for the waits, which run outside that lock.
    tail: Mutex<()>,
    read: AtomicU64,
    /// Set by [`Link::shutdown`]: in this process's memory, where the peer cannot clear it.
    closed: AtomicBool,
    /// The peer's write position when the link was shut down (stored before `closed`):
    /// a closed link reads up to there, then its end, whatever the peer writes later.
    end: AtomicU64,
    /// Set when the peer's position was impossible: the link is broken for good.
    faulted: AtomicBool,
    /// How long a wait spins before it sleeps (zero: never spins).
    spin: Duration,
    /// Waits in a row whose spin ended without what they waited for (see [`MISSES`]).
    misses: AtomicU32,
}

impl RingLink {
    fn new(mut ring: Ring, out: usize, inn: usize, spin: Duration) -> RingLink {
        // The mapping keeps the file; neither side needs the descriptor any more (one
        // descriptor less per worker in the master, which has one set per worker).
        ring.fd = None;
        RingLink {
            ring,
            out,
            inn,
            head: Mutex::new(0),
            tail: Mutex::new(()),
            read: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            end: AtomicU64::new(0),
            faulted: AtomicBool::new(false),
            spin,
            misses: AtomicU32::new(0),
        }
    }

    /// Marks the link broken for good and wakes every waiter of this process, so that
    /// whoever waits on it (the reader thread, a writer waiting for room) sees the fault.
    /// Only a side holding the positions it checked (`recv` under `tail`, `send_all` under
    /// `head`) may call it.
    fn broken(&self, what: &str) -> io::Error {
        self.faulted.store(true, Ordering::SeqCst);
        self.wake_all();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("shared-memory ring: {what}"),
        )
    }

    /// Bytes waiting in the incoming ring, from the peer's write position and ours; `None`
    /// when the position is impossible (more than a ring ahead of ours, or behind it).
    ///
    /// Outside `tail` (the waits) `read` may be stale: another thread may have read on and
    /// the peer written on since, so an impossible answer there proves nothing, and only
    /// `recv` (which holds `tail`, so `read` is current) calls the link broken.
    fn peer_bytes(&self) -> Option<u64> {
        // Ours first, then the peer's: a reader stores `read` only after it saw the peer's
        // position at least that far, so a position loaded after it is at least as far.
        let read = self.read.load(Ordering::Acquire);
        let head = self.ring.block(self.inn).head.0.load(Ordering::SeqCst);
        let n = head.wrapping_sub(read);
        (n <= RING_BYTES as u64).then_some(n)
    }

    /// Something for a reader to act on: bytes, the end, or a fault (or what may be one:
    /// `recv` decides).
    fn readable(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
            || self.faulted.load(Ordering::Relaxed)
            || self.peer_bytes().is_none_or(|n| n > 0)
    }

    /// Room in the outgoing ring, given this side's write position.
    fn room(&self, head: u64) -> io::Result<usize> {
        if self.faulted.load(Ordering::Relaxed) {
            return Err(self.broken("the peer broke it earlier"));
        }
        let tail = self.ring.block(self.out).tail.0.load(Ordering::SeqCst);
        let used = head.wrapping_sub(tail);
        if used > RING_BYTES as u64 {
            return Err(self.broken(&format!("peer's read position {tail} is impossible")));
        }
        Ok(RING_BYTES - used as usize)
    }

    /// Spins for up to `self.spin` (never past `deadline`) until `ready`, then sleeps on `w`
    /// until `ready` or `deadline`; true when `ready` held.
    fn wait(&self, w: &Wait, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        if ready() {
            return true;
        }
        let start = Instant::now();
        let (spin, misses) = self.spin_budget(deadline, start);
        if !spin.is_zero() {
            let mut elapsed = Duration::ZERO;
            while elapsed < spin {
                // Past the first microseconds, each turn offers the core to whatever else
                // could run on it (the peer itself, on a busy machine): one `sched_yield`,
                // which returns at once when nothing else could. The clock is read once
                // per turn, or per 64 pauses while spinning on the core.
                let busy = elapsed < BUSY_SPIN;
                for _ in 0..if busy { 64 } else { 1 } {
                    if busy {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                    if ready() {
                        self.misses.store(0, Ordering::Relaxed);
                        return true;
                    }
                }
                elapsed = start.elapsed();
            }
            // Counted only when nothing cut the spin short (a deadline is not a miss).
            if spin == self.spin {
                self.misses
                    .store(misses.saturating_add(1), Ordering::Relaxed);
            }
        }
        self.sleep(w, deadline, ready)
    }

    /// Sleeps on `w` until `ready` or `deadline`, without spinning; true when `ready` held.
    fn sleep(&self, w: &Wait, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        loop {
            let seq = w.seq.load(Ordering::SeqCst);
            w.sleepers.fetch_add(1, Ordering::SeqCst);
            // Against the writer's store, fence and load of `sleepers` (see `wake`): of
            // this and that, one sees the other. A writer that stored before sees no
            // sleeper and wakes nobody, but then the check below sees its bytes; one that
            // stored after sees the sleeper and changes `seq`, so the futex does not sleep
            // on the value loaded above.
            fence(Ordering::SeqCst);
            if ready() {
                w.sleepers.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|t| t.is_zero()) {
                w.sleepers.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
            // Each sleep is bounded, so that a flag of this process (`closed`, `faulted`)
            // is seen even if a wake-up was lost to a peer that wrote `seq` back.
            let t = left.map_or(MAX_SLEEP, |t| t.min(MAX_SLEEP));
            super::futex_wait(&w.seq, seq, Some(t));
            w.sleepers.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return true;
            }
        }
    }

    /// How long the wait that starts at `now` spins, and the count of misses before it.
    ///
    /// After [`MISSES`] spins in a row that found nothing (calls that take longer than a
    /// spin, or a peer that does not get a core), only one wait in [`RETRY`] spins: the
    /// others sleep at once and leave the core to the work being waited for. A spin that
    /// finds what it waits for sets the count back to zero.
    fn spin_budget(&self, deadline: Option<Instant>, now: Instant) -> (Duration, u32) {
        let spin = match deadline {
            Some(d) => self.spin.min(d.saturating_duration_since(now)),
            None => self.spin,
        };
        let misses = self.misses.load(Ordering::Relaxed);
        if misses < MISSES {
            return (spin, misses);
        }
        self.misses
            .store(misses.wrapping_add(1).max(MISSES), Ordering::Relaxed);
        if (misses - MISSES) % RETRY == RETRY - 1 {
            (spin, misses)
        } else {
            (Duration::ZERO, misses)
        }
    }

    /// Wakes every waiter of this process on this link (and the peer's, who look and
    /// sleep again).
    fn wake_all(&self) {
        for dir in [self.out, self.inn] {
            let b = self.ring.block(dir);
            for w in [&b.data.0, &b.room.0] {
                w.seq.fetch_add(1, Ordering::SeqCst);
                super::futex_wake(&w.seq);
            }
        }
    }

    /// Wakes the peer's sleepers on `w`, if it said it has any. The caller has just
    /// published a position with a `SeqCst` store.
    fn wake(w: &Wait) {
        fence(Ordering::SeqCst);
        if w.sleepers.load(Ordering::SeqCst) != 0 {
            w.seq.fetch_add(1, Ordering::SeqCst);
            super::futex_wake(&w.seq);
        }
    }
}

impl Link for RingLink {
    fn send_all(&self, mut buf: &[u8]) -> io::Result<()> {
        let mut head = self.head.lock();
        let block = self.ring.block(self.out);
        let data = self.ring.data(self.out);
        while !buf.is_empty() {
            if self.closed.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let mut room = self.room(*head)?;
            if room == 0 {
                let h = *head;
                self.wait(&block.room.0, None, || {
                    self.closed.load(Ordering::Relaxed) || self.room(h).map_or(true, |r| r > 0)
                });
                room = self.room(*head)?;
                if room == 0 {
                    continue;
                }
            }
            let n = room.min(buf.len());
            let at = (*head % RING_BYTES as u64) as usize;
            let first = n.min(RING_BYTES - at);
            // SAFETY: both pieces lie inside this direction's ring (`at + first <=
            // RING_BYTES`, and the wrapped rest starts at 0 with `n - first <= RING_BYTES`);
            // the reader reads them only after `head` below says they are written. The
            // destination is shared memory no Rust reference points into: a peer writing
            // it meanwhile only spoils its own stream.
            unsafe {
                std::ptr::copy_nonoverlapping(buf.as_ptr(), data.add(at), first);
                std::ptr::copy_nonoverlapping(buf.as_ptr().add(first), data, n - first);
            }
            *head = head.wrapping_add(n as u64);
            block.head.0.store(*head, Ordering::SeqCst);
            RingLink::wake(&block.data.0);
            buf = &buf[n..];
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let _turn = self.tail.lock();
        let block = self.ring.block(self.inn);
        loop {
            if self.faulted.load(Ordering::Relaxed) {
                return Err(self.broken("the peer broke it earlier"));
            }
            let Some(mut avail) = self.peer_bytes() else {
                let head = block.head.0.load(Ordering::Relaxed);
                return Err(self.broken(&format!("peer's write position {head} is impossible")));
            };
            if self.closed.load(Ordering::SeqCst) {
                // Up to where the peer had written when the link was shut down, then the
                // end: a peer (or a helper it left mapping the ring) cannot keep it going.
                // A position then that was impossible leaves nothing.
                let left = self
                    .end
                    .load(Ordering::SeqCst)
                    .wrapping_sub(self.read.load(Ordering::Relaxed));
                avail = avail.min(if left > RING_BYTES as u64 { 0 } else { left });
                if avail == 0 {
                    return Ok(0);
                }
            }
            if avail == 0 {
                self.wait(&block.data.0, None, || self.readable());
                continue;
            }
            // Only this thread (holding `tail`) stores it.
            let read = self.read.load(Ordering::Relaxed);
            let n = (avail as usize).min(buf.len());
            let at = (read % RING_BYTES as u64) as usize;
            let first = n.min(RING_BYTES - at);
            let data = self.ring.data(self.inn);
            // SAFETY: the sources lie inside this direction's ring (as in `send_all`), the
            // destination is the caller's buffer (`n <= buf.len()`). The peer may write the
            // source meanwhile (it is untrusted): the copy goes through raw pointers into
            // bytes this process owns, and any byte is a valid `u8`, so such a write can
            // only make the bytes wrong, which the frame reader checks like any other.
            unsafe {
                std::ptr::copy_nonoverlapping(data.add(at), buf.as_mut_ptr(), first);
                std::ptr::copy_nonoverlapping(data, buf.as_mut_ptr().add(first), n - first);
            }
            let read = read.wrapping_add(n as u64);
            self.read.store(read, Ordering::Release);
            block.tail.0.store(read, Ordering::SeqCst);
            RingLink::wake(&block.room.0);
            return Ok(n);
        }
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let block = self.ring.block(self.inn);
        let deadline = Instant::now().checked_add(timeout);
        Ok(self.wait(&block.data.0, deadline, || self.readable()))
    }

    fn wait_readable_quietly(&self, timeout: Duration) -> io::Result<bool> {
        let block = self.ring.block(self.inn);
        let deadline = Instant::now().checked_add(timeout);
        Ok(self.sleep(&block.data.0, deadline, || self.readable()))
    }

    fn forge_position(&self, write: bool, pos: u64) -> bool {
        if write {
            let block = self.ring.block(self.out);
            block.head.0.store(pos, Ordering::SeqCst);
            RingLink::wake(&block.data.0);
        } else {
            let block = self.ring.block(self.inn);
            block.tail.0.store(pos, Ordering::SeqCst);
            RingLink::wake(&block.room.0);
        }
        true
    }

    fn shutdown(&self) {
        // What the peer has written by now is still read; nothing after it (see `recv`).
        let end = self.ring.block(self.inn).head.0.load(Ordering::SeqCst);
        self.end.store(end, Ordering::SeqCst);
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (RingLink, RingLink) {
        let m = Ring::create().expect("ring");
        let dup = m.fd.as_ref().expect("fd").try_clone().expect("dup");
        let w = Ring::map(dup).expect("map");
        (
            m.master(Duration::from_micros(20)),
            w.worker(Duration::ZERO),
        )
    }

    #[test]
    fn bytes_cross_in_both_directions_in_order_across_the_wrap() {
        let (m, w) = pair();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 7000];
            while got.len() < 3 * RING_BYTES + 17 {
                let n = w.recv(&mut buf).expect("recv");
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            w.send_all(&got).expect("send back");
            got
        });
        let out: Vec<u8> = (0..3 * RING_BYTES + 17)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        m.send_all(&out).expect("send");
        let mut back = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while back.len() < out.len() {
            let n = m.recv(&mut buf).expect("recv");
            back.extend_from_slice(&buf[..n]);
        }
        assert_eq!(t.join().expect("thread"), out);
        assert_eq!(back, out);
    }

    #[test]
    fn a_shut_down_side_reads_what_was_written_then_the_end() {
        let (m, w) = pair();
        w.send_all(b"last words").expect("send");
        m.shutdown();
        let mut buf = [0u8; 64];
        assert_eq!(m.recv(&mut buf).expect("recv"), 10);
        assert_eq!(&buf[..10], b"last words");
        assert_eq!(m.recv(&mut buf).expect("end"), 0);
        assert!(m.send_all(b"x").is_err());
    }

    #[test]
    fn a_shut_down_side_reads_nothing_written_after_the_shutdown() {
        let (m, w) = pair();
        w.send_all(b"before").expect("send");
        m.shutdown();
        w.send_all(b"after").expect("send");
        let mut buf = [0u8; 64];
        assert_eq!(m.recv(&mut buf).expect("recv"), 6);
        assert_eq!(&buf[..6], b"before");
        assert_eq!(m.recv(&mut buf).expect("end"), 0);
    }

    #[test]
    fn a_link_whose_spins_find_nothing_spins_rarely_until_one_finds_something() {
        let (m, w) = pair();
        let m = RingLink {
            spin: Duration::from_millis(20),
            ..m
        };
        let mut buf = [0u8; 8];
        // Waits whose spins find nothing: the peer writes only after them.
        for i in 0..MISSES {
            assert_eq!(m.spin_budget(None, Instant::now()).0, m.spin, "wait {i}");
            std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(40));
                    w.send_all(b"x").expect("send");
                });
                assert_eq!(m.recv(&mut buf).expect("recv"), 1);
            });
        }
        assert_eq!(m.misses.load(Ordering::Relaxed), MISSES);
        // Now one wait in RETRY spins.
        let spins: Vec<bool> = (0..2 * RETRY)
            .map(|_| !m.spin_budget(None, Instant::now()).0.is_zero())
            .collect();
        assert_eq!(spins.iter().filter(|&&s| s).count(), 2, "{spins:?}");
        assert!(spins[RETRY as usize - 1] && spins[2 * RETRY as usize - 1]);
        // A spin that finds what it waits for makes the link spin again.
        while m.spin_budget(None, Instant::now()).0.is_zero() {}
        m.misses.fetch_sub(1, Ordering::Relaxed);
        // Not ready at the first look, ready at the first look while spinning.
        let looks = AtomicU32::new(0);
        let data = &m.ring.block(m.inn).data.0;
        assert!(m.wait(data, None, || looks.fetch_add(1, Ordering::Relaxed) >= 1));
        assert_eq!(m.misses.load(Ordering::Relaxed), 0);
        assert_eq!(m.spin_budget(None, Instant::now()).0, m.spin);
    }

    #[test]
    fn a_zero_timeout_does_not_spin() {
        let (m, _w) = pair();
        let m = RingLink {
            spin: Duration::from_secs(5),
            ..m
        };
        let t = Instant::now();
        assert!(!m.wait_readable(Duration::ZERO).expect("wait"));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn a_forged_read_position_wakes_a_writer_waiting_for_room_with_an_error() {
        let (m, w) = pair();
        let m = std::sync::Arc::new(m);
        let m2 = m.clone();
        // More than a ring: the writer fills it and waits for room.
        let t = std::thread::spawn(move || m2.send_all(&vec![1u8; RING_BYTES + 10]));
        std::thread::sleep(Duration::from_millis(50));
        w.ring.block(DOWN).tail.0.store(u64::MAX, Ordering::SeqCst);
        RingLink::wake(&w.ring.block(DOWN).room.0);
        let e = t.join().expect("thread").expect_err("forged tail");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn shutdown_wakes_a_sleeping_reader() {
        let (m, _w) = pair();
        let m = std::sync::Arc::new(m);
        let m2 = m.clone();
        let t = std::thread::spawn(move || m2.recv(&mut [0u8; 8]));
        std::thread::sleep(Duration::from_millis(50));
        m.shutdown();
        assert_eq!(t.join().expect("thread").expect("recv"), 0);
    }

    #[test]
    fn wait_readable_times_out_on_an_empty_ring() {
        let (m, _w) = pair();
        let t = Instant::now();
        assert!(!m.wait_readable(Duration::from_millis(30)).expect("wait"));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn impossible_peer_positions_are_invalid_data_for_good() {
        let (m, w) = pair();
        // The worker claims more than a ring of bytes.
        w.ring
            .block(UP)
            .head
            .0
            .store(RING_BYTES as u64 + 1, Ordering::SeqCst);
        let e = m.recv(&mut [0u8; 8]).expect_err("forged head");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(m.wait_readable(Duration::from_secs(5)).expect("wait"));
        w.ring.block(UP).head.0.store(0, Ordering::SeqCst);
        assert!(m.recv(&mut [0u8; 8]).is_err(), "a fault is for good");

        let (m, w) = pair();
        // The worker claims to have read bytes never written.
        w.ring.block(DOWN).tail.0.store(5, Ordering::SeqCst);
        let e = m.send_all(b"abc").expect_err("forged tail");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_file_of_the_wrong_size_or_unsealed_is_refused() {
        let fd = super::super::sealed_memfd(c"t", FILE_BYTES, SealFlag::empty()).expect("memfd");
        assert!(Ring::map(fd.try_clone().expect("dup")).is_err(), "unsealed");
        nix::unistd::ftruncate(&fd, 4096).expect("size");
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).expect("seal");
        assert!(Ring::map(fd).is_err(), "wrong size");
    }
}
