//! The deserializer: reads the format described in the module docs from a byte slice,
//! trusting none of its bytes.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::{DEPTH_MAX, Error, Result, ZERO_SIZED_MAX};

/// Where a [`Reader`] takes its bytes from.
pub(super) trait Input<'de> {
    /// The bytes not read yet.
    fn left(&self) -> usize;
    /// The whole input's length.
    fn total(&self) -> usize;
    /// The next `N` bytes (`None`, nothing read, when fewer are left).
    fn array<const N: usize>(&mut self) -> Option<[u8; N]>;
    /// The next `n` bytes, borrowed from the input for `'de` when it can lend them, else
    /// copied once into a new `Vec` (`None`, nothing read, when fewer are left).
    fn bytes(&mut self, n: usize) -> Option<Bytes<'de>>;
    /// Copies the next `n` bytes to `dst`; false (nothing read) when fewer are left.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for `n` bytes of writes and not overlap the input.
    unsafe fn copy_to(&mut self, dst: *mut u8, n: usize) -> bool;
    /// Where the next byte lies (for a view of the input: `Reader::shared_slice`).
    fn here(&self) -> *const u8;
    /// Passes over the next `n` bytes; false (nothing read) when fewer are left.
    fn skip(&mut self, n: usize) -> bool;
}

/// Bytes from an [`Input`]: lent for `'de`, or copied out.
pub(super) enum Bytes<'de> {
    Borrowed(&'de [u8]),
    Owned(Vec<u8>),
}

/// A byte slice this process owns (or may treat as stable while it is borrowed).
pub(super) struct Slice<'de>(&'de [u8], usize);

impl<'de> Slice<'de> {
    pub(super) fn new(input: &'de [u8]) -> Slice<'de> {
        Slice(input, input.len())
    }
}

impl<'de> Input<'de> for Slice<'de> {
    #[inline]
    fn left(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn total(&self) -> usize {
        self.1
    }
    #[inline]
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*a)
    }
    #[inline]
    fn bytes(&mut self, n: usize) -> Option<Bytes<'de>> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(Bytes::Borrowed(a))
    }
    unsafe fn copy_to(&mut self, dst: *mut u8, n: usize) -> bool {
        let Some(Bytes::Borrowed(src)) = self.bytes(n) else {
            return false;
        };
        // SAFETY: `src` holds `n` bytes; the caller promises `dst` is valid for `n` bytes
        // and does not overlap the input.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
        true
    }
    fn here(&self) -> *const u8 {
        self.0.as_ptr()
    }
    fn skip(&mut self, n: usize) -> bool {
        self.bytes(n).is_some()
    }
}

/// Memory another process may write while it is read: a mapping of a shared-memory
/// region that an untrusted peer writes (see [`super::decode_shared`]).
///
/// Why this is sound: no `&[u8]` (which promises bytes that do not change) is ever made
/// over it. Every byte is read at most once, by `ptr::copy_nonoverlapping` from the raw
/// pointer into memory this process owns (a local array for a number, a length or a tag;
/// the new `Vec` of a bulk `Vec<T>`, bytes or a string), and every decision (a length
/// checked against what is left, a tag, UTF-8) is made on that private copy, never on
/// the shared bytes again. A peer writing meanwhile can only change which bytes were
/// copied, and any bytes are a valid `u8` (and a valid plain number): the decoder then
/// accepts or refuses them like any others. Bounds come from this reader's own `len`,
/// fixed when it is made, never from the shared bytes.
pub(super) struct Shared {
    ptr: *const u8,
    len: usize,
    pos: usize,
}

impl Shared {
    /// # Safety
    ///
    /// `[ptr, ptr + len)` must stay mapped and readable (it may change) while the reader
    /// lives.
    pub(super) unsafe fn new(ptr: *const u8, len: usize) -> Shared {
        Shared { ptr, len, pos: 0 }
    }

    /// Takes `n` bytes from the input, or `None` when fewer are left.
    #[inline]
    fn advance(&mut self, n: usize) -> Option<*const u8> {
        if n > self.len - self.pos {
            return None;
        }
        // Inside `[ptr, ptr + len)`: `pos + n <= len` (checked).
        let p = self.ptr.wrapping_add(self.pos);
        self.pos += n;
        Some(p)
    }
}

