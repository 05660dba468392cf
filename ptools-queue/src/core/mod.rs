//! The queue core: a pure data structure, no threads and no processes.
//!
//! Every queued *entry* (one task, or one worker's part of an all-workers task) has a
//! priority and a sequence number given at submission; entries are ordered by
//! `(priority, sequence)`, so lower priorities run first and ties run in submission order.
//!
//! Entries live in *buckets*, one per distinct set of eligible workers: the any-worker
//! bucket, and one bucket per sorted list of worker ids (a host target is resolved to the
//! ids on that host when queued). A worker takes the best head among the buckets it
//! belongs to (a handful in practice: any, one per worker, one per host), never a scan
//! over tasks pinned elsewhere.
//!
//! # Storage
//!
//! Entries and tasks are kept in [`Slab`]s, vectors addressed by index, not in hash
//! maps: a bucket's [`Lane`] holds `(priority, sequence)` keys with entry indexes, an
//! entry holds its task's index, and a task's index travels in its
//! [`TaskId`](crate::TaskId) (checked against the task's number, as indexes are reused).
//! So no operation hashes a task, and a queue filled and drained in order walks its
//! memory in order: with hash maps every access was a cache and TLB miss once the queue
//! outgrew the caches, and the cost per task grew by half from 10^4 to 10^6 queued tasks.
//! A task's record also counts its parts running, which tells a running task (its id
//! still valid) from a finished one.
//!
//! A lane keeps the keys that come in order (equal priorities in submission order, a
//! requeue in front, a bucket just re-sorted) in a sorted deque, the others in a B-tree.
//! Bulk operations sort with a radix sort ([`radix`]): linear in the number of entries.
//!
//! | operation | cost |
//! |---|---|
//! | [`Core::push`], [`Core::requeue`] | `O(1)` for keys in order (a FIFO), else `O(log n)` |
//! | [`Core::pop_for`] | `O(b)` for `b` buckets, plus `O(log n)` from a lane's tree |
//! | [`Core::remove_task`], [`Core::set_priority`] | `O(p log n)` for the task's `p` parts (1, or one per worker) |
//! | [`Core::set_priorities`], [`Core::remove_where`] | `O(n)` over the slab (radix sort, lanes rebuilt in bulk) |
//! | [`Core::drain`] | `O(1)`; the entries are then read out in one pass |
//!
//! The slab passes cover the highest number of entries held since the queue was last
//! empty, holes included.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

mod lane;
mod radix;
mod slab;
#[cfg(test)]
mod test;

use lane::{Key, Lane};
use slab::Slab;

/// A priority: an `f64` that is not NaN, ordered totally (`-0.0` is stored as `0.0`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prio(f64);

impl Prio {
    /// `None` for NaN.
    pub(crate) fn new(p: f64) -> Option<Prio> {
        if p.is_nan() {
            None
        } else if p == 0.0 {
            Some(Prio(0.0))
        } else {
            Some(Prio(p))
        }
    }

    pub(crate) fn get(self) -> f64 {
        self.0
    }

    /// The priority as a `u64` in the same order, for the radix sort: negative numbers
    /// have every bit flipped (a larger magnitude is smaller), positive ones the sign bit
    /// set (above every negative one), which is `f64::total_cmp`'s order.
    fn key(self) -> u64 {
        let b = self.0.to_bits();
        if b >> 63 == 1 { !b } else { b | 1 << 63 }
    }

    /// The inverse of [`key`](Self::key).
    fn from_key(k: u64) -> Prio {
        Prio(f64::from_bits(if k >> 63 == 1 {
            k & !(1 << 63)
        } else {
            !k
        }))
    }
}

