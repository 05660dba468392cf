//! Why an encode or a decode failed: a serde impl's own words, kept as they are, or what
//! was wrong with the bytes and where.

use std::fmt;

/// The most elements of sequences and maps that take no bytes (`Vec<()>`, a map of unit
/// structs) in one value. See the module docs, "Trusting no byte".
pub(super) const ZERO_SIZED_MAX: usize = 1 << 20;

/// The deepest nesting of sequences, maps, tuples, structs, enums, `Some`s and newtypes in
/// one value: a recursive type (a tree, a list of `Box`es) decoded from forged bytes
/// would otherwise recurse as deep as the bytes allow, past the end of the thread's stack
/// (an abort of the whole process, not an error). Each level takes well under 2 KiB of
/// stack even in debug builds, so 256 levels fit a thread's default 2 MiB with room to
/// spare. The writer keeps the same bound, so what it writes can be read.
pub(super) const DEPTH_MAX: u32 = 256;

/// A failed encode or decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// A `Serialize` or `Deserialize` impl's own message (`custom`, and serde's own reports
    /// such as "invalid value", which go through it).
    Custom(String),
    /// The input ends before a value does.
    End {
        at: usize,
        needed: usize,
        left: usize,
    },
    /// Bytes after the value.
    Trailing { at: usize, left: usize },
    /// A varint that is overlong (a zero last byte) or larger than its type.
    Varint { at: usize },
    /// A `bool` byte other than 0 or 1.
    Bool { at: usize, byte: u8 },
    /// An `Option` tag other than 0 or 1.
    OptionTag { at: usize, byte: u8 },
    /// A `char` that is no Unicode scalar value.
    Char { at: usize, value: u32 },
    /// A string that is not UTF-8.
    Utf8 { at: usize },
    /// A sequence or map length that more than the bytes left could not hold.
    Length {
        at: usize,
        len: usize,
        elem: usize,
        left: usize,
    },
    /// A `SharedSlice`'s padding byte of 16 or more.
    Padding { at: usize, byte: u8 },
    /// More than [`ZERO_SIZED_MAX`] elements that take no bytes.
    ZeroSized,
    /// Nesting deeper than [`DEPTH_MAX`].
    Depth,
    /// A visitor stopped reading a sequence, tuple, struct or map before its end.
    Unread { left: usize },
    /// A `Serialize` impl announced one length and gave another number of elements.
    LengthMismatch { announced: usize, written: usize },
    /// What only a self-describing format can do (`deserialize_any` and its kin).
    NotSelfDescribing(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Custom(m) => f.write_str(m),
            Error::End { at, needed, left } => write!(
                f,
                "unexpected end of input: {needed} bytes needed at byte {at}, {left} left"
            ),
            Error::Trailing { at, left } => {
                write!(f, "{left} bytes after the value, which ends at byte {at}")
            }
            Error::Varint { at } => write!(f, "bad varint at byte {at}: overlong or too large"),
            Error::Bool { at, byte } => write!(f, "bool byte {byte} at byte {at}: not 0 or 1"),
            Error::OptionTag { at, byte } => {
                write!(f, "Option tag {byte} at byte {at}: not 0 or 1")
            }
            Error::Char { at, value } => {
                write!(
                    f,
                    "char {value:#x} at byte {at}: not a Unicode scalar value"
                )
            }
            Error::Utf8 { at } => write!(f, "string at byte {at}: not UTF-8"),
            Error::Length {
                at,
                len,
                elem: 0,
                left,
            } => write!(
                f,
                "length {len} at byte {at}: more elements than the {left} bytes left can hold"
            ),
            Error::Length {
                at,
                len,
                elem,
                left,
            } => write!(
                f,
                "length {len} at byte {at}: {len} elements of {elem} bytes, {left} bytes left"
            ),
            Error::Padding { at, byte } => {
                write!(f, "padding of {byte} bytes at byte {at}: at most 15")
            }
            Error::ZeroSized => write!(
                f,
                "more than {ZERO_SIZED_MAX} sequence elements that take no bytes in one value"
            ),
            Error::Depth => write!(
                f,
                "a value nested more than {DEPTH_MAX} levels deep (sequences, maps, tuples, \
                 structs, enums, options, newtypes)"
            ),
            Error::Unread { left } => write!(
                f,
                "a Deserialize impl stopped {left} elements before the end of a sequence"
            ),
            Error::LengthMismatch { announced, written } => write!(
                f,
                "a Serialize impl announced {announced} elements and gave {written}"
            ),
            Error::NotSelfDescribing(what) => write!(
                f,
                "{what} needs a self-describing format; the wire format is positional \
                 (no #[serde(flatten)], untagged or internally tagged enums)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Custom(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Custom(msg.to_string())
    }
}

/// Shorthand for the codec's results.
pub(super) type Result<T> = std::result::Result<T, Error>;
