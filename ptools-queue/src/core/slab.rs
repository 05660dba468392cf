//! [`Slab`]: values at stable `u32` indexes in one vector, the freed indexes reused.

/// Values at stable indexes in one vector: `O(1)` insert, get and remove with no hashing,
/// and values that were inserted one after the other stay next to each other in memory
/// (a queue filled then drained in order walks the vector in order).
///
/// Freed indexes are reused last freed first, so a queue that stays short keeps reusing
/// the same few (cached) slots. When the slab becomes empty it starts over from index 0,
/// so a queue filled and drained again and again fills it in order each time. The vector
/// keeps the length of the most values it held since it was last empty.
#[derive(Debug)]
pub(crate) struct Slab<V> {
    slots: Vec<Option<V>>,
    /// Indexes of the free slots (the last one is reused first).
    free: Vec<u32>,
    len: usize,
}

impl<V> Default for Slab<V> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<V> Slab<V> {
    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `v`; returns its index.
    ///
    /// # Panics
    ///
    /// With `u32::MAX` values stored at once (hundreds of GiB of queued tasks): indexes
    /// stay below `u32::MAX`, which the lanes use as a mark.
    pub(crate) fn insert(&mut self, v: V) -> u32 {
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(v);
            self.len += 1;
            return i;
        }
        let i = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .expect("fewer than 2^32 - 1 queued values");
        self.slots.push(Some(v));
        self.len += 1;
        i
    }

    /// One past the highest index in use since the slab was last empty.
    pub(crate) fn end(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn get(&self, i: u32) -> Option<&V> {
        self.slots.get(i as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut V> {
        self.slots.get_mut(i as usize)?.as_mut()
    }

    /// The values with their indexes, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        // Indexes fit in `u32`: `insert` makes sure of it.
        (0u32..)
            .zip(&self.slots)
            .filter_map(|(i, v)| Some((i, v.as_ref()?)))
    }

    /// Keeps the values for which `f` is true (it may change them too).
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&mut V) -> bool) {
        for (i, slot) in (0u32..).zip(self.slots.iter_mut()) {
            if let Some(v) = slot
                && !f(v)
            {
                *slot = None;
                self.len -= 1;
                self.free.push(i);
            }
        }
        if self.len == 0 {
            self.slots.clear();
            self.free.clear();
        }
    }

    /// All the slots, for taking the values out in any order at once.
    pub(crate) fn into_slots(self) -> Vec<Option<V>> {
        self.slots
    }

    /// Takes the value at `i` out, if any.
    pub(crate) fn remove(&mut self, i: u32) -> Option<V> {
        let v = self.slots.get_mut(i as usize)?.take()?;
        self.len -= 1;
        if self.len == 0 {
            // Start over from index 0 (the vector keeps its capacity).
            self.slots.clear();
            self.free.clear();
        } else {
            self.free.push(i);
        }
        Some(v)
    }
}