impl PartialEq for Prio {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Prio {}

impl PartialOrd for Prio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Prio {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The workers an entry may run on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    /// Any worker.
    Any,
    /// One of these workers (sorted, no duplicates, not empty).
    Ids(Box<[usize]>),
}

impl Bucket {
    /// A bucket of the given ids (sorted and deduplicated here).
    pub(crate) fn ids(mut ids: Vec<usize>) -> Bucket {
        ids.sort_unstable();
        ids.dedup();
        Bucket::Ids(ids.into_boxed_slice())
    }

    /// True if `worker` may take entries of this bucket.
    pub(crate) fn admits(&self, worker: usize) -> bool {
        match self {
            Bucket::Any => true,
            Bucket::Ids(ids) => ids.binary_search(&worker).is_ok(),
        }
    }
}

/// A task: its number (unique in the queue, handed out in order) and the index of its
/// record, which is reused once the task has ended (the number tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskKey {
    pub(crate) n: u64,
    pub(crate) slot: u32,
}

/// A queued entry.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// The task this entry belongs to (all parts of an all-workers task share it).
    pub(crate) task: TaskKey,
    /// The entry's own sequence number: its place among equal priorities.
    pub(crate) seq: u64,
    pub(crate) bucket: Bucket,
    pub(crate) prio: Prio,
    pub(crate) payload: T,
}

/// A hasher for the buckets (a tag and a few worker ids): FNV-like, instead of SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`SeqHasher`].
pub(crate) type SeqMap<K, V> = HashMap<K, V, BuildHasherDefault<SeqHasher>>;

/// The queued entries of one task, by index: none, one (no allocation), or the parts of an
/// all-workers task.
#[derive(Debug)]
enum Parts {
    None,
    One(u32),
    Many(Vec<u32>),
}

impl Parts {
    fn add(&mut self, slot: u32) {
        match self {
            Parts::None => *self = Parts::One(slot),
            Parts::One(s) => *self = Parts::Many(vec![*s, slot]),
            Parts::Many(v) => v.push(slot),
        }
    }

    fn remove(&mut self, slot: u32) {
        match self {
            Parts::One(s) if *s == slot => *self = Parts::None,
            Parts::Many(v) => v.retain(|&s| s != slot),
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Parts::None => true,
            Parts::One(_) => false,
            Parts::Many(v) => v.is_empty(),
        }
    }

    fn to_vec(&self) -> Vec<u32> {
        match self {
            Parts::None => Vec::new(),
            Parts::One(s) => vec![*s],
            Parts::Many(v) => v.clone(),
        }
    }
}

/// What the core knows of a task: kept while any part of it is queued or running.
#[derive(Debug)]
struct TaskRec {
    n: u64,
    queued: Parts,
    running: u32,
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Some part of it is queued.
    Queued,
    /// Nothing queued, some part taken by [`Core::pop_for`] and not finished.
    Running,
    /// Ended, or never queued.
    Gone,
}

/// Where an entry stood in the queue: all of it but the payload.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) task: TaskKey,
    seq: u64,
    bucket: Bucket,
    prio: Prio,
}

impl<T> Entry<T> {
    /// The entry's key in its bucket's lane.
    fn key(&self) -> Key {
        Key {
            prio: self.prio.key(),
            seq: self.seq,
        }
    }

    /// Splits the entry into its place and its payload.
    pub(crate) fn split(self) -> (Place, T) {
        (
            Place {
                task: self.task,
                seq: self.seq,
                bucket: self.bucket,
                prio: self.prio,
            },
            self.payload,
        )
    }
}

/// A key and its entry's index, as lanes hold them.
type Keyed = (Key, u32);

/// The queue core; `T` is what an entry carries (the type-erased task, or a test value).
#[derive(Debug)]
pub(crate) struct Core<T> {
    next_seq: u64,
    next_task: u64,
    entries: Slab<Entry<T>>,
    tasks: Slab<TaskRec>,
    buckets: SeqMap<Bucket, Lane>,
    /// Parts taken by `pop_for` and not finished: the sum of the tasks' `running`.
    running: usize,
    /// True while `entries` holds its entries in sequence order: since it was last empty,
    /// each entry went to its end with a sequence number above the ones before (a queue
    /// filled in order, whatever was taken since).
    in_order: bool,
    /// The sequence number of the last entry inserted.
    last_seq: u64,
}

