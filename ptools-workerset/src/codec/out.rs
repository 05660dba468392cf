//! Where an encoding goes: a `Vec<u8>`, which may move into a shared-memory region once it
//! is large (see `cluster/PROTOCOL.md`, "Large payloads").
//!
//! A large argument or result used to be encoded into a `Vec` and then copied into its
//! region; with a region lent to [`Out::with_region`], the encoding starts in the `Vec`
//! (a small one stays there and goes on the socket) and moves into the region when it
//! reaches the threshold: what is written from then on lands in the region directly, so a
//! `Vec<u8>` or `Vec<f64>` argument or result is copied once, into the region, by the
//! codec's bulk path.

use crate::sys::Region;

/// An encoding being written: bytes appended to a `Vec` from its current length (the
/// *start*, after any header the caller put there), or, once spilled, to a region from
/// its offset 0.
pub(crate) struct Out<'r> {
    vec: Vec<u8>,
    /// `vec.len()` above which the payload moves to the region: `usize::MAX` without one
    /// (or once it failed to grow), 0 once spilled (every write takes the slow path).
    limit: usize,
    /// Where the payload starts in `vec`.
    start: usize,
    /// The payload size that moves it to the region.
    threshold: usize,
    /// The largest payload the region is grown for: a larger one (over the link's frame
    /// cap, refused anyway) moves back to the `Vec`, so it leaves no region that large.
    max: usize,
    region: Option<&'r mut Region>,
    /// The payload's length in the region, once spilled.
    spilled: Option<usize>,
}

impl Out<'static> {
    /// Appends to `vec`, never spilling.
    pub(crate) fn new(vec: Vec<u8>) -> Out<'static> {
        Out {
            vec,
            limit: usize::MAX,
            start: 0,
            threshold: usize::MAX,
            max: 0,
            region: None,
            spilled: None,
        }
    }
}

