//! The serializer: writes the format described in the module docs into an [`Out`] (a
//! `Vec<u8>`, or a shared-memory region once large).

use serde::Serialize;
use serde::ser::{self, SerializeSeq as _};

use super::error::{DEPTH_MAX, Error, Result, ZERO_SIZED_MAX};
use super::out::Out;

/// Appends encodings to its output.
pub(super) struct Writer<'o, 'r> {
    pub(super) out: &'o mut Out<'r>,
    /// How many more sequence elements or map entries may take no bytes.
    zero_left: usize,
    /// How many more levels values may nest: the reader's bound (see [`DEPTH_MAX`]),
    /// counted as the reader counts them.
    depth_left: u32,
}

impl<'o, 'r> Writer<'o, 'r> {
    pub(super) fn new(out: &'o mut Out<'r>) -> Writer<'o, 'r> {
        Writer {
            out,
            zero_left: ZERO_SIZED_MAX,
            depth_left: DEPTH_MAX,
        }
    }

    fn varint(&mut self, v: u64) {
        let mut tmp = [0u8; 10];
        let n = varint_into(v, &mut tmp);
        self.out.extend(&tmp[..n]);
    }

    pub(super) fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    /// An error unless `levels` more fit within [`DEPTH_MAX`] (a leaf level: an enum
    /// without fields, a sequence of plain numbers, which the reader counts too).
    pub(super) fn room(&self, levels: u32) -> Result<()> {
        if self.depth_left < levels {
            return Err(Error::Depth);
        }
        Ok(())
    }

    /// Goes `levels` deeper; an error past [`DEPTH_MAX`].
    fn enter(&mut self, levels: u32) -> Result<()> {
        self.room(levels)?;
        self.depth_left -= levels;
        Ok(())
    }

    fn leave(&mut self, levels: u32) {
        self.depth_left += levels;
    }

    /// Writes `v` one level deeper.
    fn nested<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        self.enter(1)?;
        let r = v.serialize(&mut *self);
        self.leave(1);
        r
    }

    /// Counts one element or entry that wrote nothing (the reader's bound, which the
    /// writer keeps too so that what it writes can be read).
    fn zero(&mut self) -> Result<()> {
        self.zero_left = self.zero_left.checked_sub(1).ok_or(Error::ZeroSized)?;
        Ok(())
    }
}

/// LEB128: seven bits a byte, low first, the high bit set on all bytes but the last.
/// Returns the number of bytes written to `buf`.
pub(super) fn varint_into(mut v: u64, buf: &mut [u8; 10]) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

macro_rules! fixed {
    ($($f:ident: $t:ty),* $(,)?) => {
        $(fn $f(self, v: $t) -> Result<()> {
            self.out.extend(&v.to_le_bytes());
            Ok(())
        })*
    };
}