impl<T> Default for Core<T> {
    fn default() -> Self {
        Core {
            next_seq: 0,
            next_task: 0,
            entries: Slab::default(),
            tasks: Slab::default(),
            buckets: SeqMap::default(),
            running: 0,
            in_order: true,
            last_seq: 0,
        }
    }
}

impl<T> Core<T> {
    /// Number of queued entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if task number `n` was handed out by [`new_task`](Self::new_task).
    pub(crate) fn issued(&self, n: u64) -> bool {
        n < self.next_task
    }

    /// A new task, with nothing queued yet: [`push`](Self::push) its parts at once (a task
    /// with no part queued or running is forgotten at the next change of its parts).
    pub(crate) fn new_task(&mut self) -> TaskKey {
        let n = self.next_task;
        self.next_task += 1;
        let slot = self.tasks.insert(TaskRec {
            n,
            queued: Parts::None,
            running: 0,
        });
        TaskKey { n, slot }
    }

    fn task(&self, t: TaskKey) -> Option<&TaskRec> {
        self.tasks.get(t.slot).filter(|r| r.n == t.n)
    }

    fn task_mut(&mut self, t: TaskKey) -> Option<&mut TaskRec> {
        self.tasks.get_mut(t.slot).filter(|r| r.n == t.n)
    }

    /// Where task `t` stands.
    pub(crate) fn task_state(&self, t: TaskKey) -> TaskState {
        match self.task(t) {
            Some(r) if !r.queued.is_empty() => TaskState::Queued,
            Some(r) if r.running > 0 => TaskState::Running,
            _ => TaskState::Gone,
        }
    }

    /// Queues an entry of task `task`; returns its sequence number.
    pub(crate) fn push(&mut self, task: TaskKey, bucket: Bucket, prio: Prio, payload: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(Entry {
            task,
            seq,
            bucket,
            prio,
            payload,
        });
        seq
    }

    /// Puts back an entry taken by [`pop_for`](Self::pop_for) (a worker that could not
    /// run it): it keeps its sequence number, so its place among equals, and its task
    /// counts it queued again instead of running.
    pub(crate) fn requeue(&mut self, place: Place, payload: T) {
        if let Some(r) = self.task_mut(place.task).filter(|r| r.running > 0) {
            r.running -= 1;
            self.running -= 1;
        }
        self.insert(Entry {
            task: place.task,
            seq: place.seq,
            bucket: place.bucket,
            prio: place.prio,
            payload,
        });
    }

    fn insert(&mut self, e: Entry<T>) {
        let (task, seq) = (e.task, e.seq);
        let slot = self.entries.insert(e);
        self.in_order = self.entries.len() == 1
            || (self.in_order && slot as usize + 1 == self.entries.end() && seq > self.last_seq);
        self.last_seq = seq;
        let e = self.entries.get(slot).expect("just inserted");
        match self.buckets.get_mut(&e.bucket) {
            Some(lane) => lane.insert(e.key(), slot),
            None => {
                let lane = Lane::from_sorted(vec![(e.key(), slot)]);
                self.buckets.insert(e.bucket.clone(), lane);
            }
        }
        if let Some(r) = self.task_mut(task) {
            r.queued.add(slot);
        }
    }

