//! The queue core: a pure data structure, no threads and no processes.
//!
//! Every queued *entry* (one task, or one worker's part of an all-workers task) has a
//! priority and a sequence number given at submission; entries are ordered by
//! `(priority, sequence)`, so lower priorities run first and ties run in submission order.
//!
//! Entries live in *buckets*, one per distinct set of eligible workers: the any-worker
//! bucket, and one bucket per sorted list of worker ids (a host target is resolved to the
//! ids on that host when queued). A worker takes the best head among the buckets it
//! belongs to, so taking is `O(b log n)` for `b` buckets (a handful in practice: any,
//! one per worker, one per host), never a scan over tasks pinned elsewhere.
//!
//! | operation | cost |
//! |---|---|
//! | [`Core::push`], [`Core::requeue`] | `O(log n)` |
//! | [`Core::pop_for`] | `O(b log n)` |
//! | [`Core::remove_task`] | `O(p log n)` for the task's `p` parts (1, or one per worker) |
//! | [`Core::set_priorities`], [`Core::remove_where`] | `O(n log n)` (rebuilt in bulk) |

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

#[cfg(test)]
mod test;

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

/// A queued entry.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// The task this entry belongs to (all parts of an all-workers task share it).
    pub(crate) task: u64,
    /// The entry's own sequence number: its place among equal priorities.
    pub(crate) seq: u64,
    pub(crate) bucket: Bucket,
    pub(crate) prio: Prio,
    /// Scratch space for `set_priorities`.
    next: Prio,
    pub(crate) payload: T,
}

/// A hasher for the queue's integer keys (sequence numbers and task numbers, handed out
/// in order by the queue itself, so no adversary chooses them): one multiplication
/// (Fibonacci hashing) instead of SipHash, which dominated `set_priorities`.
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

/// A `HashMap` keyed by the queue's own integers.
pub(crate) type SeqMap<K, V> = HashMap<K, V, BuildHasherDefault<SeqHasher>>;

/// The queued entries of one task: one (no allocation), or the parts of an all-workers
/// task.
#[derive(Debug, Clone)]
enum Parts {
    One(u64),
    Many(Vec<u64>),
}

impl Parts {
    fn add(&mut self, seq: u64) {
        match self {
            Parts::One(s) => *self = Parts::Many(vec![*s, seq]),
            Parts::Many(v) => v.push(seq),
        }
    }

    /// Removes `seq`; true if no part is left.
    fn remove(&mut self, seq: u64) -> bool {
        match self {
            Parts::One(s) => *s == seq,
            Parts::Many(v) => {
                v.retain(|&s| s != seq);
                v.is_empty()
            }
        }
    }

    fn first(&self) -> u64 {
        match self {
            Parts::One(s) => *s,
            Parts::Many(v) => v.iter().copied().min().unwrap_or(u64::MAX),
        }
    }

    fn to_vec(&self) -> Vec<u64> {
        match self {
            Parts::One(s) => vec![*s],
            Parts::Many(v) => v.clone(),
        }
    }
}

/// Where an entry stood in the queue: all of it but the payload.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) task: u64,
    seq: u64,
    bucket: Bucket,
    prio: Prio,
}

impl<T> Entry<T> {
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

/// The queue core; `T` is what an entry carries (the type-erased task, or a test value).
#[derive(Debug)]
pub(crate) struct Core<T> {
    next_seq: u64,
    entries: SeqMap<u64, Entry<T>>,
    buckets: SeqMap<Bucket, BTreeSet<(Prio, u64)>>,
    /// The queued entries of each task.
    by_task: SeqMap<u64, Parts>,
}

impl<T> Default for Core<T> {
    fn default() -> Self {
        Core {
            next_seq: 0,
            entries: SeqMap::default(),
            buckets: SeqMap::default(),
            by_task: SeqMap::default(),
        }
    }
}

impl<T> Core<T> {
    /// Number of queued entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Queues an entry; returns its sequence number.
    pub(crate) fn push(&mut self, task: u64, bucket: Bucket, prio: Prio, payload: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.insert(Entry {
            task,
            seq,
            bucket,
            prio,
            next: prio,
            payload,
        });
        seq
    }

    /// Puts back an entry taken by [`pop_for`](Self::pop_for) (a worker that could not
    /// run it): it keeps its sequence number, so its place among equals.
    pub(crate) fn requeue(&mut self, place: Place, payload: T) {
        self.insert(Entry {
            task: place.task,
            seq: place.seq,
            bucket: place.bucket,
            prio: place.prio,
            next: place.prio,
            payload,
        });
    }

    fn insert(&mut self, e: Entry<T>) {
        match self.buckets.get_mut(&e.bucket) {
            Some(set) => {
                set.insert((e.prio, e.seq));
            }
            None => {
                self.buckets
                    .insert(e.bucket.clone(), BTreeSet::from([(e.prio, e.seq)]));
            }
        }
        match self.by_task.get_mut(&e.task) {
            Some(p) => p.add(e.seq),
            None => {
                self.by_task.insert(e.task, Parts::One(e.seq));
            }
        }
        self.entries.insert(e.seq, e);
    }

    /// Takes the best entry `worker` may run: the lowest `(priority, sequence)` among the
    /// buckets that admit it.
    pub(crate) fn pop_for(&mut self, worker: usize) -> Option<Entry<T>> {
        let mut best: Option<(&Bucket, (Prio, u64))> = None;
        for (b, set) in &self.buckets {
            if !b.admits(worker) {
                continue;
            }
            if let Some(&head) = set.first()
                && best.is_none_or(|(_, h)| head < h)
            {
                best = Some((b, head));
            }
        }
        let (b, (_, seq)) = best?;
        let b = b.clone();
        Some(self.unlink(&b, seq))
    }

