//! `pmap`: items in adaptive batches over a [`WorkerSet`].
//!
//! The calling thread does the sending: in first-free mode it takes free workers of the
//! set itself (waiting its turn with the set's other callers only when it has nothing in
//! flight) and writes each batch, its items encoded straight into the frame. A batch waits
//! in the set's queue (for a reader thread to hand it a worker and a sender thread to write
//! it: two thread hops) only behind long batches, where the hops cost little and spare the
//! workers from waiting on this thread. It also reads replies itself when that cannot
//! delay a worker for long (see [`wait_any`]).

use std::collections::VecDeque;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::func::FnRef;
use crate::remote_ref::{DriveToken, Slot};
use crate::workerset::WorkerSet;

/// Work per batch the sizing aims at: long enough that the per-batch cost (a round trip,
/// tens of microseconds) is small, short enough to balance the end of the run.
const TARGET: Duration = Duration::from_millis(2);
/// A batch is at most this many times larger than the largest one sent before. The
/// estimate of an item's cost is an upper bound (a batch's time over its length, the
/// round trip included), so a batch sized by it holds at most [`TARGET`] of work when
/// items cost alike; the bound on growth guards against items that get dearer later.
const GROWTH: usize = 128;
/// A batch carries at least this many times the cost of a round trip in work, so that
/// splitting the end of a run into smaller batches pays for itself.
const MIN_WORK_PER_OVERHEAD: f64 = 2.0;

/// Batch sizes for one `pmap`: one item per worker first (so that a run of long items
/// never commits many of them to one worker unmeasured), then sizes from what finished
/// batches took.
///
/// Each finished batch gives `took / len`, an upper bound on an item's cost (the round
/// trip is in it), smoothed over batches; the quickest batch gives an upper bound on the
/// round trip itself. A batch then aims at [`TARGET`] of work, grows by at most
/// [`GROWTH`], and near the end takes a fair share of what is left (`left / width`) but
/// never less than [`MIN_WORK_PER_OVERHEAD`] round trips of work: trivial items end in a
/// few large batches instead of a long tail of tiny ones.
struct Sizer {
    per_item: Option<f64>,
    overhead: f64,
    largest: usize,
    /// Once the rest fits in one batch per worker: the length of those last batches.
    last: Option<usize>,
    /// Batches finished, and the longest of them.
    finished: usize,
    longest_done: usize,
}

impl Sizer {
    fn new() -> Sizer {
        Sizer {
            per_item: None,
            overhead: f64::INFINITY,
            largest: 1,
            last: None,
            finished: 0,
            longest_done: 0,
        }
    }

    /// How many batches may be in flight: one per worker for the probes and the measured
    /// batches, then `width`, then no limit for the last split. (In first-free mode,
    /// batches beyond one per worker wait in the set's queue, and only behind long ones:
    /// see [`run`].)
    fn in_flight_limit(&self, live: usize, width: usize) -> usize {
        if self.last.is_some() {
            // The last split goes out at once.
            usize::MAX
        } else if self.finished < 2 * live {
            // The probes, then one measured batch per worker: each sized by what the one
            // before showed, none sent on a guess.
            live
        } else {
            width
        }
    }

    /// The length of the next batch, `left` items still to send.
    fn next(&mut self, left: usize, live: usize, width: usize) -> usize {
        let Some(t) = self.per_item else {
            return 1;
        };
        let t = t.max(1e-10);
        let cap = self.largest.saturating_mul(GROWTH);
        let target = TARGET.as_secs_f64();
        if let Some(len) = self.last {
            return len.min(left);
        }
        let floor = (MIN_WORK_PER_OVERHEAD * self.overhead / t)
            .ceil()
            .min(left as f64) as usize;
        let len = if left as f64 * t <= live as f64 * target && left.div_ceil(live) <= cap {
            // All that is left fits in one batch per worker: split it once, evenly (but
            // not finer than the floor), and send it all.
            let len = left.div_ceil(live).max(floor);
            self.last = Some(len);
            len
        } else {
            let want = ((target / t) as usize).clamp(1, cap);
            let fair = left.div_ceil(width);
            want.min(fair.max(floor))
        }
        .clamp(1, left);
        self.largest = self.largest.max(len);
        len
    }

    /// True when a batch of `len` items should end within [`DRIVE_WINDOW`]: a probe (one
    /// item, cost unknown), or a batch whose estimated work is at most that.
    fn soon(&self, len: usize) -> bool {
        self.per_item
            .is_none_or(|t| len as f64 * t <= DRIVE_WINDOW.as_secs_f64())
    }

