//! [`Lane`]: the ordered keys of one bucket, `O(1)` for the usual orders.

use std::collections::{BTreeMap, VecDeque};

/// An entry's place in its bucket: its priority (as `Prio::key`, an integer in the
/// priorities' order) then its sequence number. Comparing two is two integer compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) prio: u64,
    pub(crate) seq: u64,
}

/// The entry index of a removed key left in [`Lane::run`].
const GONE: u32 = u32::MAX;

/// The keys of one bucket with their entries' indexes, taken lowest first.
///
/// Most keys come in order: equal priorities in submission order (a FIFO), a whole
/// bucket just re-sorted by `set_priorities`, an entry put back in front. Those go to
/// `run`, a sorted deque: appended or prepended in `O(1)`, taken from the front in
/// `O(1)`, whatever the size (a tree costs `O(log n)` comparisons per insertion). Keys
/// that fall inside the run's range go to `tree`. The lowest key is the lower of the two
/// heads. A key removed from the middle of the run (a dequeue) is marked there and
/// dropped when it reaches an end, or when the marks are half of the run.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Sorted, strictly increasing keys; never a removed one at either end.
    run: VecDeque<(Key, u32)>,
    /// Removed keys still in `run`.
    gone: usize,
    /// The other keys.
    tree: BTreeMap<Key, u32>,
}

impl Lane {
    /// A lane of sorted keys (the order is checked in debug builds only).
    pub(crate) fn from_sorted(v: Vec<(Key, u32)>) -> Lane {
        debug_assert!(v.is_sorted_by(|a, b| a.0 < b.0));
        Lane {
            run: v.into(),
            gone: 0,
            tree: BTreeMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.run.len() - self.gone + self.tree.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `k` (not in the lane) with entry index `slot`.
    pub(crate) fn insert(&mut self, k: Key, slot: u32) {
        debug_assert_ne!(slot, GONE);
        match (self.run.front(), self.run.back()) {
            (Some(&(front, _)), Some(&(back, _))) => {
                if k > back {
                    self.run.push_back((k, slot));
                } else if k < front {
                    self.run.push_front((k, slot));
                } else {
                    self.tree.insert(k, slot);
                }
            }
            _ => self.run.push_back((k, slot)),
        }
    }

    /// The lowest key and its entry index.
    pub(crate) fn first(&self) -> Option<(Key, u32)> {
        let run = self.run.front().copied();
        let tree = self.tree.first_key_value().map(|(&k, &s)| (k, s));
        match (run, tree) {
            (Some(r), Some(t)) => Some(if r.0 < t.0 { r } else { t }),
            (r, t) => r.or(t),
        }
    }

    /// Takes the lowest key out.
    pub(crate) fn pop_first(&mut self) -> Option<(Key, u32)> {
        let first = self.first()?;
        if self.run.front().is_some_and(|r| r.0 == first.0) {
            self.run.pop_front();
            self.trim();
        } else {
            self.tree.pop_first();
        }
        Some(first)
    }

    /// Takes `k` out; false if it is not in the lane.
    pub(crate) fn remove(&mut self, k: Key) -> bool {
        if let Ok(i) = self.run.binary_search_by_key(&k, |r| r.0)
            && self.run[i].1 != GONE
        {
            self.run[i].1 = GONE;
            self.gone += 1;
            self.trim();
            if self.gone > 16 && self.gone * 2 > self.run.len() {
                self.run.retain(|r| r.1 != GONE);
                self.gone = 0;
            }
            return true;
        }
        self.tree.remove(&k).is_some()
    }

    /// Drops the removed keys at both ends of the run.
    fn trim(&mut self) {
        while self.run.front().is_some_and(|r| r.1 == GONE) {
            self.run.pop_front();
            self.gone -= 1;
        }
        while self.run.back().is_some_and(|r| r.1 == GONE) {
            self.run.pop_back();
            self.gone -= 1;
        }
    }

    /// The keys in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, u32)> + '_ {
        let mut run = self.run.iter().copied().filter(|r| r.1 != GONE).peekable();
        let mut tree = self.tree.iter().map(|(&k, &s)| (k, s)).peekable();
        std::iter::from_fn(move || match (run.peek(), tree.peek()) {
            (Some(r), Some(t)) => {
                if r.0 < t.0 {
                    run.next()
                } else {
                    tree.next()
                }
            }
            (Some(_), None) => run.next(),
            (None, _) => tree.next(),
        })
    }

    /// The keys, in no particular order.
    pub(crate) fn into_unordered(self) -> impl Iterator<Item = (Key, u32)> {
        self.run
            .into_iter()
            .filter(|r| r.1 != GONE)
            .chain(self.tree)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Key, Lane};

    fn key(prio: u64, seq: u64) -> Key {
        Key { prio, seq }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Pop,
        /// Remove the `n`-th key in order (modulo the length).
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..6).prop_map(Op::Insert),
            2 => Just(Op::Pop),
            2 => (0usize..100).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_sorted_set(
            start in proptest::collection::vec(0u64..6, 0..50),
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            // Keys (priority, sequence) with few priorities: in order, in front, inside.
            let mut seq = 0u64;
            let mut next = |p: u64| {
                seq += 1;
                key(p, seq)
            };
            let mut model: Vec<Key> = start.iter().map(|&p| next(p)).collect();
            model.sort();
            let mut lane = Lane::from_sorted(model.iter().map(|&k| (k, k.seq as u32)).collect());
            for op in ops {
                match op {
                    Op::Insert(p) => {
                        let k = next(p);
                        lane.insert(k, k.seq as u32);
                        let at = model.partition_point(|&m| m < k);
                        model.insert(at, k);
                    }
                    Op::Pop => {
                        let got = lane.pop_first();
                        let want = (!model.is_empty()).then(|| model.remove(0));
                        prop_assert_eq!(got, want.map(|k| (k, k.seq as u32)));
                    }
                    Op::Remove(n) => {
                        if !model.is_empty() {
                            let k = model.remove(n % model.len());
                            prop_assert!(lane.remove(k));
                            prop_assert!(!lane.remove(k));
                        }
                    }
                }
                prop_assert_eq!(lane.len(), model.len());
                prop_assert_eq!(lane.first().map(|f| f.0), model.first().copied());
                let all: Vec<Key> = lane.iter().map(|(k, _)| k).collect();
                prop_assert_eq!(&all, &model);
                prop_assert!(lane.iter().all(|(k, s)| s == k.seq as u32));
            }
            let mut rest: Vec<Key> = lane.into_unordered().map(|(k, _)| k).collect();
            rest.sort();
            prop_assert_eq!(rest, model);
        }
    }

    #[test]
    fn a_fifo_never_touches_the_tree() {
        let mut lane = Lane::default();
        for s in 0..10_000 {
            lane.insert(key(7, s), s as u32);
            if s.is_multiple_of(3) {
                assert_eq!(lane.pop_first().unwrap().0, key(7, s / 3));
            }
        }
        // Put back in front (a requeue), and removed from the middle (a dequeue).
        let (k, s) = lane.pop_first().unwrap();
        lane.insert(k, s);
        assert!(lane.remove(key(7, 5000)));
        assert!(lane.tree.is_empty());
        assert_eq!(lane.len(), 10_000 - 3334 - 1);
    }
}