    /// Takes the best entry `worker` may run: the lowest `(priority, sequence)` among the
    /// buckets that admit it. Its task counts it running until [`finish`](Self::finish).
    pub(crate) fn pop_for(&mut self, worker: usize) -> Option<Entry<T>> {
        let mut best: Option<(&mut Lane, Key)> = None;
        for (b, lane) in &mut self.buckets {
            if !b.admits(worker) {
                continue;
            }
            if let Some((head, _)) = lane.first()
                && best.as_ref().is_none_or(|(_, h)| head < *h)
            {
                best = Some((lane, head));
            }
        }
        let (lane, _) = best?;
        let (_, slot) = lane.pop_first().expect("the lane has a first key");
        let emptied = lane.is_empty();
        let e = self.entries.remove(slot).expect("indexed entry exists");
        if emptied {
            self.buckets.remove(&e.bucket);
        }
        if let Some(r) = self.task_mut(e.task) {
            r.queued.remove(slot);
            r.running += 1;
            self.running += 1;
        }
        Some(e)
    }

    /// Counts a part of `task` taken by [`pop_for`](Self::pop_for) as ended.
    pub(crate) fn finish(&mut self, task: TaskKey) {
        let Some(r) = self.task_mut(task).filter(|r| r.running > 0) else {
            return;
        };
        r.running -= 1;
        let ended = r.running == 0 && r.queued.is_empty();
        self.running -= 1;
        if ended {
            self.tasks.remove(task.slot);
        }
    }

    /// Takes entry `slot` out of the slab and its task, not out of its lane.
    fn detach(&mut self, slot: u32) -> Option<Entry<T>> {
        let e = self.entries.remove(slot)?;
        if let Some(r) = self.task_mut(e.task) {
            r.queued.remove(slot);
            if r.running == 0 && r.queued.is_empty() {
                self.tasks.remove(e.task.slot);
            }
        }
        Some(e)
    }

    /// Takes entry `slot` out of every index.
    fn unlink(&mut self, slot: u32) -> Option<Entry<T>> {
        let e = self.detach(slot)?;
        if let Some(lane) = self.buckets.get_mut(&e.bucket) {
            lane.remove(e.key());
            if lane.is_empty() {
                self.buckets.remove(&e.bucket);
            }
        }
        Some(e)
    }

    /// Takes out the entries `keys` (sequence number, index), in sequence order: one by
    /// one from their lanes if they are few, else the lanes are rebuilt without them.
    fn take_in_seq_order(&mut self, mut keys: Vec<(u64, u32)>) -> Vec<Entry<T>> {
        radix::sort_by_u64(&mut keys, |k| k.0);
        if keys.len() * 4 < self.entries.len() {
            return keys
                .into_iter()
                .filter_map(|(_, s)| self.unlink(s))
                .collect();
        }
        let out = keys
            .into_iter()
            .filter_map(|(_, s)| self.detach(s))
            .collect();
        let entries = &self.entries;
        let still = |&(k, slot): &Keyed| entries.get(slot).is_some_and(|e| e.seq == k.seq);
        self.buckets = std::mem::take(&mut self.buckets)
            .into_iter()
            .map(|(b, lane)| (b, Lane::from_sorted(lane.iter().filter(still).collect())))
            .filter(|(_, lane)| !lane.is_empty())
            .collect();
        out
    }

    /// Removes every queued entry of `task`, in sequence order.
    pub(crate) fn remove_task(&mut self, task: TaskKey) -> Vec<Entry<T>> {
        let slots = self
            .task(task)
            .map(|r| r.queued.to_vec())
            .unwrap_or_default();
        let mut out: Vec<Entry<T>> = slots.into_iter().filter_map(|s| self.unlink(s)).collect();
        out.sort_by_key(|e| e.seq);
        out
    }

    /// The priority of `task`'s first queued entry.
    pub(crate) fn priority(&self, task: TaskKey) -> Option<f64> {
        let r = self.task(task)?;
        r.queued
            .to_vec()
            .into_iter()
            .filter_map(|s| self.entries.get(s))
            .min_by_key(|e| e.seq)
            .map(|e| e.prio.get())
    }