    /// A batch of `len` items took `took` seconds, round trip included.
    fn finished(&mut self, len: usize, took: f64) {
        self.finished += 1;
        self.overhead = self.overhead.min(took);
        let per = took / len as f64;
        self.per_item = Some(match self.per_item {
            // The longest batch so far gives the tightest bound: take it as it is.
            _ if len >= self.longest_done => per,
            None => per,
            Some(p) => p.min(per * 4.0).max(per / 4.0) * 0.5 + per * 0.5,
        });
        self.longest_done = self.longest_done.max(len);
    }
}

/// Reports finished items (a progress bar, or nothing).
pub(crate) trait Progress {
    /// The number of items (known at the start, corrected if the items' iterator was wrong
    /// about its length).
    fn set_len(&mut self, _items: usize) {}
    fn advance(&mut self, items: usize);
    fn finish(&mut self) {}
}

impl Progress for () {
    fn advance(&mut self, _: usize) {}
}

#[cfg(feature = "progress")]
impl Progress for indicatif::ProgressBar {
    fn set_len(&mut self, items: usize) {
        self.set_length(items as u64);
    }
    fn advance(&mut self, items: usize) {
        self.inc(items as u64);
    }
    fn finish(&mut self) {
        indicatif::ProgressBar::finish(self);
    }
}

/// One batch sent: its items (`start..start + len`), slot and start time, and the token
/// of this thread counted as its link's driver until it reads the reply.
struct Batch {
    start: usize,
    len: usize,
    slot: Arc<Slot>,
    t0: Instant,
    token: Option<DriveToken>,
}

/// The items, a batch at a time. When the caller's iterator knows its length (an exact
/// `size_hint`, as a `Vec`, a slice's iterator or a range has), they are taken from it
/// batch by batch into one reused buffer, and no vector of all the items is built: for
/// 10^4 numbers that vector, freed at the end of each map, was enough to make the
/// allocator give memory back to the system and fault it in again on the next map. Any
/// other iterator is collected first. An iterator whose `size_hint` is wrong is still
/// served whole: what it yields decides, the hint only sizes the batches.
struct Source<A, I> {
    /// The caller's iterator while items are taken from it.
    iter: Option<std::iter::Fuse<I>>,
    /// Items collected: all of them, or those beyond what the iterator announced.
    rest: std::vec::IntoIter<A>,
    /// The current batch.
    chunk: Vec<A>,
}

impl<A, I: Iterator<Item = A>> Source<A, I> {
    /// The source and the number of items announced.
    fn new(iter: I) -> (Source<A, I>, usize) {
        let (lo, hi) = iter.size_hint();
        let (iter, rest) = if hi == Some(lo) {
            (Some(iter.fuse()), Vec::new())
        } else {
            (None, iter.collect())
        };
        let n = if iter.is_some() { lo } else { rest.len() };
        let source = Source {
            iter,
            rest: rest.into_iter(),
            chunk: Vec::new(),
        };
        (source, n)
    }

    /// The next `len` items, fewer when they run out.
    fn take(&mut self, len: usize) -> &[A] {
        self.chunk.clear();
        if let Some(it) = &mut self.iter {
            self.chunk.extend(it.by_ref().take(len));
        }
        let more = len - self.chunk.len();
        if more > 0 {
            self.chunk.extend(self.rest.by_ref().take(more));
        }
        &self.chunk
    }

    /// Once every announced item is taken: how many more the iterator yields (collected).
    fn beyond(&mut self) -> usize {
        match self.iter.take() {
            Some(mut it) => {
                let v: Vec<A> = it.by_ref().collect();
                let k = v.len();
                self.rest = v.into_iter();
                k
            }
            None => 0,
        }
    }
}