impl<'r> Out<'r> {
    /// Appends to `vec`; a payload (what is appended) of `threshold` bytes or more, up to
    /// `max`, moves to `region`, from its offset 0, when the region can hold it. The caller
    /// owns the region for writing until [`Out::finish`] (its peer reads nothing there
    /// meanwhile).
    pub(crate) fn with_region(
        vec: Vec<u8>,
        region: &'r mut Region,
        threshold: usize,
        max: usize,
    ) -> Out<'r> {
        let start = vec.len();
        Out {
            limit: start.saturating_add(threshold),
            vec,
            start,
            threshold,
            max,
            region: Some(region),
            spilled: None,
        }
    }

    /// The position after the last byte written, counted as if everything were in the
    /// `Vec` (the header included).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self.spilled {
            None => self.vec.len(),
            Some(n) => self.start + n,
        }
    }

    /// The payload's length in the region, if it went there.
    pub(crate) fn spilled(&self) -> Option<usize> {
        self.spilled
    }

    /// The payload's length (without the header).
    pub(crate) fn payload_len(&self) -> usize {
        self.len() - self.start
    }

    #[inline]
    pub(crate) fn push(&mut self, b: u8) {
        self.extend(&[b]);
    }

    #[inline]
    pub(crate) fn extend(&mut self, b: &[u8]) {
        if self.vec.len() + b.len() < self.limit {
            self.vec.extend_from_slice(b);
        } else {
            self.extend_slow(b);
        }
    }

    #[cold]
    #[inline(never)]
    fn extend_slow(&mut self, b: &[u8]) {
        if self.spilled.is_none() && !self.spill(b.len()) {
            self.vec.extend_from_slice(b);
            return;
        }
        let n = self.spilled.unwrap_or(0);
        if self.grow(n + b.len()) {
            let r = self.region.as_deref_mut().expect("spilled into a region");
            r.write(n, b);
            self.spilled = Some(n + b.len());
        } else {
            self.vec.extend_from_slice(b);
        }
    }

    /// Moves the payload into the region, with room for `more` bytes after it; false (and
    /// the `Vec` for good) when the region cannot hold it.
    fn spill(&mut self, more: usize) -> bool {
        let n = self.vec.len() - self.start;
        let Some(r) = self.region.as_deref_mut() else {
            self.limit = usize::MAX;
            return false;
        };
        if n + more > self.max || r.ensure(n + more).is_err() {
            self.limit = usize::MAX;
            return false;
        }
        r.write(0, &self.vec[self.start..]);
        self.vec.truncate(self.start);
        self.spilled = Some(n);
        self.limit = 0;
        true
    }

    /// Makes the region hold `len` payload bytes; when it cannot (over `max`, or out of
    /// memory), moves
    /// the payload back into the `Vec` (the region is ours: nobody else writes it) and
    /// stays there. True when the payload is (still) in the region.
    fn grow(&mut self, len: usize) -> bool {
        let r = self.region.as_deref_mut().expect("spilled into a region");
        if len <= self.max && r.ensure(len).is_ok() {
            return true;
        }
        let n = self.spilled.take().unwrap_or(0);
        r.copy_out(0, n, &mut self.vec);
        self.limit = usize::MAX;
        false
    }

    /// Inserts `b` at position `at` (a value of [`Out::len`] taken during this payload).
    pub(crate) fn insert(&mut self, at: usize, b: &[u8]) {
        match self.spilled {
            None => {
                self.vec.splice(at..at, b.iter().copied());
            }
            Some(n) => {
                let off = at - self.start;
                if self.grow(n + b.len()) {
                    let r = self.region.as_deref_mut().expect("spilled into a region");
                    r.copy_within(off, off + b.len(), n - off);
                    r.write(off, b);
                    self.spilled = Some(n + b.len());
                } else {
                    self.vec.splice(at..at, b.iter().copied());
                }
            }
        }
    }

    /// Drops everything written after position `at` (at least the start): the payload is
    /// back in the `Vec` if it was spilled and `at` is the start.
    pub(crate) fn truncate(&mut self, at: usize) {
        match self.spilled {
            None => self.vec.truncate(at),
            Some(_) if at <= self.start => {
                self.vec.truncate(at);
                self.spilled = None;
                self.limit = self.start.saturating_add(self.threshold);
            }
            Some(_) => self.spilled = Some(at - self.start),
        }
    }

    /// The `Vec` (header and payload, or header only) and, when the payload went to the
    /// region, its length there (from offset 0).
    pub(crate) fn finish(self) -> (Vec<u8>, Option<usize>) {
        if let Some(r) = self.region {
            r.settle(self.spilled.unwrap_or(0));
        }
        (self.vec, self.spilled)
    }

    /// The payload into the `Vec` after all (it was spilled into the region): for a
    /// payload that must go on the socket after all (an error message, say).
    pub(crate) fn unspill(&mut self) {
        if let Some(n) = self.spilled.take() {
            let r = self.region.as_deref_mut().expect("spilled into a region");
            r.copy_out(0, n, &mut self.vec);
            self.limit = usize::MAX;
        }
    }
}

#[cfg(all(test, target_os = "linux", not(ptools_stub)))]
mod tests {
    use super::*;

    /// What `v` encodes to through an `Out` lent a region with `threshold`, with a header
    /// of 3 bytes: the bytes (from the `Vec` or the region) and whether they spilled.
    fn through_region<T: serde::Serialize + ?Sized>(v: &T, threshold: usize) -> (Vec<u8>, bool) {
        let mut r = Region::create().unwrap();
        let mut out = Out::with_region(vec![7, 8, 9], &mut r, threshold, usize::MAX);
        crate::codec::encode_out(v, &mut out).unwrap();
        let len = out.payload_len();
        let (vec, spilled) = out.finish();
        assert_eq!(&vec[..3], &[7, 8, 9]);
        match spilled {
            None => (vec[3..].to_vec(), false),
            Some(n) => {
                assert_eq!((vec.len(), n), (3, len));
                let mut back = Vec::new();
                r.copy_out(0, n, &mut back);
                (back, true)
            }
        }
    }

    #[test]
    fn large_payloads_spill_with_the_same_bytes() {
        let bulk: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let pairs: Vec<(u32, u16)> = (0..30_000).map(|i| (i, i as u16 ^ 5)).collect();
        let strings: Vec<String> = (0..5_000).map(|i| format!("item {i}")).collect();
        for threshold in [1, 1000, 64 * 1024, 1 << 30] {
            for (got, want) in [
                (
                    through_region(&bulk, threshold),
                    crate::codec::encode(&bulk),
                ),
                (
                    through_region(&pairs, threshold),
                    crate::codec::encode(&pairs),
                ),
                (
                    through_region(&strings, threshold),
                    crate::codec::encode(&strings),
                ),
            ] {
                let want = want.unwrap();
                assert_eq!(got.0, want);
                assert_eq!(got.1, want.len() >= threshold, "threshold {threshold}");
            }
        }
    }

