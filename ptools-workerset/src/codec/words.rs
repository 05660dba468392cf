//! The second pass of a failed encode or decode, run only to recover the failing impl's
//! message: [`Probe`] serializes into nothing, [`Reader`] reads postcard's format (as
//! postcard 1 writes it: varints, zigzag for signed, length-prefixed sequences, structs as
//! tuples, enums by variant index). Both carry errors as [`Fail`], which keeps the words.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// Why the second pass stopped: an impl's own words, or bytes this reader cannot follow
/// (then postcard's message stands).
#[derive(Debug)]
pub(super) enum Fail {
    Words(String),
    Format,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Words(m) => f.write_str(m),
            Fail::Format => f.write_str("malformed postcard stream"),
        }
    }
}

impl std::error::Error for Fail {}

impl ser::Error for Fail {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Fail::Words(msg.to_string())
    }
}

impl de::Error for Fail {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Fail::Words(msg.to_string())
    }
}

fn words(r: Result<(), Fail>) -> Option<String> {
    match r {
        Err(Fail::Words(m)) => Some(m),
        _ => None,
    }
}

/// The message `v`'s `Serialize` impl fails with, if it fails with one.
pub(super) fn encode<T: Serialize + ?Sized>(v: &T) -> Option<String> {
    words(v.serialize(Probe))
}

/// The message decoding a `T` from `bytes` fails with, if it fails with one.
pub(super) fn decode<T: de::DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    words(T::deserialize(&mut Reader { input: bytes }).map(drop))
}

/// A serializer that writes nothing and accepts every value (as postcard does, bar unknown
/// sequence lengths, which postcard reports with its own message).
pub(super) struct Probe;

type Done = Result<(), Fail>;

macro_rules! accept {
    ($($f:ident: $t:ty),* $(,)?) => {
        $(fn $f(self, _: $t) -> Done { Ok(()) })*
    };
}

impl ser::Serializer for Probe {
    type Ok = ();
    type Error = Fail;
    type SerializeSeq = Probe;
    type SerializeTuple = Probe;
    type SerializeTupleStruct = Probe;
    type SerializeTupleVariant = Probe;
    type SerializeMap = Probe;
    type SerializeStruct = Probe;
    type SerializeStructVariant = Probe;

    accept!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f32: f32,
        serialize_f64: f64, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
        serialize_unit_struct: &'static str,
    );

    fn serialize_none(self) -> Done {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Done {
        v.serialize(Probe)
    }
    fn serialize_unit(self) -> Done {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Done {
        v.serialize(Probe)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Done {
        v.serialize(Probe)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn serialize_tuple(self, _: usize) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Fail> {
        Ok(Probe)
    }
    fn is_human_readable(&self) -> bool {
        false // as postcard
    }
}

macro_rules! compound {
    ($($tr:ident :: $f:ident),* $(,)?) => {
        $(impl ser::$tr for Probe {
            type Ok = ();
            type Error = Fail;
            fn $f<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
                v.serialize(Probe)
            }
            fn end(self) -> Done {
                Ok(())
            }
        })*
    };
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for Probe {
    type Ok = ();
    type Error = Fail;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Done {
        k.serialize(Probe)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        v.serialize(Probe)
    }
    fn end(self) -> Done {
        Ok(())
    }
}

macro_rules! named_fields {
    ($($tr:ident),* $(,)?) => {
        $(impl ser::$tr for Probe {
            type Ok = ();
            type Error = Fail;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, v: &T) -> Done {
                v.serialize(Probe)
            }
            fn end(self) -> Done {
                Ok(())
            }
        })*
    };
}

named_fields!(SerializeStruct, SerializeStructVariant);

/// Reads postcard's format from a byte slice.
pub(super) struct Reader<'de> {
    input: &'de [u8],
}

impl<'de> Reader<'de> {
    fn byte(&mut self) -> Result<u8, Fail> {
        let (&b, rest) = self.input.split_first().ok_or(Fail::Format)?;
        self.input = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8], Fail> {
        if n > self.input.len() {
            return Err(Fail::Format);
        }
        let (a, b) = self.input.split_at(n);
        self.input = b;
        Ok(a)
    }

    /// A LEB128 varint of at most `bits` bits.
    fn varint(&mut self, bits: u32) -> Result<u128, Fail> {
        let mut v: u128 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift >= bits {
                return Err(Fail::Format);
            }
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return if bits < 128 && v >> bits != 0 {
                    Err(Fail::Format)
                } else {
                    Ok(v)
                };
            }
            shift += 7;
        }
    }

    fn len(&mut self) -> Result<usize, Fail> {
        usize::try_from(self.varint(64)?).map_err(|_| Fail::Format)
    }

    fn zigzag(&mut self, bits: u32) -> Result<i128, Fail> {
        let n = self.varint(bits)?;
        Ok(((n >> 1) as i128) ^ -((n & 1) as i128))
    }
}

type Out<V> = Result<V, Fail>;

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Fail;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Out<V::Value> {
        Err(Fail::Format) // postcard is not self-describing
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        match self.byte()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            _ => Err(Fail::Format),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_i8(self.byte()? as i8)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_i16(self.zigzag(16)? as i16)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_i32(self.zigzag(32)? as i32)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_i64(self.zigzag(64)? as i64)
    }
    fn deserialize_i128<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_i128(self.zigzag(128)?)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_u8(self.byte()?)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_u16(self.varint(16)? as u16)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_u32(self.varint(32)? as u32)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_u64(self.varint(64)? as u64)
    }
    fn deserialize_u128<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        v.visit_u128(self.varint(128)?)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let b = self.take(4)?;
        v.visit_f32(f32::from_le_bytes(b.try_into().map_err(|_| Fail::Format)?))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let b = self.take(8)?;
        v.visit_f64(f64::from_le_bytes(b.try_into().map_err(|_| Fail::Format)?))
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.len()?;
        if n > 4 {
            return Err(Fail::Format);
        }
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| Fail::Format)?;
        let mut it = s.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => v.visit_char(c),
            _ => Err(Fail::Format),
        }
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let n = self.len()?;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| Fail::Format)?;
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
        match self.byte()? {
            0 => v.visit_none(),
            1 => v.visit_some(self),
            _ => Err(Fail::Format),
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
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let left = self.len()?;
        v.visit_seq(Items { r: self, left })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, left: usize, v: V) -> Out<V::Value> {
        v.visit_seq(Items { r: self, left })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        left: usize,
        v: V,
    ) -> Out<V::Value> {
        v.visit_seq(Items { r: self, left })
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Out<V::Value> {
        let left = self.len()?;
        v.visit_map(Items { r: self, left })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Out<V::Value> {
        v.visit_seq(Items {
            r: self,
            left: fields.len(),
        })
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
        Err(Fail::Format) // postcard writes no identifiers
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Out<V::Value> {
        Err(Fail::Format)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple, struct or map still to read.
struct Items<'a, 'de> {
    r: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Fail;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Out<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        // Never more than the bytes left, so a forged length reserves little.
        Some(self.left.min(self.r.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = Fail;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Out<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Out<V::Value> {
        seed.deserialize(&mut *self.r)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.r.input.len()))
    }
}

impl<'de> de::EnumAccess<'de> for &mut Reader<'de> {
    type Error = Fail;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Out<(V::Value, Self)> {
        let idx = self.varint(32)? as u32;
        let v = seed.deserialize(IntoDeserializer::<Fail>::into_deserializer(idx))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
    type Error = Fail;
    fn unit_variant(self) -> Out<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Out<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Out<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, v)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Out<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), v)
    }
}