pub(crate) fn run<A, R, I>(
    set: &WorkerSet,
    f: fn(A) -> R,
    items: I,
    progress: &mut dyn Progress,
) -> Result<Vec<R>>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
    I: Iterator<Item = A>,
{
    let (mut source, mut n) = Source::new(items);
    if n == 0 {
        n = source.beyond();
        if n == 0 {
            return Ok(Vec::new());
        }
    }
    progress.set_len(n);
    let fref = FnRef::batch(f)?;
    let width = set.width();
    let live = set.workers().len().max(1);
    let mut sizer = Sizer::new();
    // Finished batches, by index, from their slots' hooks.
    let (tx, rx) = mpsc::channel::<usize>();
    let mut batches: Vec<Batch> = Vec::new();
    // The results, in order: each batch's decoded onto the end once those before it are
    // in (no vector per batch); the replies of batches that finished early wait here.
    let mut out: Vec<R> = Vec::new();
    let mut early: Vec<Option<Vec<u8>>> = Vec::new();
    let mut decoded = 0;
    // Batches in flight, oldest first; finished ones not decoded yet.
    let mut flying: VecDeque<usize> = VecDeque::new();
    let mut finished: Vec<usize> = Vec::new();
    let mut next = 0;
    loop {
        // Send first, decode after: a worker gets its next batch before this thread
        // spends time on results.
        while next < n && flying.len() < sizer.in_flight_limit(live, width) {
            // With nothing in flight, wait for a worker; otherwise take a free one. When
            // none is free, a batch behind long ones waits in the set's queue (written by
            // the link's sender thread as soon as a worker is handed it, so no worker
            // waits for this thread); behind short ones, this thread waits instead, reads
            // the reply itself and sends the next batch at once (see `wait_any`).
            let w = match set.take_worker(flying.is_empty())? {
                Some(w) => w,
                None if !sizer.soon(batches[flying[0]].len) => 0,
                None => break,
            };
            // Given back unless the batch goes out (no items left, or the items'
            // iterator panicked).
            let w = Taken::new(set, w);
            // A worker is free again only once its batch is done: a token still held for
            // it (its reply read by another thread's driver) must go before this thread
            // writes to it, or a large write could wait on a worker that waits, in turn,
            // for its reply to be read (see `DriveToken`).
            drop_ready_tokens(&mut batches, &flying);
            let len = sizer.next(n - next, live, width);
            // This thread reads the reply itself when the batch should end soon, or when
            // it is part of the last split (everything is then sent, and all is needed).
            // First-free only: there a link carries one batch of this map at a time, so
            // this thread never writes to a link while it counts as the link's driver;
            // round-robin puts several on one link.
            let drive =
                set.mode() == crate::Mode::FirstFree && (sizer.soon(len) || sizer.last.is_some());
            let slot = Slot::new(0, None);
            let index = batches.len();
            let tx = tx.clone();
            let t0 = Instant::now();
            let part = source.take(len);
            if part.len() < len {
                // Fewer items than announced: these are the last.
                n = next + part.len();
                progress.set_len(n);
                if part.is_empty() {
                    break;
                }
            }
            let len = part.len();
            let token = set.send_batch(
                w.send(),
                fref,
                &mut |o| crate::codec::encode_out(part, o),
                slot.clone(),
                Box::new(move || {
                    let _ = tx.send(index);
                }),
                drive,
            )?;
            batches.push(Batch {
                start: next,
                len,
                slot,
                t0,
                token,
            });
            early.push(None);
            next += len;
            flying.push_back(index);
            if next == n {
                let more = source.beyond();
                if more > 0 {
                    // More items than announced: they follow.
                    n += more;
                    progress.set_len(n);
                }
            }
        }
        drop_ready_tokens(&mut batches, &flying);
        for index in finished.drain(..) {
            early[index] = Some(batches[index].slot.take_done()?);
            while let Some(bytes) = early.get_mut(decoded).and_then(Option::take) {
                let b = &batches[decoded];
                debug_assert_eq!(out.len(), b.start);
                // Room for the items sent so far: once the last split is out, all of
                // them (never a length the items' iterator only claimed).
                out.reserve(next - out.len());
                crate::codec::decode_seq_into(&bytes, b.len, &mut out)
                    .map_err(|e| Error::Decode(format!("result of a batch of {}: {e}", b.len)))?;
                crate::wire::give_back(bytes);
                progress.advance(b.len);
                decoded += 1;
            }
        }
        if flying.is_empty() {
            break;
        }
        let index = wait_any(&rx, &mut batches, &flying, next == n, &sizer);
        // Finished: this thread no longer counts as a driver of its link.
        batches[index].token = None;
        flying.retain(|&i| i != index);
        finished.push(index);
        let b = &batches[index];
        // Timed until this thread gets to it, not until its reply was read: for cheap
        // items this thread's own share of a batch (encoding its items, decoding its
        // results) is most of its cost. Measured at 10^6 trivial items, the time to the
        // read gave batches twice as large and the map twice as slow.
        sizer.finished(b.len, b.t0.elapsed().as_secs_f64());
    }
    progress.finish();
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

/// A worker taken for a batch: given back to the set if the batch is not sent.
struct Taken<'a> {
    set: &'a WorkerSet,
    w: usize,
    armed: bool,
}