    /// A sequence of unknown length gets its length inserted before its elements at the
    /// end, in the region once spilled.
    #[test]
    fn unknown_lengths_are_inserted_in_the_region() {
        struct Odd(usize);
        impl serde::Serialize for Odd {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq((0..self.0).filter(|i| i % 2 == 1).map(|i| i as u64))
            }
        }
        let v = (5u8, Odd(40_000), "tail");
        let want = crate::codec::encode(&v).unwrap();
        for threshold in [1, 100, 1 << 30] {
            assert_eq!(through_region(&v, threshold).0, want);
        }
    }

    /// One payload through `r` (lent as a free region): `n` bytes of `b`.
    fn payload(r: &mut Region, n: usize, b: u8) -> Option<usize> {
        let mut out = Out::with_region(Vec::new(), r, 64 * 1024, usize::MAX);
        out.extend(&vec![b; n]);
        out.finish().1
    }

    #[test]
    fn a_run_of_small_payloads_gives_a_large_ones_pages_back() {
        const MIB: usize = 1 << 20;
        let mut r = Region::create().unwrap();
        assert_eq!(payload(&mut r, 24 * MIB, 1), Some(24 * MIB));
        assert!(r.resident() >= 24 * MIB);
        // Large payloads in between reset the count: nothing is given back.
        for _ in 0..3 {
            for _ in 0..15 {
                assert_eq!(payload(&mut r, 100, 2), None);
            }
            assert!(r.resident() >= 24 * MIB);
            assert_eq!(payload(&mut r, 8 * MIB, 3), Some(8 * MIB));
        }
        // 16 in a row under a quarter: the pages past 4 MiB go back.
        for _ in 0..15 {
            payload(&mut r, 100, 4);
        }
        assert!(r.resident() >= 24 * MIB);
        payload(&mut r, 100, 4);
        assert!(r.resident() <= 4 * MIB, "{} bytes still held", r.resident());
        // The region still works, at any size, with the same bytes.
        for n in [5 * MIB, 30 * MIB, 70_000] {
            assert_eq!(payload(&mut r, n, 9), Some(n));
            let mut back = Vec::new();
            r.copy_out(0, n, &mut back);
            assert!(back.len() == n && back.iter().all(|&b| b == 9));
        }
        // A payload over the kept 4 MiB keeps its own pages when the rest goes.
        assert_eq!(payload(&mut r, 30 * MIB, 5), Some(30 * MIB));
        assert!(r.resident() >= 30 * MIB);
        for _ in 0..16 {
            payload(&mut r, 6 * MIB, 6);
        }
        let held = r.resident();
        assert!((6 * MIB..8 * MIB).contains(&held), "{held} bytes held");
        let mut back = Vec::new();
        r.copy_out(0, 6 * MIB, &mut back);
        assert!(back.iter().all(|&b| b == 6));
    }

    #[test]
    fn truncating_to_the_start_brings_the_payload_back() {
        let mut r = Region::create().unwrap();
        let mut out = Out::with_region(vec![1], &mut r, 16, 100);
        out.extend(&[3; 40]);
        assert_eq!(out.spilled(), Some(40));
        out.truncate(21);
        assert_eq!((out.spilled(), out.len()), (Some(20), 21));
        out.truncate(1);
        assert_eq!(out.spilled(), None);
        out.extend(b"short");
        assert_eq!(out.finish(), (b"\x01short".to_vec(), None));
        let mut out = Out::with_region(vec![1], &mut r, 16, 100);
        out.extend(&[4; 40]);
        out.unspill();
        assert_eq!(out.finish(), ([&[1u8][..], &[4; 40]].concat(), None));
        // Past `max`, the payload comes back and stays in the `Vec`.
        let mut out = Out::with_region(vec![1], &mut r, 16, 100);
        out.extend(&[5; 60]);
        assert_eq!(out.spilled(), Some(60));
        out.extend(&[6; 60]);
        assert_eq!((out.spilled(), out.payload_len()), (None, 120));
        out.extend(&[7; 10]);
        let want = [&[1u8][..], &[5; 60], &[6; 60], &[7; 10]].concat();
        assert_eq!(out.finish(), (want, None));
    }
}
