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
    pub(crate) payload: T,
}

/// The queue core; `T` is what an entry carries (the type-erased task, or a test value).
#[derive(Debug)]
pub(crate) struct Core<T> {
    next_seq: u64,
    entries: HashMap<u64, Entry<T>>,
    buckets: HashMap<Bucket, BTreeSet<(Prio, u64)>>,
    /// The queued entries of each task.
    by_task: HashMap<u64, Vec<u64>>,
}

impl<T> Default for Core<T> {
    fn default() -> Self {
        Core {
            next_seq: 0,
            entries: HashMap::new(),
            buckets: HashMap::new(),
            by_task: HashMap::new(),
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
            payload,
        });
        seq
    }

    /// Puts back an entry taken by [`pop_for`](Self::pop_for) (a worker that could not
    /// run it): it keeps its sequence number, so its place among equals.
    pub(crate) fn requeue(&mut self, e: Entry<T>) {
        self.insert(e);
    }

    fn insert(&mut self, e: Entry<T>) {
        self.buckets
            .entry(e.bucket.clone())
            .or_default()
            .insert((e.prio, e.seq));
        self.by_task.entry(e.task).or_default().push(e.seq);
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
        if let Some(v) = self.by_task.get_mut(&e.task) {
            v.retain(|&s| s != seq);
            if v.is_empty() {
                self.by_task.remove(&e.task);
            }
        }
        e
    }

    /// Removes every queued entry of `task`.
    pub(crate) fn remove_task(&mut self, task: u64) -> Vec<Entry<T>> {
        let seqs = self.by_task.get(&task).cloned().unwrap_or_default();
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
        let s = self.by_task.get(&task)?.first()?;
        Some(self.entries[s].prio.get())
    }

    /// Sets the priority of every queued entry of `task`; false if it has none.
    pub(crate) fn set_priority(&mut self, task: u64, p: Prio) -> bool {
        let Some(seqs) = self.by_task.get(&task).cloned() else {
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
        let mut new = Vec::with_capacity(self.entries.len());
        for (&s, e) in &self.entries {
            let p = f(e, e.prio.get());
            match Prio::new(p) {
                Some(p) => new.push((s, p)),
                None => return Err((e.task, p)),
            }
        }
        for (s, p) in new {
            if let Some(e) = self.entries.get_mut(&s) {
                e.prio = p;
            }
        }
        self.rebuild();
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

    /// Rebuilds the bucket and task indexes from `entries`: a sort and bulk builds, much
    /// cheaper than n single updates of the trees.
    fn rebuild(&mut self) {
        let mut keyed: Vec<(&Bucket, Prio, u64, u64)> = self
            .entries
            .values()
            .map(|e| (&e.bucket, e.prio, e.seq, e.task))
            .collect();
        keyed.sort_unstable_by_key(|k| (k.1, k.2));
        let mut buckets: HashMap<Bucket, Vec<(Prio, u64)>> = HashMap::new();
        let mut by_task: HashMap<u64, Vec<u64>> = HashMap::with_capacity(keyed.len());
        for (b, p, s, t) in keyed {
            match buckets.get_mut(b) {
                Some(v) => v.push((p, s)),
                None => {
                    buckets.insert(b.clone(), vec![(p, s)]);
                }
            }
            by_task.entry(t).or_default().push(s);
        }
        for v in by_task.values_mut() {
            v.sort_unstable();
        }
        // Sorted input: `BTreeSet::from_iter` builds the tree in bulk.
        self.buckets = buckets
            .into_iter()
            .map(|(b, v)| (b, v.into_iter().collect()))
            .collect();
        self.by_task = by_task;
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
