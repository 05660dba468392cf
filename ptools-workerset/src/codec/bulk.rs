//! The one-copy paths for sequences of plain numbers: recognising serde's own impls of
//! `Vec<T>` and `[T]` by type id, and moving their bytes in one copy.
//!
//! Only little-endian targets have this module (`cfg(target_endian = "little")`): there the
//! in-memory bytes of a number are its `to_le_bytes`, which is what the per-element path
//! writes, so the two paths give the same bytes.

use std::any::TypeId;
use std::mem::ManuallyDrop;

use serde::de::{self, Deserialize, Visitor};

use super::de::{Input, Reader};
use super::error::Result;

/// A primitive number whose sequences travel as one copy.
///
/// # Safety
///
/// Only for the primitive integers and floats: no padding, every bit pattern a valid
/// value, no lifetimes, and (little-endian targets) in-memory bytes equal to the
/// `to_le_bytes` that the per-element serializer writes for it (`usize`/`isize` are
/// serialized by serde as `u64`/`i64`, so they are `Plain` on 64-bit targets only).
pub(super) unsafe trait Plain: super::Number {}

macro_rules! plain {
    ($($(#[$cfg:meta])* $t:ty),* $(,)?) => {
        $(
            $(#[$cfg])*
            // SAFETY: a primitive number, see the trait's contract.
            unsafe impl Plain for $t {}
        )*

        /// `iter` as the bytes of a slice of some [`Plain`] type, with its length in
        /// elements, when `I` is `&Vec<T>` or `&[T]` (what serde's impls of `Vec<T>` and
        /// `[T]` pass to `collect_seq`).
        pub(super) fn bytes_of<I>(iter: &I) -> Option<(usize, &[u8])> {
            $(
                $(#[$cfg])*
                if let Some(s) = slice_of::<I, $t>(iter) {
                    #[cfg(test)]
                    TAKEN.with(|t| t.set((t.get().0 + 1, t.get().1)));
                    return Some((s.len(), as_bytes(s)));
                }
            )*
            None
        }

        /// Reads `n` elements onto the end of `out` in one copy when `T` is a [`Plain`]
        /// type (`None`: the per-element path reads them).
        pub(super) fn extend<'de, I: Input<'de>, T>(
            r: &mut Reader<'de, I>,
            n: usize,
            out: &mut Vec<T>,
        ) -> Option<Result<()>> {
            $(
                $(#[$cfg])*
                if let Some(v) = vec_of::<T, $t>(out) {
                    #[cfg(test)]
                    TAKEN.with(|t| t.set((t.get().0, t.get().1 + 1)));
                    return Some(r.plain_extend(n, v));
                }
            )*
            None
        }

        /// Reads a `Vec<T>` of `n` elements in one copy when `V` is serde's own visitor of
        /// `Vec<T>` for some [`Plain`] type `T` (`None`: the per-element path reads it).
        pub(super) fn read<'de, I: Input<'de>, V: Visitor<'de>>(
            r: &mut Reader<'de, I>,
            n: usize,
        ) -> Option<Result<V::Value>> {
            $(
                $(#[$cfg])*
                if let Some(v) = read_as::<I, V, $t>(r, n) {
                    return Some(v);
                }
            )*
            None
        }
    };
}

with_numbers!(plain);

#[cfg(test)]
thread_local! {
    /// How many times this thread took the one-copy paths: (writes, reads).
    pub(super) static TAKEN: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// `iter` as a `&[T]` when `I` is `&[T]` or `&Vec<T>`.
fn slice_of<I, T: Plain>(iter: &I) -> Option<&[T]> {
    let id = typeid::of::<I>();
    if id == typeid::of::<&[T]>() {
        // SAFETY: type ids are equal up to lifetimes, so `I` is `&'x [T]` for some `'x`;
        // `iter: &I` borrows it, so `'x` outlives the returned borrow.
        return Some(unsafe { *(iter as *const I).cast::<&[T]>() });
    }
    if id == typeid::of::<&Vec<T>>() {
        // SAFETY: as above, `I` is `&'x Vec<T>` with `'x` outliving the returned borrow.
        let v: &Vec<T> = unsafe { *(iter as *const I).cast::<&Vec<T>>() };
        return Some(v.as_slice());
    }
    None
}

/// `v` as a `&mut Vec<P>` when `T` is `P`.
fn vec_of<T, P: Plain>(v: &mut Vec<T>) -> Option<&mut Vec<P>> {
    if typeid::of::<T>() != TypeId::of::<P>() {
        return None;
    }
    // SAFETY: `T` has the type id of `P`, which has no lifetimes: `T` is `P`, so `Vec<T>`
    // is `Vec<P>`, borrowed as long as `v`.
    Some(unsafe { &mut *(v as *mut Vec<T>).cast::<Vec<P>>() })
}

/// The bytes of a slice of plain numbers.
fn as_bytes<T: Plain>(s: &[T]) -> &[u8] {
    // SAFETY: `T: Plain` has no padding, so all `size_of_val(s)` bytes of the slice are
    // initialized; `u8` has alignment 1; the bytes are borrowed for as long as `s`.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

fn read_as<'de, I: Input<'de>, V: Visitor<'de>, T: Plain>(
    r: &mut Reader<'de, I>,
    n: usize,
) -> Option<Result<V::Value>> {
    // The first test compares the type ids of two known types (the optimizer can fold it);
    // the second recognises serde's own visitor, so that a user's visitor whose value is a
    // `Vec<T>` is not bypassed.
    if typeid::of::<V::Value>() != TypeId::of::<Vec<T>>() || typeid::of::<V>() != vec_visitor::<T>()
    {
        return None;
    }
    #[cfg(test)]
    TAKEN.with(|t| t.set((t.get().0, t.get().1 + 1)));
    Some(r.plain_vec::<T>(n).map(|v| {
        // SAFETY: `V::Value` has the type id of `Vec<T>`, which has no lifetimes: it is
        // `Vec<T>`.
        unsafe { cast::<Vec<T>, V::Value>(v) }
    }))
}

/// Moves `a` into a `B`.
///
/// # Safety
///
/// `A` and `B` must be the same type.
unsafe fn cast<A, B>(a: A) -> B {
    let a = ManuallyDrop::new(a);
    // SAFETY: by the caller's promise `B` is `A`; `a` is never dropped, so the value moves.
    unsafe { std::ptr::read((&*a as *const A).cast::<B>()) }
}

/// The type id of the visitor serde's `impl Deserialize for Vec<T>` hands to
/// `deserialize_seq`: that impl run on [`Probe`], which reports the visitor's type.
///
/// Computed on each call, without a `OnceLock`: it is a few calls that build no value and
/// allocate nothing (serde's impl makes a zero-sized visitor and calls
/// `Probe::deserialize_seq`), made only for a sequence whose value is a `Vec<T>`.
fn vec_visitor<T: Plain>() -> TypeId {
    match <Vec<T> as Deserialize<'static>>::deserialize(Probe) {
        Err(Found(Some(id))) => id,
        // A serde whose `Vec` impl does not go through `deserialize_seq`: never matched.
        _ => TypeId::of::<Probe>(),
    }
}

/// A deserializer that only reports the type of the visitor given to `deserialize_seq`.
struct Probe;

/// [`Probe`]'s answer.
#[derive(Debug)]
struct Found(Option<TypeId>);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Found(None)
    }
}

impl<'de> de::Deserializer<'de> for Probe {
    type Error = Found;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Found> {
        Err(Found(None))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Found> {
        Err(Found(Some(typeid::of::<V>())))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}