    /// Sets the priority of every queued entry of `task`; false if it has none.
    pub(crate) fn set_priority(&mut self, task: TaskKey, p: Prio) -> bool {
        let slots = self
            .task(task)
            .map(|r| r.queued.to_vec())
            .unwrap_or_default();
        if slots.is_empty() {
            return false;
        }
        for s in slots {
            let Some(e) = self.entries.get_mut(s) else {
                continue;
            };
            if e.prio == p {
                continue;
            }
            let lane = self.buckets.get_mut(&e.bucket).expect("bucket exists");
            lane.remove(e.key());
            e.prio = p;
            lane.insert(e.key(), s);
        }
        true
    }

    /// Recomputes every entry's priority with `f(entry, current)`. All or nothing: if `f`
    /// gives NaN for any entry, nothing changes and that value's entry is reported;
    /// nothing changes either until the last call of `f` has returned (so a panic in `f`
    /// leaves the core as it was).
    ///
    /// `O(n)`: the entries are visited in memory order (not in the order of a bucket,
    /// which after a reordering would be a cache miss per entry), the new keys
    /// radix-sorted per bucket, and each bucket then holds them as one sorted run.
    pub(crate) fn set_priorities(
        &mut self,
        mut f: impl FnMut(&Entry<T>, f64) -> f64,
    ) -> Result<(), (u64, f64)> {
        let (names, mut keyed) = {
            let index = self.bucket_index();
            let mut keyed: Vec<Vec<Keyed>> = index
                .names
                .iter()
                .map(|b| Vec::with_capacity(self.buckets[*b].len()))
                .collect();
            let mut last = 0;
            for (slot, e) in self.entries.iter() {
                let p = f(e, e.prio.get());
                let Some(p) = Prio::new(p) else {
                    return Err((e.task.n, p));
                };
                let k = Key {
                    prio: p.key(),
                    seq: e.seq,
                };
                last = index.of(&e.bucket, last);
                keyed[last].push((k, slot));
            }
            let names: Vec<Bucket> = index.names.into_iter().cloned().collect();
            (names, keyed)
        };
        // Every new priority is known: apply them, and order each bucket by them.
        for &(k, slot) in keyed.iter().flatten() {
            let e = self.entries.get_mut(slot).expect("indexed entry exists");
            e.prio = Prio::from_key(k.prio);
        }
        for v in &mut keyed {
            sort_keyed(v, self.in_order);
        }
        self.buckets = names
            .into_iter()
            .zip(keyed)
            .map(|(b, v)| (b, Lane::from_sorted(v)))
            .collect();
        Ok(())
    }

    /// The buckets, numbered, for bulk passes over the entries.
    fn bucket_index(&self) -> BucketIndex<'_> {
        let names: Vec<&Bucket> = self.buckets.keys().collect();
        let numbers = names.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        BucketIndex { names, numbers }
    }

    /// Removes the entries for which `pred` is true (called for every entry, in memory
    /// order, before anything changes), and returns them in sequence order.
    pub(crate) fn remove_where(
        &mut self,
        mut pred: impl FnMut(&Entry<T>) -> bool,
    ) -> Vec<Entry<T>> {
        let gone: Vec<(u64, u32)> = self
            .entries
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(slot, e)| (e.seq, slot))
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        self.take_in_seq_order(gone)
    }

    /// Removes the entries of buckets that `servable` rejects (no live worker left), in
    /// sequence order.
    pub(crate) fn remove_unservable(
        &mut self,
        mut servable: impl FnMut(&Bucket) -> bool,
    ) -> Vec<Entry<T>> {
        let dead: Vec<Bucket> = self
            .buckets
            .keys()
            .filter(|b| !servable(b))
            .cloned()
            .collect();
        let mut keys = Vec::new();
        for b in dead {
            if let Some(lane) = self.buckets.remove(&b) {
                keys.extend(lane.into_unordered().map(|(k, slot)| (k.seq, slot)));
            }
        }
        radix::sort_by_u64(&mut keys, |k| k.0);
        keys.into_iter()
            .filter_map(|(_, s)| self.detach(s))
            .collect()
    }

    /// Removes everything at once, in `O(1)` but for the tasks with parts running (their
    /// records stay): the entries keep their memory, to be read (under the queue's lock,
    /// for counting) and then taken in sequence order and freed (without it).
    pub(crate) fn drain(&mut self) -> Drained<T> {
        let tasks = if self.running == 0 {
            std::mem::take(&mut self.tasks)
        } else {
            self.tasks.retain(|r| {
                r.queued = Parts::None;
                r.running > 0
            });
            Slab::default()
        };
        Drained {
            entries: std::mem::take(&mut self.entries),
            in_order: self.in_order,
            _indexes: (std::mem::take(&mut self.buckets), tasks),
        }
    }
}

