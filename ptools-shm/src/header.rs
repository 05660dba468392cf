//! The header at the start of every segment, and its byte encoding.
//!
//! Layout (native byte order: a segment never leaves its machine), 128 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `PTOOLSHM` |
//! | 8 | 4 | version |
//! | 12 | 4 | ready flag, written last (a separate write after the rest) |
//! | 16 | 1 | element tag (kind, log2 size) |
//! | 17 | 1 | rank |
//! | 18 | 2 | reserved, zero |
//! | 20 | 4 | owner pid |
//! | 24 | 8 | owner start time (clock ticks since boot on Linux) |
//! | 32 | 8 | data offset in bytes |
//! | 40 | 8 | element count |
//! | 48 | 8 | reserved, zero |
//! | 56 | 64 | dims, 8 x u64, unused axes zero |
//! | 120 | 8 | reserved, zero |
//!
//! The data follows at [`HEADER_LEN`], so it is 128-byte aligned in a page-aligned mapping.
//! This module is pure memory work (no system calls), so it runs under Miri.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::ElemType;
use crate::cfg::MAX_RANK;

/// Bytes before the data.
pub(crate) const HEADER_LEN: usize = 128;
pub(crate) const MAGIC: [u8; 8] = *b"PTOOLSHM";
pub(crate) const VERSION: u32 = 1;
/// The ready flag's value once the header is complete ("REDY").
pub(crate) const READY: u32 = 0x5245_4459;
pub(crate) const READY_AT: usize = 12;

/// The decoded header of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) elem: ElemType,
    pub(crate) dims: Vec<usize>,
    pub(crate) owner_pid: u32,
    pub(crate) owner_start: u64,
}

/// Why a header did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short,
    /// Not our magic or version: a foreign object.
    Foreign,
    /// Our magic, but the ready flag is not set yet.
    NotReady,
    /// Our magic and ready, but fields that contradict each other.
    Corrupt,
}

impl Header {
    /// The element count.
    pub(crate) fn len(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).product()
    }

    /// Data bytes (element count times element size).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.len() * self.elem.size() as u64
    }

    /// The whole header with the ready flag clear; the flag is set separately.
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        debug_assert!(!self.dims.is_empty() && self.dims.len() <= MAX_RANK);
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_ne_bytes());
        b[16] = self.elem.to_tag();
        b[17] = self.dims.len() as u8;
        b[20..24].copy_from_slice(&self.owner_pid.to_ne_bytes());
        b[24..32].copy_from_slice(&self.owner_start.to_ne_bytes());
        b[32..40].copy_from_slice(&(HEADER_LEN as u64).to_ne_bytes());
        b[40..48].copy_from_slice(&self.len().to_ne_bytes());
        for (i, d) in self.dims.iter().enumerate() {
            b[56 + 8 * i..64 + 8 * i].copy_from_slice(&(*d as u64).to_ne_bytes());
        }
        b
    }

    /// Decodes a header copied out of a segment.
    pub(crate) fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(HeaderError::Short);
        }
        if b[0..8] != MAGIC || u32_at(b, 8) != VERSION {
            return Err(HeaderError::Foreign);
        }
        if u32_at(b, READY_AT) != READY {
            return Err(HeaderError::NotReady);
        }
        let elem = ElemType::from_tag(b[16]).ok_or(HeaderError::Corrupt)?;
        let rank = usize::from(b[17]);
        if rank == 0 || rank > MAX_RANK || u64_at(b, 32) != HEADER_LEN as u64 {
            return Err(HeaderError::Corrupt);
        }
        let mut dims = Vec::with_capacity(rank);
        let mut count: u64 = 1;
        for i in 0..MAX_RANK {
            let d = u64_at(b, 56 + 8 * i);
            if i < rank {
                let d_usize = usize::try_from(d).map_err(|_| HeaderError::Corrupt)?;
                count = count.checked_mul(d).ok_or(HeaderError::Corrupt)?;
                if d == 0 {
                    return Err(HeaderError::Corrupt);
                }
                dims.push(d_usize);
            } else if d != 0 {
                return Err(HeaderError::Corrupt);
            }
        }
        if count != u64_at(b, 40) || count.checked_mul(elem.size() as u64).is_none() {
            return Err(HeaderError::Corrupt);
        }
        Ok(Header {
            elem,
            dims,
            owner_pid: u32_at(b, 20),
            owner_start: u64_at(b, 24),
        })
    }

    /// Reads only the owner fields, which are written before the ready flag: a segment
    /// whose creator died half-way is still identifiable as ours and as stale.
    pub(crate) fn decode_owner(b: &[u8]) -> Option<(u32, u64)> {
        (b.len() >= HEADER_LEN && b[0..8] == MAGIC && u32_at(b, 8) == VERSION)
            .then(|| (u32_at(b, 20), u64_at(b, 24)))
    }
}

