//! The wire codec: ptools' own serde data format, in which a `Vec<u8>`, a `&[u8]` and
//! vectors and slices of plain numbers travel as one copy.
//!
//! # The format
//!
//! Positional and not self-describing, like postcard (which it replaces): the reader must
//! know the type, `deserialize_any` is an error (so no `#[serde(flatten)]`, untagged or
//! internally tagged enums).
//!
//! - Numbers: fixed width, little-endian: `u8`..`u128`, `i8`..`i128`, `f32`, `f64`
//!   (`usize`/`isize` are 64-bit, as serde serializes them).
//! - `bool`: one byte, 0 or 1. `char`: its `u32`, checked to be a Unicode scalar value.
//! - Lengths (sequences, maps, strings, bytes) and enum variant indices: LEB128 varints,
//!   seven bits a byte, low first; the reader refuses overlong ones (a zero last byte) and
//!   ones larger than their type.
//! - `str`: length, then UTF-8 (checked). Bytes: length, then the bytes.
//! - `Option`: a tag byte, 0 (`None`) or 1 (`Some`, then the value).
//! - Unit, unit structs: nothing. Newtype structs: the inner value. Tuples, structs, tuple
//!   and struct variants: the fields in order (after the variant index).
//! - Sequences and maps: the number of elements (entries), then each element (key, value).
//!   A sequence of unknown length is written with its length inserted before its elements
//!   at the end.
//!
//! # One copy for numbers
//!
//! postcard encodes integers as varints, so a `Vec<u8>` or `Vec<f64>` goes through serde
//! one element at a time: 12-13x the cost of a raw socketpair copying the same bytes at
//! 1 MiB and 16 MiB. Here every number has a fixed width, so a slice of numbers has the same
//! bytes whether it is written in bulk or element by element. The serializer recognises
//! the `&Vec<T>` and `&[T]` that serde's impls of `Vec<T>` and `[T]` (so `Box<[T]>`,
//! `Cow<[T]>`, `&[T]`, anywhere in a value) pass to `collect_seq`, by type id
//! ([`typeid::of`], which works for borrowed types), and writes the length and the
//! elements' bytes in one `extend_from_slice`. The deserializer recognises the visitor of
//! serde's own `impl Deserialize for Vec<T>`: its type id is obtained by running that impl
//! on a probe deserializer whose `deserialize_seq` reports the visitor's type; a match
//! (and a value type of `Vec<T>`) reads the elements in one copy. A user's own visitor,
//! even one whose value is a `Vec<T>`, is never bypassed: it sees the elements one by one
//! and reads the same values, because the bytes are the same. `T` is any primitive integer
//! or float; big-endian targets take the per-element path (same bytes). `Vec<bool>` and
//! `Vec<char>` are not in bulk (their bytes need checking). Bytes (`serialize_bytes`,
//! `serde_bytes`) are the same length and bytes as a `Vec<u8>`, so the two interchange.
//!
//! The price: small integers take their full width (a `u64` is 8 bytes where postcard's
//! varint took 1 to 10), so integer-heavy values are larger on the wire; over a socket
//! between processes, a copy costs less than encoding element by element.
//!
//! # Trusting no byte
//!
//! Every decode error is an [`Error`] with a message, never a panic. A length decides no
//! allocation before it is checked against the bytes left: a sequence or map may not be
//! longer than the bytes left (each element takes at least one byte), a bulk `Vec<T>` not
//! longer than the bytes left hold, with overflow checks; visitors are told a size hint no
//! larger than the bytes left. Elements that take no bytes (`Vec<()>`, a map of unit
//! structs) are counted instead: at most [`ZERO_SIZED_MAX`](error::ZERO_SIZED_MAX) of them in
//! one value, which the writer enforces too, so that what it writes can be read. A budget
//! for the whole value rather than a slack per sequence, because nested sequences would
//! multiply a per-sequence slack. Bytes after the value are an error, and so is a
//! `Deserialize` impl that stops before the end of a sequence, or a `Serialize` impl that
//! gives another number of elements than it announced.
//!
//! Nesting is bounded too: at most [`DEPTH_MAX`](error::DEPTH_MAX) (256) levels of
//! sequences, maps, tuples, structs, enums, `Some`s and newtypes in one value, on both
//! sides. Without a bound (postcard has none), a forged value of a recursive type (a tree,
//! a list of `Box`es) recursed as deep as its bytes allowed: a few bytes per level, so a
//! reply of a megabyte could overflow the master's stack, which aborts the process.
//!
//! # Straight into and out of shared memory
//!
//! [`Out`] is where an encoding goes: a `Vec<u8>` that, lent a shared-memory region,
//! moves the encoding there once it reaches a threshold, so a large argument or result is
//! written into its region by the bulk copy itself. [`decode_shared`] decodes from memory
//! another process may write meanwhile (a result region an untrusted worker writes): the
//! reader copies each byte out once, into the value or a local, and decides everything on
//! that copy (`de::Shared`), so the bytes changing under it can make the value wrong or the
//! decoding fail, nothing else; lengths are checked against the reader's own bound, never
//! read twice.
//!
//! # Errors keep their words
//!
//! [`Error::Custom`] holds the message a serde impl gave to `custom` (and serde's own
//! reports, "invalid value: ..."), so it reaches the caller unchanged; postcard dropped it,
//! and a second pass was needed to recover it.