impl<'de> Input<'de> for Shared {
    #[inline]
    fn left(&self) -> usize {
        self.len - self.pos
    }
    #[inline]
    fn total(&self) -> usize {
        self.len
    }
    #[inline]
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let p = self.advance(N)?;
        let mut a = [0u8; N];
        // SAFETY: `p` is valid for `N` bytes of reads (inside the range the caller of
        // `Shared::new` keeps mapped); `a` is ours. See the type's docs for the peer's
        // concurrent writes.
        unsafe { std::ptr::copy_nonoverlapping(p, a.as_mut_ptr(), N) };
        Some(a)
    }
    fn bytes(&mut self, n: usize) -> Option<Bytes<'de>> {
        if n > self.left() {
            return None;
        }
        let mut v = Vec::with_capacity(n);
        // SAFETY: `v` has room for `n` bytes, and it is new, so no overlap.
        unsafe {
            self.copy_to(v.as_mut_ptr(), n);
            v.set_len(n);
        }
        Some(Bytes::Owned(v))
    }
    unsafe fn copy_to(&mut self, dst: *mut u8, n: usize) -> bool {
        let Some(p) = self.advance(n) else {
            return false;
        };
        // SAFETY: `p` is valid for `n` bytes of reads (as in `array`), `dst` for `n` bytes
        // of writes, not overlapping (the caller's promise). See the type's docs.
        unsafe { std::ptr::copy_nonoverlapping(p, dst, n) };
        true
    }
    fn here(&self) -> *const u8 {
        // Inside `[ptr, ptr + len]`: `pos <= len`.
        self.ptr.wrapping_add(self.pos)
    }
    fn skip(&mut self, n: usize) -> bool {
        self.advance(n).is_some()
    }
}

/// Reads values from an [`Input`]: a byte slice, or shared memory.
pub(super) struct Reader<'de, I: Input<'de> = Slice<'de>> {
    input: I,
    /// How many more sequence elements or map entries may take no bytes.
    zero_left: usize,
    /// How many more levels values may nest (see [`DEPTH_MAX`]).
    depth_left: u32,
    /// Memory of the input that [`SharedSlice`](super::SharedSlice)s may be views of.
    home: Option<super::Home>,
    _de: std::marker::PhantomData<&'de ()>,
}