    /// Removes entry `seq` (known to be queued in bucket `b`) from every index.
    fn unlink(&mut self, b: &Bucket, seq: u64) -> Entry<T> {
        let e = self.entries.remove(&seq).expect("indexed entry exists");
        if let Some(set) = self.buckets.get_mut(b) {
            set.remove(&(e.prio, seq));
            if set.is_empty() {
                self.buckets.remove(b);
            }
        }
        if let Some(p) = self.by_task.get_mut(&e.task)
            && p.remove(seq)
        {
            self.by_task.remove(&e.task);
        }
        e
    }

    /// Removes every queued entry of `task`.
    pub(crate) fn remove_task(&mut self, task: u64) -> Vec<Entry<T>> {
        let seqs = self
            .by_task
            .get(&task)
            .map(Parts::to_vec)
            .unwrap_or_default();
        seqs.into_iter()
            .map(|s| {
                let b = self.entries[&s].bucket.clone();
                self.unlink(&b, s)
            })
            .collect()
    }

    /// True if `task` has queued entries.
    pub(crate) fn has_task(&self, task: u64) -> bool {
        self.by_task.contains_key(&task)
    }

    /// The priority of `task`'s first queued entry.
    pub(crate) fn priority(&self, task: u64) -> Option<f64> {
        let s = self.by_task.get(&task)?.first();
        Some(self.entries[&s].prio.get())
    }

    /// Sets the priority of every queued entry of `task`; false if it has none.
    pub(crate) fn set_priority(&mut self, task: u64, p: Prio) -> bool {
        let Some(seqs) = self.by_task.get(&task).map(Parts::to_vec) else {
            return false;
        };
        for s in seqs {
            let e = self.entries.get_mut(&s).expect("indexed entry exists");
            let set = self.buckets.get_mut(&e.bucket).expect("bucket exists");
            set.remove(&(e.prio, s));
            e.prio = p;
            set.insert((p, s));
        }
        true
    }

    /// Recomputes every entry's priority with `f(entry, current)`. All or nothing: if `f`
    /// gives NaN for any entry, nothing changes and that value's entry is reported.
    pub(crate) fn set_priorities(
        &mut self,
        mut f: impl FnMut(&Entry<T>, f64) -> f64,
    ) -> Result<(), (u64, f64)> {
        // New values go to `next` first, so a NaN half-way leaves every priority as it was.
        for e in self.entries.values_mut() {
            let p = f(e, e.prio.get());
            match Prio::new(p) {
                Some(p) => e.next = p,
                None => return Err((e.task, p)),
            }
        }
        for e in self.entries.values_mut() {
            e.prio = e.next;
        }
        self.rebuild_buckets();
        Ok(())
    }

    /// Removes the entries for which `pred` is true.
    pub(crate) fn remove_where(
        &mut self,
        mut pred: impl FnMut(&Entry<T>) -> bool,
    ) -> Vec<Entry<T>> {
        let gone: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(&s, _)| s)
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        let out = gone
            .into_iter()
            .filter_map(|s| self.entries.remove(&s))
            .collect();
        self.rebuild();
        out
    }

    /// Rebuilds the bucket and task indexes from `entries`.
    fn rebuild(&mut self) {
        let mut by_task: SeqMap<u64, Parts> = SeqMap::default();
        by_task.reserve(self.entries.len());
        for e in self.entries.values() {
            match by_task.get_mut(&e.task) {
                Some(p) => p.add(e.seq),
                None => {
                    by_task.insert(e.task, Parts::One(e.seq));
                }
            }
        }
        self.by_task = by_task;
        self.rebuild_buckets();
    }

    /// Rebuilds the bucket trees from `entries`: one sort and bulk builds, several times
    /// cheaper than `n` single updates of the trees.
    fn rebuild_buckets(&mut self) {
        let mut keyed: Vec<(&Bucket, Prio, u64)> = self
            .entries
            .values()
            .map(|e| (&e.bucket, e.prio, e.seq))
            .collect();
        keyed.sort_unstable_by_key(|k| (k.1, k.2));
        let mut buckets: Vec<(&Bucket, Vec<(Prio, u64)>)> = Vec::new();
        for (b, p, s) in keyed {
            // Buckets are few: a linear search, most often hitting the first one.
            match buckets.iter_mut().find(|(x, _)| *x == b) {
                Some((_, v)) => v.push((p, s)),
                None => buckets.push((b, vec![(p, s)])),
            }
        }
        // Sorted input: `BTreeSet::from_iter` builds the tree in bulk.
        let rebuilt = buckets
            .into_iter()
            .map(|(b, v)| (b.clone(), v.into_iter().collect()))
            .collect();
        self.buckets = rebuilt;
    }

    /// Removes the entries of buckets that `servable` rejects (no live worker left).
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
        let mut out = Vec::new();
        for b in dead {
            let seqs: Vec<u64> = self.buckets[&b].iter().map(|&(_, s)| s).collect();
            for s in seqs {
                out.push(self.unlink(&b, s));
            }
        }
        out.sort_by_key(|e| e.seq);
        out
    }

    /// Removes everything.
    pub(crate) fn drain(&mut self) -> Vec<Entry<T>> {
        self.buckets.clear();
        self.by_task.clear();
        let mut v: Vec<Entry<T>> = self.entries.drain().map(|(_, e)| e).collect();
        v.sort_by_key(|e| e.seq);
        v
    }
}
