//! Element types: the `unsafe` marker trait and the tag stored in every header.

use std::fmt;

/// The kind of number an element is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ElemKind {
    /// An unsigned integer.
    Unsigned,
    /// A signed integer.
    Signed,
    /// An IEEE 754 float.
    Float,
}

/// An element type as stored in a segment's header: its kind and its size in bytes.
///
/// `usize` and `u64` share a tag on 64-bit targets (they have one representation), so an
/// array created as one can be attached as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElemType {
    kind: ElemKind,
    size: u8,
}

impl ElemType {
    /// `u8`.
    pub const U8: ElemType = ElemType::new(ElemKind::Unsigned, 1);
    /// `u16`.
    pub const U16: ElemType = ElemType::new(ElemKind::Unsigned, 2);
    /// `u32`.
    pub const U32: ElemType = ElemType::new(ElemKind::Unsigned, 4);
    /// `u64`.
    pub const U64: ElemType = ElemType::new(ElemKind::Unsigned, 8);
    /// `i8`.
    pub const I8: ElemType = ElemType::new(ElemKind::Signed, 1);
    /// `i16`.
    pub const I16: ElemType = ElemType::new(ElemKind::Signed, 2);
    /// `i32`.
    pub const I32: ElemType = ElemType::new(ElemKind::Signed, 4);
    /// `i64`.
    pub const I64: ElemType = ElemType::new(ElemKind::Signed, 8);
    /// `f32`.
    pub const F32: ElemType = ElemType::new(ElemKind::Float, 4);
    /// `f64`.
    pub const F64: ElemType = ElemType::new(ElemKind::Float, 8);

    /// Every element type, in a fixed order (unsigned, signed, float; by size).
    pub const ALL: [ElemType; 10] = [
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
    ];

    const fn new(kind: ElemKind, size: u8) -> ElemType {
        ElemType { kind, size }
    }

    /// The kind of number.
    pub const fn kind(self) -> ElemKind {
        self.kind
    }

    /// The size of one element in bytes.
    pub const fn size(self) -> usize {
        self.size as usize
    }

    /// The header encoding: kind in the high nibble, log2(size) in the low one.
    pub(crate) fn to_tag(self) -> u8 {
        let kind = match self.kind {
            ElemKind::Unsigned => 1,
            ElemKind::Signed => 2,
            ElemKind::Float => 3,
        };
        (kind << 4) | (self.size.trailing_zeros() as u8)
    }

    pub(crate) fn from_tag(tag: u8) -> Option<ElemType> {
        let size = 1u8.checked_shl(u32::from(tag & 0x0f))?;
        let kind = match tag >> 4 {
            1 if size <= 8 => ElemKind::Unsigned,
            2 if size <= 8 => ElemKind::Signed,
            3 if size == 4 || size == 8 => ElemKind::Float,
            _ => return None,
        };
        Some(ElemType { kind, size })
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self.kind {
            ElemKind::Unsigned => 'u',
            ElemKind::Signed => 'i',
            ElemKind::Float => 'f',
        };
        write!(f, "{letter}{}", u32::from(self.size) * 8)
    }
}

/// A type that can live in a shared array.
///
/// # Safety
///
/// Implementors promise that
/// - every bit pattern of `size_of::<Self>()` bytes is a valid `Self` (another process may
///   write any bytes into the array),
/// - `Self` holds no pointers or references (they would be meaningless in another process)
///   and has no `Drop` glue (nobody drops the elements of a segment),
/// - `ELEM.size() == size_of::<Self>()` and `align_of::<Self>() <= 8` (arrays start 8-byte
///   aligned),
/// - `ELEM` describes the representation truthfully, since attaching trusts the tag to hand
///   out a typed view. A `#[repr(transparent)]` wrapper of a primitive may reuse the
///   primitive's tag.
pub unsafe trait ShmElem: Copy + Send + Sync + 'static {
    /// The tag written to and checked against the header.
    const ELEM: ElemType;
}

macro_rules! impl_elem {
    ($($t:ty => $e:ident),* $(,)?) => {$(
        // SAFETY: a primitive number: any bit pattern is valid, no pointers, no Drop, and
        // the tag names its kind and size.
        unsafe impl ShmElem for $t {
            const ELEM: ElemType = ElemType::$e;
        }
    )*};
}

impl_elem!(
    u8 => U8, u16 => U16, u32 => U32, u64 => U64,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    f32 => F32, f64 => F64,
);

#[cfg(target_pointer_width = "64")]
impl_elem!(usize => U64, isize => I64);
#[cfg(target_pointer_width = "32")]
impl_elem!(usize => U32, isize => I32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_reject_garbage() {
        for e in ElemType::ALL {
            assert_eq!(ElemType::from_tag(e.to_tag()), Some(e), "{e}");
        }
        let valid = (0..=255u8)
            .filter(|t| ElemType::from_tag(*t).is_some())
            .count();
        assert_eq!(valid, 10, "only the ten element types decode");
    }

    #[test]
    fn display_names_follow_rust() {
        assert_eq!(ElemType::F64.to_string(), "f64");
        assert_eq!(ElemType::I8.to_string(), "i8");
        assert_eq!(<usize as ShmElem>::ELEM.to_string(), "u64");
    }
}