impl<'de, I: Input<'de>> Reader<'de, I> {
    pub(super) fn new(input: I) -> Reader<'de, I> {
        Reader {
            input,
            zero_left: ZERO_SIZED_MAX,
            depth_left: DEPTH_MAX,
            home: None,
            _de: std::marker::PhantomData,
        }
    }

    /// Lends the reader `home`: a `SharedSlice` whose numbers lie inside it is a view.
    pub(super) fn lend(mut self, home: Option<super::Home>) -> Reader<'de, I> {
        self.home = home;
        self
    }

    pub(super) fn home(&self) -> Option<super::Home> {
        self.home.clone()
    }

    /// Where the next byte lies.
    pub(super) fn here(&self) -> *const u8 {
        self.input.here()
    }

    /// Passes over the next `n` bytes.
    pub(super) fn skip(&mut self, n: usize) -> Result<()> {
        if self.input.skip(n) {
            Ok(())
        } else {
            Err(self.end(n))
        }
    }

    /// `n` numbers (known to fit in the bytes left or not: checked), in a new `Vec`.
    pub(super) fn numbers<T: super::Number>(&mut self, n: usize) -> Result<Vec<T>> {
        #[cfg(target_endian = "little")]
        return self.plain_vec(n);
        #[cfg(not(target_endian = "little"))]
        {
            let elem = std::mem::size_of::<T>();
            if n.checked_mul(elem).is_none_or(|b| b > self.left()) {
                return Err(Error::Length {
                    at: self.at(),
                    len: n,
                    elem,
                    left: self.left(),
                });
            }
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(T::deserialize(&mut *self)?);
            }
            Ok(v)
        }
    }

    /// Where the next byte is.
    pub(super) fn at(&self) -> usize {
        self.input.total() - self.input.left()
    }

    /// The bytes not read yet.
    pub(super) fn left(&self) -> usize {
        self.input.left()
    }

    fn end(&self, needed: usize) -> Error {
        Error::End {
            at: self.at(),
            needed,
            left: self.left(),
        }
    }

    fn take(&mut self, n: usize) -> Result<Bytes<'de>> {
        match self.input.bytes(n) {
            Some(b) => Ok(b),
            None => Err(self.end(n)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.input.array::<N>() {
            Some(a) => Ok(a),
            None => Err(self.end(N)),
        }
    }

    pub(super) fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A LEB128 varint of at most `bits` (at most 64) bits, in its shortest form. Each
    /// byte is read once and what is decided is decided on that copy.
    fn varint(&mut self, bits: u32) -> Result<u64> {
        let at = self.at();
        let mut v = 0u64;
        let mut shift = 0u32;
        for i in 0.. {
            let Some([b]) = self.input.array::<1>() else {
                return Err(self.end(1));
            };
            let low = u64::from(b & 0x7f);
            // The bits this byte may still carry.
            if shift >= bits || (bits - shift < 7 && low >> (bits - shift) != 0) {
                return Err(Error::Varint { at });
            }
            v |= low << shift;
            if b < 0x80 {
                if b == 0 && i > 0 {
                    return Err(Error::Varint { at }); // overlong: a zero last byte
                }
                return Ok(v);
            }
            shift += 7;
        }
        unreachable!("the loop returns")
    }

    pub(super) fn len(&mut self) -> Result<usize> {
        let at = self.at();
        usize::try_from(self.varint(64)?).map_err(|_| Error::Varint { at })
    }

    /// The length of a sequence or map: each element takes at least one byte, or is one of
    /// the few that may take none, so a larger length is refused before anything is read
    /// (and before any visitor reserves room for it).
    fn seq_len(&mut self) -> Result<usize> {
        let at = self.at();
        let n = self.len()?;
        if n > self.left().saturating_add(self.zero_left) {
            return Err(Error::Length {
                at,
                len: n,
                elem: 0,
                left: self.left(),
            });
        }
        Ok(n)
    }

    /// Runs `f` one level deeper; an error past [`DEPTH_MAX`] levels.
    pub(super) fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.depth_left = self.depth_left.checked_sub(1).ok_or(Error::Depth)?;
        let r = f(self);
        self.depth_left += 1;
        r
    }

    fn zero(&mut self) -> Result<()> {
        self.zero_left = self.zero_left.checked_sub(1).ok_or(Error::ZeroSized)?;
        Ok(())
    }

    /// `n` plain numbers in one copy (the caller checked that `T` is what is expected).
    #[cfg(target_endian = "little")]
    pub(super) fn plain_vec<T: super::Number>(&mut self, n: usize) -> Result<Vec<T>> {
        let mut v = Vec::new();
        self.plain_extend(n, &mut v)?;
        Ok(v)
    }

    /// `n` plain numbers in one copy, onto the end of `v` (which grows only once the
    /// input is known to hold them).
    #[cfg(target_endian = "little")]
    pub(super) fn plain_extend<T: super::Number>(
        &mut self,
        n: usize,
        v: &mut Vec<T>,
    ) -> Result<()> {
        let elem = std::mem::size_of::<T>();
        let Some(bytes) = n.checked_mul(elem).filter(|&b| b <= self.left()) else {
            return Err(Error::Length {
                at: self.at(),
                len: n,
                elem,
                left: self.left(),
            });
        };
        v.reserve(n);
        let len = v.len();
        // SAFETY: `v` has room for `n` more elements, `bytes` bytes, after its `len`, and
        // the input holds `bytes` bytes (checked); `v`'s spare room is its own, so they do
        // not overlap. The copy is bytewise, so the input needs no alignment, and
        // `T: Number` makes any bytes a valid value, so the first `len + n` elements are
        // initialized when `set_len` says so.
        unsafe {
            if !self
                .input
                .copy_to(v.as_mut_ptr().add(len).cast::<u8>(), bytes)
            {
                return Err(self.end(bytes));
            }
            v.set_len(len + n);
        }
        Ok(())
    }

    /// A sequence of `T` (the encoding of a `Vec<T>` or `[T]`) onto the end of `out`: its
    /// length must be `n`. Plain numbers go in one copy.
    pub(super) fn seq_into<T: de::Deserialize<'de>>(
        &mut self,
        n: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        let at = self.at();
        let len = self.seq_len()?;
        if len != n {
            return Err(Error::Custom(format!(
                "a sequence of {len} elements at byte {at}, {n} expected"
            )));
        }
        self.nested(|r| {
            #[cfg(target_endian = "little")]
            if let Some(res) = super::bulk::extend(r, n, out) {
                return res;
            }
            r.items(n, true, |items| {
                out.reserve(n.min(items.r.left()));
                while let Some(x) = de::SeqAccess::next_element::<T>(items)? {
                    out.push(x);
                }
                Ok(())
            })
        })
    }

    /// Runs `visit` over `n` elements read in order; all must be read. `counted`: a length
    /// from the input (sequences, maps), whose elements that take no bytes are counted.
    fn items<T>(
        &mut self,
        n: usize,
        counted: bool,
        visit: impl FnOnce(&mut Items<'_, 'de, I>) -> Result<T>,
    ) -> Result<T> {
        let mut items = Items {
            r: self,
            left: n,
            counted,
            entry: 0,
        };
        let v = visit(&mut items)?;
        if items.left != 0 {
            return Err(Error::Unread { left: items.left });
        }
        Ok(v)
    }
}

type Out<V> = Result<V>;

macro_rules! fixed {
    ($($f:ident: $visit:ident $t:ty),* $(,)?) => {
        $(fn $f<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
            v.$visit(<$t>::from_le_bytes(self.array()?))
        })*
    };
}

impl<'de, I: Input<'de>> de::Deserializer<'de> for &mut Reader<'de, I> {
    type Error = Error;