/// The entries taken out by [`Core::drain`].
#[derive(Debug)]
pub(crate) struct Drained<T> {
    entries: Slab<Entry<T>>,
    /// `entries` is in sequence order.
    in_order: bool,
    /// The old lanes and task records, freed with this rather than under the lock.
    _indexes: (SeqMap<Bucket, Lane>, Slab<TaskRec>),
}

impl<T> Drained<T> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries in sequence order: as they are stored in the usual case of a queue
    /// filled in order (one pass), else radix-sorted (`O(n)`).
    pub(crate) fn into_seq_order(self) -> IntoSeqOrder<T> {
        if self.in_order {
            return IntoSeqOrder::Stored(self.entries.into_slots().into_iter());
        }
        let mut keys: Vec<(u64, u32)> = self.entries.iter().map(|(i, e)| (e.seq, i)).collect();
        radix::sort_by_u64(&mut keys, |k| k.0);
        IntoSeqOrder::Sorted(keys.into_iter(), self.entries.into_slots())
    }
}

/// The iterator of [`Drained::into_seq_order`].
#[derive(Debug)]
pub(crate) enum IntoSeqOrder<T> {
    /// The slots in order.
    Stored(std::vec::IntoIter<Option<Entry<T>>>),
    /// The slots' indexes in sequence order, and the slots.
    Sorted(std::vec::IntoIter<(u64, u32)>, Vec<Option<Entry<T>>>),
}

impl<T> Iterator for IntoSeqOrder<T> {
    type Item = Entry<T>;

    fn next(&mut self) -> Option<Entry<T>> {
        match self {
            IntoSeqOrder::Stored(slots) => slots.find_map(|s| s),
            IntoSeqOrder::Sorted(keys, slots) => keys.find_map(|(_, i)| slots[i as usize].take()),
        }
    }
}

/// The buckets of a [`Core`], numbered.
struct BucketIndex<'a> {
    names: Vec<&'a Bucket>,
    numbers: SeqMap<&'a Bucket, usize>,
}

impl BucketIndex<'_> {
    /// The number of bucket `b` (one of the core's); `guess` is tried first, as
    /// neighbouring entries most often share their bucket.
    fn of(&self, b: &Bucket, guess: usize) -> usize {
        if self.names.get(guess).is_some_and(|&g| g == b) {
            guess
        } else {
            self.numbers[b]
        }
    }
}

/// Sorts one bucket's new keys, given in the order of the entries in memory (which is
/// sequence order if `in_seq_order`), by `(priority, sequence)`. Keys already in order, or
/// in reverse order, cost one look (and a reversal); else by sequence first (nothing to do
/// if in sequence order already), then stably by priority.
fn sort_keyed(v: &mut Vec<Keyed>, in_seq_order: bool) {
    if v.is_sorted_by_key(|k| k.0) {
        return;
    }
    if v.is_sorted_by(|a, b| a.0 > b.0) {
        v.reverse();
        return;
    }
    if !in_seq_order {
        radix::sort_by_u64(v, |k| k.0.seq);
    }
    radix::sort_by_u64(v, |k| k.0.prio);
}