/// The ready flag inside a mapped header.
///
/// # Safety
///
/// `base` must point to at least [`HEADER_LEN`] mapped bytes that stay mapped for `'a`;
/// a page-aligned mapping satisfies the 4-byte alignment of the flag at offset 12.
pub(crate) unsafe fn ready_flag<'a>(base: *const u8) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees the bytes are mapped for 'a and aligned; an AtomicU32
    // has the size and alignment of a u32, and every bit pattern is a valid one. Other
    // processes touch these bytes only atomically or before publishing.
    unsafe { &*base.add(READY_AT).cast::<AtomicU32>() }
}

/// Whether the header at `base` is published; an acquire load, so the fields written before
/// publishing are visible afterwards.
///
/// # Safety
///
/// As [`ready_flag`].
pub(crate) unsafe fn is_published(base: *const u8) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe { ready_flag(base) }.load(Ordering::Acquire) == READY
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ready(mut b: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
        b[READY_AT..READY_AT + 4].copy_from_slice(&READY.to_ne_bytes());
        b
    }

    fn elem() -> impl Strategy<Value = ElemType> {
        prop::sample::select(vec![
            ElemType::U8,
            ElemType::U16,
            ElemType::U32,
            ElemType::U64,
            ElemType::I8,
            ElemType::I16,
            ElemType::I32,
            ElemType::I64,
            ElemType::F32,
            ElemType::F64,
        ])
    }

    #[test]
    fn not_ready_until_published() {
        let h = Header {
            elem: ElemType::F64,
            dims: vec![2, 3],
            owner_pid: 7,
            owner_start: 9,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Err(HeaderError::NotReady));
        assert_eq!(Header::decode_owner(&b), Some((7, 9)));
        // The flag as the atomic API sets it.
        let mut aligned = [0u64; HEADER_LEN / 8];
        let bytes: &mut [u8] = {
            // SAFETY: a u64 array reinterpreted as bytes: same memory, u8 has no alignment
            // or validity requirement, and the borrow of `aligned` is exclusive.
            unsafe { std::slice::from_raw_parts_mut(aligned.as_mut_ptr().cast(), HEADER_LEN) }
        };
        bytes.copy_from_slice(&b);
        let base = bytes.as_ptr();
        // SAFETY: `base` points to HEADER_LEN bytes, 8-byte aligned, alive for this block.
        assert!(!unsafe { is_published(base) });
        // Published the way creation does it: the flag's bytes written last.
        bytes[READY_AT..READY_AT + 4].copy_from_slice(&READY.to_ne_bytes());
        let base = bytes.as_ptr();
        // SAFETY: as above.
        assert!(unsafe { is_published(base) });
        assert_eq!(Header::decode(bytes), Ok(h));
    }

    #[test]
    fn foreign_and_short_bytes_are_refused() {
        assert_eq!(Header::decode(&[0u8; 10]), Err(HeaderError::Short));
        assert_eq!(
            Header::decode(&[0u8; HEADER_LEN]),
            Err(HeaderError::Foreign)
        );
        assert_eq!(Header::decode_owner(&[0xffu8; HEADER_LEN]), None);
    }

    proptest! {
        #[test]
        #[cfg_attr(miri, ignore)]
        fn headers_round_trip(
            elem in elem(),
            dims in prop::collection::vec(1usize..16, 1..=MAX_RANK),
            owner_pid in any::<u32>(),
            owner_start in any::<u64>(),
        ) {
            let h = Header { elem, dims, owner_pid, owner_start };
            let b = ready(h.encode());
            prop_assert_eq!(Header::decode(&b), Ok(h.clone()));
            prop_assert_eq!(Header::decode_owner(&b), Some((owner_pid, owner_start)));
        }

        #[test]
        #[cfg_attr(miri, ignore)]
        fn decoding_arbitrary_bytes_never_panics_and_is_consistent(
            raw in prop::collection::vec(any::<u8>(), HEADER_LEN),
            keep_magic in any::<bool>(),
        ) {
            let mut b = raw;
            if keep_magic {
                b[0..8].copy_from_slice(&MAGIC);
                b[8..12].copy_from_slice(&VERSION.to_ne_bytes());
                b[READY_AT..READY_AT + 4].copy_from_slice(&READY.to_ne_bytes());
            }
            if let Ok(h) = Header::decode(&b) {
                // Whatever decodes re-encodes to the same meaningful fields.
                let again = ready(h.encode());
                prop_assert_eq!(Header::decode(&again), Ok(h.clone()));
                prop_assert!(h.data_bytes() >= h.len());
            }
        }
    }
}
