//! A stable radix sort by `u64` keys: `O(n)` per pass, one pass per byte of the key that
//! is not the same in every element, so sorting the queue's keys costs the same per key
//! at any queue size (a comparison sort costs `O(log n)` per key).

/// Below this many elements, the standard library's stable sort is as fast.
const SMALL: usize = 256;

/// Sorts `v` by `key`, stably (elements with equal keys keep their order): least
/// significant byte first, skipping the bytes every key has in common. Input already in
/// order costs one look.
pub(crate) fn sort_by_u64<T: Copy>(v: &mut Vec<T>, key: impl Fn(&T) -> u64) {
    if v.is_sorted_by_key(&key) {
        return;
    }
    if v.len() < SMALL {
        v.sort_by_key(|x| key(x));
        return;
    }
    let n = v.len();
    // One pass counts the bytes at every position.
    let mut counts = vec![[0usize; 256]; 8];
    for x in v.iter() {
        let k = key(x);
        for (b, c) in counts.iter_mut().enumerate() {
            c[usize::from((k >> (8 * b)) as u8)] += 1;
        }
    }
    let mut scratch: Vec<T> = Vec::new();
    for (b, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            // Every key has the same byte here: this pass would not move anything.
            continue;
        }
        let mut at = [0usize; 256];
        let mut sum = 0;
        for (a, &k) in at.iter_mut().zip(c) {
            *a = sum;
            sum += k;
        }
        if scratch.len() != n {
            scratch = v.clone();
        }
        for x in v.iter() {
            let d = usize::from((key(x) >> (8 * b)) as u8);
            scratch[at[d]] = *x;
            at[d] += 1;
        }
        std::mem::swap(v, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::sort_by_u64;

    proptest! {
        #[test]
        fn sorts_as_the_stable_std_sort(
            keys in proptest::collection::vec(any::<u64>(), 0..2000),
            shift in 0u32..64,
            mask in any::<u64>(),
        ) {
            // Keys narrowed in various ways, so that many passes are skipped and many
            // keys are equal (stability shows).
            let v: Vec<(u64, usize)> =
                keys.iter().enumerate().map(|(i, k)| ((k & mask) >> shift, i)).collect();
            let mut want = v.clone();
            want.sort_by_key(|x| x.0);
            let mut got = v;
            sort_by_u64(&mut got, |x| x.0);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn large_inputs_in_every_order() {
        let n = 100_000u64;
        let mut asc: Vec<(u64, u64)> = (0..n).map(|i| (i / 3, i)).collect();
        let want = asc.clone();
        sort_by_u64(&mut asc, |x| x.0);
        assert_eq!(asc, want);
        let mut desc: Vec<(u64, u64)> = (0..n).rev().map(|i| (i, i)).collect();
        sort_by_u64(&mut desc, |x| x.0);
        assert!(desc.iter().map(|x| x.0).eq(0..n));
        let mut mixed: Vec<(u64, u64)> = (0..n)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7, i))
            .collect();
        let mut want = mixed.clone();
        want.sort_by_key(|x| x.0);
        sort_by_u64(&mut mixed, |x| x.0);
        assert_eq!(mixed, want);
    }
}