impl<'a> Taken<'a> {
    fn new(set: &'a WorkerSet, w: usize) -> Taken<'a> {
        Taken {
            set,
            w,
            armed: true,
        }
    }

    /// The worker, for the batch about to be sent (which gives it back when done).
    fn send(mut self) -> usize {
        self.armed = false;
        self.w
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.set.put_back(self.w);
        }
    }
}

/// Drops the tokens of batches in flight whose replies are already in (read by another
/// thread), so that this thread counts as a driver only of links it has a reply to read
/// on.
fn drop_ready_tokens(batches: &mut [Batch], flying: &VecDeque<usize>) {
    for &i in flying {
        let b = &mut batches[i];
        if b.token.is_some() && b.slot.is_ready() {
            b.token = None;
        }
    }
}

/// How long the caller reads a batch's reply itself before leaving it to the link's reader
/// thread, while it may still have to react to another batch finishing first.
const DRIVE_WINDOW: Duration = Duration::from_micros(100);

/// Waits for a batch in flight (`flying`, oldest first) to finish; its index.
///
/// A reply read by a link's reader thread reaches this thread through a second wake-up;
/// read here, it costs one. So this thread reads replies itself when that cannot delay
/// another worker for long: once everything is sent (nothing is decided by which batch
/// ends first, and all are needed), it reads the oldest batch's reply to the end; when
/// the oldest batch should end soon (a probe, or a batch of at most [`DRIVE_WINDOW`] of
/// estimated work), it reads for at most that long, so a worker that finishes another
/// batch first waits at most that long for its next one. Otherwise it sleeps until a
/// reader thread reports a batch done.
///
/// Batches sent with a [`DriveToken`] (this thread counted as their link's driver when
/// they were queued, so no reader thread was woken for them) are read first, in the order
/// sent, under the same rule: to the end once everything is sent, else for at most
/// [`DRIVE_WINDOW`]. A batch read after another waits that long at most (a link with a
/// token is read by nobody else meanwhile); without tokens, the second of two replies
/// arriving together was read by a reader thread woken for it, which then woke this one:
/// two wake-ups in a row.
fn wait_any(
    rx: &mpsc::Receiver<usize>,
    batches: &mut [Batch],
    flying: &VecDeque<usize>,
    all_sent: bool,
    sizer: &Sizer,
) -> usize {
    if let Ok(i) = rx.try_recv() {
        return i;
    }
    let deadline = (!all_sent).then(|| Instant::now() + DRIVE_WINDOW);
    for &i in flying {
        if let Some(t) = batches[i].token.take() {
            t.drive(&batches[i].slot, deadline);
            if let Ok(j) = rx.try_recv() {
                return j;
            }
        }
    }
    let oldest = &batches[flying[0]];
    if all_sent {
        oldest.slot.wait();
    } else if sizer.soon(oldest.len) {
        oldest.slot.drive_until(Instant::now() + DRIVE_WINDOW);
    }
    // Every slot completes (a dead worker's reader fails its calls) and its hook reports.
    rx.recv().expect("pmap holds a sender")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of `n` items of `cost` seconds each on `live` workers, each batch costing
    /// `overhead` seconds more (the round trip), batches served first-free in the order
    /// sent. Returns the batch lengths in the order sent and the time the run took.
    fn simulate(n: usize, live: usize, cost: f64, overhead: f64) -> (Vec<usize>, f64) {
        let width = 2 * live;
        let mut s = Sizer::new();
        let mut sent = Vec::new();
        // (finish time, len, start of the batch as the master saw it)
        let mut running: Vec<(f64, usize, f64)> = Vec::new();
        let mut queue: std::collections::VecDeque<(usize, f64)> = Default::default();
        let mut free = live;
        let (mut now, mut next) = (0.0f64, 0usize);
        loop {
            while next < n && running.len() + queue.len() < s.in_flight_limit(live, width) {
                let len = s.next(n - next, live, width);
                sent.push(len);
                next += len;
                queue.push_back((len, now));
            }
            while free > 0 {
                let Some((len, t0)) = queue.pop_front() else {
                    break;
                };
                free -= 1;
                running.push((now + overhead + len as f64 * cost, len, t0));
            }
            if running.is_empty() {
                return (sent, now);
            }
            let i = (0..running.len())
                .min_by(|&a, &b| running[a].0.total_cmp(&running[b].0))
                .unwrap();
            let (t, len, t0) = running.swap_remove(i);
            now = t;
            free += 1;
            s.finished(len, now - t0);
        }
    }

    /// Batches of `lens` taken from `iter` until it runs out, as `run` takes them: the
    /// items seen and the final count.
    fn take_all<I: Iterator<Item = u32>>(iter: I, lens: &[usize]) -> (Vec<u32>, usize) {
        let (mut source, mut n) = Source::new(iter);
        if n == 0 {
            n = source.beyond();
        }
        let mut seen = Vec::new();
        for &len in lens.iter().cycle() {
            if seen.len() == n {
                break;
            }
            let len = len.min(n - seen.len());
            let part = source.take(len);
            if part.len() < len {
                n = seen.len() + part.len();
            }
            seen.extend_from_slice(part);
            if seen.len() == n {
                n += source.beyond();
            }
        }
        (seen, n)
    }

    #[test]
    fn items_come_in_order_whatever_the_iterator_says_of_its_length() {
        struct Claims(std::ops::Range<u32>, usize);
        impl Iterator for Claims {
            type Item = u32;
            fn next(&mut self) -> Option<u32> {
                self.0.next()
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                (self.1, Some(self.1))
            }
        }
        let all: Vec<u32> = (0..1000).collect();
        // Exact: taken batch by batch, nothing collected.
        let (source, n) = Source::new(0..1000u32);
        assert!(source.iter.is_some() && n == 1000);
        assert_eq!(take_all(0..1000u32, &[1, 7, 300]), (all.clone(), 1000));
        // Not exact: collected first.
        let (source, n) = Source::new((0..1000u32).filter(|_| true));
        assert!(source.iter.is_none() && n == 1000);
        assert_eq!(
            take_all((0..1000u32).filter(|_| true), &[64]),
            (all.clone(), 1000)
        );
        // Wrong about its length: too many, too few, none claimed.
        for claim in [5000, 999, 1001, 3, 0] {
            let got = take_all(Claims(0..1000, claim), &[1, 40, 500]);
            assert_eq!(got, (all.clone(), 1000), "claimed {claim}");
        }
        assert_eq!(take_all(Claims(0..0, 10), &[4]), (Vec::new(), 0));
    }

    #[test]
    fn trivial_items_end_in_a_few_batches() {
        let (sent, took) = simulate(10_000, 2, 10e-9, 20e-6);
        assert_eq!(sent.iter().sum::<usize>(), 10_000);
        assert_eq!(&sent[..2], &[1, 1], "one probe per worker first: {sent:?}");
        assert!(sent.len() <= 8, "{} batches: {sent:?}", sent.len());
        // Three round trips (probe, one measured batch, the split) and the work itself.
        assert!(took < 120e-6, "took {took} s: {sent:?}");
    }

    #[test]
    fn a_million_trivial_items_go_in_large_batches() {
        let (sent, took) = simulate(1_000_000, 2, 10e-9, 20e-6);
        assert_eq!(sent.iter().sum::<usize>(), 1_000_000);
        // The work is 10 ms, 5 ms per worker: the round trips add little.
        assert!(took < 6.5e-3, "took {took} s over {} batches", sent.len());
    }

    #[test]
    fn long_items_go_one_at_a_time() {
        let (sent, _) = simulate(50, 2, 10e-3, 20e-6);
        assert!(sent.iter().all(|&l| l == 1), "{sent:?}");
    }

    #[test]
    fn a_batch_holds_about_the_target_of_work() {
        let cost = 100e-6;
        let (sent, took) = simulate(2_000, 2, cost, 20e-6);
        let most = (TARGET.as_secs_f64() / cost) as usize;
        assert!(sent.iter().all(|&l| l <= most), "{sent:?}");
        // Balanced: close to the ideal 100 ms.
        assert!(took < 0.11, "took {took} s: {sent:?}");
    }

    #[test]
    fn only_short_batches_are_read_by_the_caller_before_all_is_sent() {
        let mut s = Sizer::new();
        // A probe: its cost is unknown, but it is one item.
        assert!(s.soon(1));
        s.finished(1, 20e-6);
        // 20 us an item at most: a few items fit in the window, a batch of 2 ms does not.
        assert!(s.soon(4));
        assert!(!s.soon(100));
        // Long items: not even one.
        let mut s = Sizer::new();
        s.finished(1, 10e-3);
        assert!(!s.soon(1));
    }

    #[test]
    fn uneven_splits_never_overshoot_what_is_left() {
        for n in [1, 2, 3, 7, 100, 12_345] {
            for live in [1, 2, 3, 8] {
                let (sent, _) = simulate(n, live, 1e-6, 30e-6);
                assert_eq!(sent.iter().sum::<usize>(), n, "n {n} live {live}: {sent:?}");
                assert!(sent.iter().all(|&l| l >= 1));
            }
        }
    }
}