impl<'a, 'o, 'r> ser::Serializer for &'a mut Writer<'o, 'r> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a, 'o, 'r>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Map<'a, 'o, 'r>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fixed!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_f32: f32, serialize_f64: f64,
    );

    fn serialize_u8(self, v: u8) -> Result<()> {
        self.out.push(v);
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.serialize_u32(u32::from(v))
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.len(v.len());
        self.out.extend(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<()> {
        self.out.push(1);
        self.nested(v)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        // The reader counts the enum as a level.
        self.room(1)?;
        self.varint(u64::from(index));
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<()> {
        self.nested(v)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        v: &T,
    ) -> Result<()> {
        self.varint(u64::from(index));
        self.nested(v)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a, 'o, 'r>> {
        self.enter(1)?;
        if let Some(n) = len {
            self.len(n);
        }
        Ok(Seq {
            start: self.out.len(),
            w: self,
            announced: len,
            count: 0,
        })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        self.enter(1)?;
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        self.enter(1)?;
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        // The enum and its fields: two levels, as the reader counts them.
        self.enter(2)?;
        self.varint(u64::from(index));
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Map<'a, 'o, 'r>> {
        self.enter(1)?;
        if let Some(n) = len {
            self.len(n);
        }
        Ok(Map {
            start: self.out.len(),
            entry: 0,
            w: self,
            announced: len,
            count: 0,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        self.enter(1)?;
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.enter(2)?;
        self.varint(u64::from(index));
        Ok(self)
    }

    /// serde's impls of `Vec<T>` and `[T]` (so also `Box<[T]>`, `Cow<[T]>`, `&[T]`) come
    /// here with `&Vec<T>` or `&[T]`: for a plain number type `T` the elements' bytes are
    /// copied at once, the same bytes the per-element path would write.
    fn collect_seq<I>(self, iter: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        #[cfg(target_endian = "little")]
        if let Some((n, bytes)) = super::bulk::bytes_of(&iter) {
            // A level, as any sequence.
            self.room(1)?;
            self.len(n);
            self.out.extend(bytes);
            return Ok(());
        }
        let iter = iter.into_iter();
        let len = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let mut seq = self.serialize_seq(len)?;
        for item in iter {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A sequence being written. Its length was written first when known; otherwise it is
/// inserted before the elements at the end.
pub(super) struct Seq<'a, 'o, 'r> {
    w: &'a mut Writer<'o, 'r>,
    /// Where the elements start.
    start: usize,
    announced: Option<usize>,
    count: usize,
}

/// Checks the count against the announced length, or inserts it before the elements.
fn close(
    w: &mut Writer<'_, '_>,
    start: usize,
    announced: Option<usize>,
    count: usize,
) -> Result<()> {
    match announced {
        Some(n) if n != count => Err(Error::LengthMismatch {
            announced: n,
            written: count,
        }),
        Some(_) => Ok(()),
        None => {
            let mut tmp = [0u8; 10];
            let n = varint_into(count as u64, &mut tmp);
            w.out.insert(start, &tmp[..n]);
            Ok(())
        }
    }
}

impl ser::SerializeSeq for Seq<'_, '_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        let before = self.w.out.len();
        v.serialize(&mut *self.w)?;
        self.count += 1;
        if self.w.out.len() == before {
            self.w.zero()?;
        }
        Ok(())
    }
    fn end(self) -> Result<()> {
        self.w.leave(1);
        close(self.w, self.start, self.announced, self.count)
    }
}

/// A map being written, as [`Seq`]; an entry is its key, then its value.
pub(super) struct Map<'a, 'o, 'r> {
    w: &'a mut Writer<'o, 'r>,
    start: usize,
    /// Where the current entry starts.
    entry: usize,
    announced: Option<usize>,
    count: usize,
}

impl ser::SerializeMap for Map<'_, '_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<()> {
        self.entry = self.w.out.len();
        k.serialize(&mut *self.w)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        v.serialize(&mut *self.w)?;
        self.count += 1;
        if self.w.out.len() == self.entry {
            self.w.zero()?;
        }
        Ok(())
    }
    fn end(self) -> Result<()> {
        self.w.leave(1);
        close(self.w, self.start, self.announced, self.count)
    }
}

macro_rules! positional {
    ($($tr:ident :: $f:ident: $levels:expr),* $(,)?) => {
        $(impl ser::$tr for &mut Writer<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $f<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                self.leave($levels);
                Ok(())
            }
        })*
    };
}

// The levels each kind entered (a variant: the enum and its fields).
positional!(
    SerializeTuple::serialize_element: 1,
    SerializeTupleStruct::serialize_field: 1,
    SerializeTupleVariant::serialize_field: 2,
);

macro_rules! named {
    ($($tr:ident: $levels:expr),* $(,)?) => {
        $(impl ser::$tr for &mut Writer<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                v: &T,
            ) -> Result<()> {
                v.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                self.leave($levels);
                Ok(())
            }
        })*
    };
}

named!(SerializeStruct: 1, SerializeStructVariant: 2);