/// Calls `$m!` with the primitive number types, the one list behind [`Number`] and the
/// bulk paths' `Plain`. `usize` and `isize` are `u64` and `i64` on the wire: numbers here
/// where they are 64 bits.
macro_rules! with_numbers {
    ($m:ident) => {
        $m!(
            u8,
            i8,
            u16,
            i16,
            u32,
            i32,
            u64,
            i64,
            u128,
            i128,
            f32,
            f64,
            #[cfg(target_pointer_width = "64")]
            usize,
            #[cfg(target_pointer_width = "64")]
            isize,
        );
    };
}

#[cfg(target_endian = "little")]
mod bulk;
mod de;
mod error;
mod out;
mod ser;
mod shared;
#[cfg(test)]
mod tests;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use error::Error;
pub(crate) use out::Out;
pub(crate) use shared::Home;
pub use shared::{Number, SharedSlice};

/// What encodes a call's argument into an [`Out`] (the argument is captured).
pub(crate) type EncodeArg<'a> = dyn FnMut(&mut Out<'_>) -> Result<(), String> + 'a;

/// Appends the encoding of `v` to `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(v: &T, buf: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut out = Out::new(buf);
    encode_out(v, &mut out)?;
    Ok(out.finish().0)
}

/// Appends the encoding of `v` to `out` (which may move it into a shared-memory region).
/// On an error, what was written is left in `out`: the caller truncates it.
pub(crate) fn encode_out<T: Serialize + ?Sized>(v: &T, out: &mut Out<'_>) -> Result<(), String> {
    let mut w = ser::Writer::new(out);
    v.serialize(&mut w).map_err(|e| e.to_string())
}

/// The encoding of `v`.
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    encode_into(v, Vec::new())
}

/// Decodes a `T` from all of `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_typed(bytes).map_err(|e| e.to_string())
}

/// Decodes a `T` from all of `bytes`, which lie in `home` when it is given: a
/// [`SharedSlice`] in the value is then a view of them (a worker reading its argument
/// where its master wrote it).
pub(crate) fn decode_in<T: DeserializeOwned>(
    bytes: &[u8],
    home: Option<&Home>,
) -> Result<T, String> {
    let r = de::Reader::new(de::Slice::new(bytes)).lend(home.cloned());
    read_all(r).map_err(|e| e.to_string())
}

/// As [`decode`], with the typed error.
pub(crate) fn decode_typed<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    read_all(de::Reader::new(de::Slice::new(bytes)))
}

/// Decodes a sequence of exactly `n` `T`s (the encoding of a `Vec<T>` or `[T]`) from all
/// of `bytes` onto the end of `out`, plain numbers in one copy: `pmap` gathers its
/// batches' results in one vector this way, with no vector per batch. On an error, `out`
/// may hold some of the elements.
pub(crate) fn decode_seq_into<T: DeserializeOwned>(
    bytes: &[u8],
    n: usize,
    out: &mut Vec<T>,
) -> Result<(), String> {
    let mut r = de::Reader::new(de::Slice::new(bytes));
    r.seq_into(n, out).map_err(|e| e.to_string())?;
    if r.left() != 0 {
        return Err(Error::Trailing {
            at: r.at(),
            left: r.left(),
        }
        .to_string());
    }
    Ok(())
}

/// Decodes a `T` from all of `[ptr, ptr + len)`, memory that another process may write
/// meanwhile (a shared-memory region an untrusted worker writes): each byte is copied
/// out once, into the value or into a local, and nothing is decided on the shared bytes
/// themselves (see `de::Shared`), so such writes can make the value wrong or the decoding
/// fail, never make this process misbehave. A `Vec<u8>` or `Vec<f64>` is one copy, from
/// the region into its new buffer.
///
/// # Safety
///
/// `[ptr, ptr + len)` must stay mapped and readable for the whole call.
pub(crate) unsafe fn decode_shared<T: DeserializeOwned>(
    ptr: *const u8,
    len: usize,
    home: Option<Home>,
) -> Result<T, String> {
    // SAFETY: the caller keeps the range mapped and readable for this call.
    let input = unsafe { de::Shared::new(ptr, len) };
    read_all(de::Reader::new(input).lend(home)).map_err(|e| e.to_string())
}

fn read_all<'de, T: serde::Deserialize<'de>, I: de::Input<'de>>(
    mut r: de::Reader<'de, I>,
) -> Result<T, Error> {
    let v = T::deserialize(&mut r)?;
    if r.left() != 0 {
        return Err(Error::Trailing {
            at: r.at(),
            left: r.left(),
        });
    }
    Ok(v)
}