    fixed!(
        deserialize_i8: visit_i8 i8, deserialize_i16: visit_i16 i16,
        deserialize_i32: visit_i32 i32, deserialize_i64: visit_i64 i64,
        deserialize_i128: visit_i128 i128, deserialize_u8: visit_u8 u8,
        deserialize_u16: visit_u16 u16, deserialize_u32: visit_u32 u32,
        deserialize_u64: visit_u64 u64, deserialize_u128: visit_u128 u128,
        deserialize_f32: visit_f32 f32, deserialize_f64: visit_f64 f64,
    );

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Out<V::Value> {
        Err(Error::NotSelfDescribing("deserialize_any"))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let at = self.at();
        match self.byte()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            byte => Err(Error::Bool { at, byte }),
        }
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let at = self.at();
        let value = u32::from_le_bytes(self.array()?);
        match char::from_u32(value) {
            Some(c) => v.visit_char(c),
            None => Err(Error::Char { at, value }),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.len()?;
        let at = self.at();
        match self.take(n)? {
            Bytes::Borrowed(b) => {
                v.visit_borrowed_str(std::str::from_utf8(b).map_err(|_| Error::Utf8 { at })?)
            }
            // Checked on the copy, which is what the visitor gets.
            Bytes::Owned(b) => {
                v.visit_string(String::from_utf8(b).map_err(|_| Error::Utf8 { at })?)
            }
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.len()?;
        match self.take(n)? {
            Bytes::Borrowed(b) => v.visit_borrowed_bytes(b),
            Bytes::Owned(b) => v.visit_byte_buf(b),
        }
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        self.deserialize_bytes(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let at = self.at();
        match self.byte()? {
            0 => v.visit_none(),
            1 => self.nested(|r| v.visit_some(r)),
            byte => Err(Error::OptionTag { at, byte }),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Out<V::Value> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Out<V::Value> {
        self.nested(|r| v.visit_newtype_struct(r))
    }
    /// serde's impl of `Vec<T>` (so also `Box<[T]>`, `Cow<[T]>`) for a plain number type
    /// `T` is served in one copy; every other visitor, a user's visitor of a `Vec<T>`
    /// included, sees the elements one by one.
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.seq_len()?;
        self.nested(|r| {
            #[cfg(target_endian = "little")]
            if let Some(res) = super::bulk::read::<I, V>(r, n) {
                return res;
            }
            r.items(n, true, |items| v.visit_seq(items))
        })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, n: usize, v: V) -> Out<V::Value> {
        self.nested(|r| r.items(n, false, |items| v.visit_seq(items)))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        n: usize,
        v: V,
    ) -> Out<V::Value> {
        self.deserialize_tuple(n, v)
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.seq_len()?;
        self.nested(|r| r.items(n, true, |items| v.visit_map(items)))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Out<V::Value> {
        self.deserialize_tuple(fields.len(), v)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Out<V::Value> {
        self.nested(|r| v.visit_enum(r))
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Out<V::Value> {
        Err(Error::NotSelfDescribing("deserialize_identifier"))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Out<V::Value> {
        Err(Error::NotSelfDescribing("deserialize_ignored_any"))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple, struct or map still to read.
struct Items<'a, 'de, I: Input<'de>> {
    r: &'a mut Reader<'de, I>,
    left: usize,
    counted: bool,
    /// Where the current map entry started (bytes left then).
    entry: usize,
}

impl<'de, I: Input<'de>> de::SeqAccess<'de> for Items<'_, 'de, I> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Out<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let before = self.r.left();
        let v = seed.deserialize(&mut *self.r)?;
        if self.counted && self.r.left() == before {
            self.r.zero()?;
        }
        Ok(Some(v))
    }
    fn size_hint(&self) -> Option<usize> {
        // Never more than the bytes left, so a visitor reserves little for a forged length.
        Some(self.left.min(self.r.left()))
    }
}

impl<'de, I: Input<'de>> de::MapAccess<'de> for Items<'_, 'de, I> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Out<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.entry = self.r.left();
        seed.deserialize(&mut *self.r).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Out<V::Value> {
        let v = seed.deserialize(&mut *self.r)?;
        if self.counted && self.r.left() == self.entry {
            self.r.zero()?;
        }
        Ok(v)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.r.left()))
    }
}

impl<'de, I: Input<'de>> de::EnumAccess<'de> for &mut Reader<'de, I> {
    type Error = Error;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Out<(V::Value, Self)> {
        let index = self.varint(32)? as u32;
        let v = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
        Ok((v, self))
    }
}

impl<'de, I: Input<'de>> de::VariantAccess<'de> for &mut Reader<'de, I> {
    type Error = Error;
    fn unit_variant(self) -> Out<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Out<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, n: usize, v: V) -> Out<V::Value> {
        de::Deserializer::deserialize_tuple(self, n, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Out<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), v)
    }
}
