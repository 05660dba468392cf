//! The header at the start of every segment, and its byte encoding.
//!
//! Layout (native byte order: a segment never leaves its machine), 128 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `PTOOLSHM` |
//! | 8 | 4 | version |
//! | 12 | 4 | ready flag, stored last (see `Segment::create`) |
//! | 16 | 1 | element tag (kind, log2 size) |
//! | 17 | 1 | rank |
//! | 18 | 2 | reserved, zero |
//! | 20 | 4 | owner pid |
//! | 24 | 8 | owner start time (clock ticks since boot on Linux) |
//! | 32 | 8 | data offset in bytes |
//! | 40 | 8 | element count |
//! | 48 | 8 | generation: a random id of this segment, never reused |
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
    pub(crate) generation: u64,
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
        b[48..56].copy_from_slice(&self.generation.to_ne_bytes());
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
        // The whole segment (header and data) must be addressable in this process.
        let fits = count
            .checked_mul(elem.size() as u64)
            .and_then(|d| d.checked_add(HEADER_LEN as u64))
            .is_some_and(|t| t <= isize::MAX as u64);
        if count != u64_at(b, 40) || !fits {
            return Err(HeaderError::Corrupt);
        }
        Ok(Header {
            elem,
            dims,
            owner_pid: u32_at(b, 20),
            owner_start: u64_at(b, 24),
            generation: u64_at(b, 48),
        })
    }

    /// Reads only the owner fields, which are written before the ready flag: a segment
    /// whose creator died half-way is still identifiable as ours and as stale.
    pub(crate) fn decode_owner(b: &[u8]) -> Option<(u32, u64)> {
        (b.len() >= HEADER_LEN && b[0..8] == MAGIC && u32_at(b, 8) == VERSION)
            .then(|| (u32_at(b, 20), u64_at(b, 24)))
    }

    /// Writes every field but the ready flag into a mapping (where the header cannot go
    /// through the descriptor: macOS). Every access of ours to a mapped header is a 32-bit
    /// atomic one (see [`read_mapped`]), so a reader racing the creator, in another process
    /// or in this one, reads well-defined values. On Linux the creator writes the header
    /// and then the flag with `pwrite`, a fence between: the kernel's copies are that
    /// thread's stores, so a reader whose acquire load sees the flag sees the header.
    ///
    /// # Safety
    ///
    /// `base` must point to at least [`HEADER_LEN`] mapped, writable bytes, 4-aligned,
    /// that stay mapped for the call.
    pub(crate) unsafe fn write_into(&self, base: *mut u8) {
        let bytes = self.encode();
        for (i, chunk) in bytes.chunks_exact(4).enumerate() {
            if 4 * i == READY_AT {
                continue;
            }
            let mut w = [0u8; 4];
            w.copy_from_slice(chunk);
            // SAFETY: word `i` lies within the HEADER_LEN bytes the caller guarantees.
            unsafe { word(base, i) }.store(u32::from_ne_bytes(w), Ordering::Relaxed);
        }
    }
}

/// Sets the ready flag of a header written by [`Header::write_into`], with release
/// ordering: a reader whose acquire load sees it sees every field.
///
/// # Safety
///
/// As [`Header::write_into`].
pub(crate) unsafe fn publish(base: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { ready_flag(base) }.store(READY, Ordering::Release);
}

/// Word `i` of a mapped header as an atomic.
///
/// # Safety
///
/// `4 * i + 4 <= HEADER_LEN` bytes at `base` must be mapped, `base` 4-aligned, for `'a`.
unsafe fn word<'a>(base: *const u8, i: usize) -> &'a AtomicU32 {
    debug_assert!(4 * i + 4 <= HEADER_LEN);
    // SAFETY: forwarded from the caller; AtomicU32 has u32's size and alignment and every
    // bit pattern is valid.
    unsafe { &*base.add(4 * i).cast::<AtomicU32>() }
}

/// Copies a mapped header out: the ready flag with an acquire load first, then the other
/// words. Another process may be writing it (a creator still at work); the word-sized
/// atomic loads match the creator's stores, so such a read is well defined.
///
/// # Safety
///
/// `base` must point to at least [`HEADER_LEN`] mapped bytes, 4-byte aligned, that stay
/// mapped for the call.
pub(crate) unsafe fn read_mapped(base: *const u8) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    // SAFETY: forwarded from the caller.
    let ready = unsafe { ready_flag(base) }.load(Ordering::Acquire);
    for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
        let v = if 4 * i == READY_AT {
            ready
        } else {
            // SAFETY: word `i` lies within the HEADER_LEN bytes the caller guarantees.
            unsafe { word(base, i) }.load(Ordering::Relaxed)
        };
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// The ready flag inside a mapped header.
///
/// # Safety
///
/// `base` must point to at least [`HEADER_LEN`] mapped bytes that stay mapped for `'a`;
/// a page-aligned mapping satisfies the 4-byte alignment of the flag at offset 12.
unsafe fn ready_flag<'a>(base: *const u8) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees the bytes are mapped for 'a and aligned.
    unsafe { word(base, READY_AT / 4) }
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
        prop::sample::select(ElemType::ALL.to_vec())
    }

    #[test]
    fn not_ready_until_published() {
        let h = Header {
            elem: ElemType::F64,
            dims: vec![2, 3],
            owner_pid: 7,
            owner_start: 9,
            generation: 0xfeed,
        };
        let b = h.encode();
        assert_eq!(Header::decode(&b), Err(HeaderError::NotReady));
        assert_eq!(Header::decode_owner(&b), Some((7, 9)));

        // Published into "mapped" memory the way creation does it, read back the way
        // attaching does.
        let mut mem = [0u64; HEADER_LEN / 8];
        let base = mem.as_mut_ptr().cast::<u8>();
        // SAFETY: `mem` is HEADER_LEN bytes, 8-aligned, alive and exclusively ours here.
        let before = unsafe { read_mapped(base) };
        assert_eq!(Header::decode(&before), Err(HeaderError::Foreign));
        // SAFETY: as above.
        unsafe { h.write_into(base) };
        // SAFETY: as above.
        let written = unsafe { read_mapped(base) };
        assert_eq!(Header::decode(&written), Err(HeaderError::NotReady));
        assert_eq!(Header::decode_owner(&written), Some((7, 9)));
        // SAFETY: as above.
        unsafe { publish(base) };
        // SAFETY: as above.
        let after = unsafe { read_mapped(base) };
        assert_eq!(Header::decode(&after), Ok(h));
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
            let h = Header { elem, dims, owner_pid, owner_start, generation: owner_start ^ 1 };
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
                // Whatever decodes fits this process's address space, header included.
                let total = h.len() * h.elem.size() as u64 + HEADER_LEN as u64;
                prop_assert!(total <= isize::MAX as u64);
            }
        }
    }
}
