//! The deserializer: reads the format described in the module docs from a byte slice,
//! trusting none of its bytes.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::error::{Error, Result, ZERO_SIZED_MAX};

/// Reads values from a byte slice.
pub(super) struct Reader<'de> {
    input: &'de [u8],
    /// The whole input's length, for the offsets in errors.
    total: usize,
    /// How many more sequence elements or map entries may take no bytes.
    zero_left: usize,
}

impl<'de> Reader<'de> {
    pub(super) fn new(input: &'de [u8]) -> Reader<'de> {
        Reader {
            input,
            total: input.len(),
            zero_left: ZERO_SIZED_MAX,
        }
    }

    /// Where the next byte is.
    pub(super) fn at(&self) -> usize {
        self.total - self.input.len()
    }

    /// The bytes not read yet.
    pub(super) fn left(&self) -> usize {
        self.input.len()
    }

    fn end(&self, needed: usize) -> Error {
        Error::End {
            at: self.at(),
            needed,
            left: self.left(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(self.end(n));
        }
        let (a, b) = self.input.split_at(n);
        self.input = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((a, rest)) = self.input.split_first_chunk::<N>() else {
            return Err(self.end(N));
        };
        self.input = rest;
        Ok(*a)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A LEB128 varint of at most `bits` (at most 64) bits, in its shortest form.
    fn varint(&mut self, bits: u32) -> Result<u64> {
        if let Some((&b, rest)) = self.input.split_first()
            && b < 0x80
        {
            self.input = rest;
            return Ok(u64::from(b));
        }
        let at = self.at();
        let mut v = 0u64;
        let mut shift = 0u32;
        for (i, &b) in self.input.iter().enumerate() {
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
                self.input = &self.input[i + 1..];
                return Ok(v);
            }
            shift += 7;
        }
        Err(self.end(self.left() + 1))
    }

    fn len(&mut self) -> Result<usize> {
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

    fn zero(&mut self) -> Result<()> {
        self.zero_left = self.zero_left.checked_sub(1).ok_or(Error::ZeroSized)?;
        Ok(())
    }

    /// `n` plain numbers in one copy (the caller checked that `T` is what is expected).
    #[cfg(target_endian = "little")]
    pub(super) fn plain_vec<T: super::bulk::Plain>(&mut self, n: usize) -> Result<Vec<T>> {
        let elem = std::mem::size_of::<T>();
        let Some(bytes) = n.checked_mul(elem).filter(|&b| b <= self.left()) else {
            return Err(Error::Length {
                at: self.at(),
                len: n,
                elem,
                left: self.left(),
            });
        };
        let src = self.take(bytes)?;
        let mut v = Vec::<T>::with_capacity(n);
        // SAFETY: `v` has room for `n` elements, `bytes` bytes, and `src` holds `bytes`
        // bytes; the two do not overlap (`v` is new). The copy is bytewise, so `src` needs no
        // alignment, and `T: Plain` makes any bytes a valid value, so the first `n`
        // elements are initialized when `set_len` says so.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), v.as_mut_ptr().cast::<u8>(), bytes);
            v.set_len(n);
        }
        Ok(v)
    }

    /// Runs `visit` over `n` elements read in order; all must be read. `counted`: a length
    /// from the input (sequences, maps), whose elements that take no bytes are counted.
    fn items<T>(
        &mut self,
        n: usize,
        counted: bool,
        visit: impl FnOnce(&mut Items<'_, 'de>) -> Result<T>,
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

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
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
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| Error::Utf8 { at })?;
        v.visit_borrowed_str(s)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        self.deserialize_str(v)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.len()?;
        v.visit_borrowed_bytes(self.take(n)?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        self.deserialize_bytes(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let at = self.at();
        match self.byte()? {
            0 => v.visit_none(),
            1 => v.visit_some(self),
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
        v.visit_newtype_struct(self)
    }
    /// serde's impl of `Vec<T>` (so also `Box<[T]>`, `Cow<[T]>`) for a plain number type
    /// `T` is served in one copy; every other visitor, a user's visitor of a `Vec<T>`
    /// included, sees the elements one by one.
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.seq_len()?;
        #[cfg(target_endian = "little")]
        if let Some(r) = super::bulk::read::<V>(self, n) {
            return r;
        }
        self.items(n, true, |items| v.visit_seq(items))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, n: usize, v: V) -> Out<V::Value> {
        self.items(n, false, |items| v.visit_seq(items))
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
        self.items(n, true, |items| v.visit_map(items))
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
        v.visit_enum(self)
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
struct Items<'a, 'de> {
    r: &'a mut Reader<'de>,
    left: usize,
    counted: bool,
    /// Where the current map entry started (bytes left then).
    entry: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
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

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
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

impl<'de> de::EnumAccess<'de> for &mut Reader<'de> {
    type Error = Error;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Out<(V::Value, Self)> {
        let index = self.varint(32)? as u32;
        let v = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
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
