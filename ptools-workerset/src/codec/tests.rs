//! Tests of the codec: the format's bytes, round trips of many types (proptest), the
//! one-copy paths (taken where promised, never for a user's visitor), and arbitrary or
//! forged bytes (no panic, no allocation a length asked for, a typed error).

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;

use proptest::prelude::*;
use serde::de::{DeserializeSeed, Visitor};
use serde::{Deserialize, Serialize};

use super::*;

// ---- The largest allocation a closure asks for, on this thread. ----

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(n: usize) {
    // `try_with`: no panic while the thread's locals are torn down.
    let _ = LARGEST.try_with(|c| c.set(c.get().max(n)));
}

// SAFETY: every call goes to `System` with the caller's arguments unchanged; the notes are
// a thread-local `Cell` without destructor, which allocates nothing.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: the caller's promises for `alloc` hold for `System.alloc`.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        // SAFETY: `p` came from this allocator, that is from `System`, with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// `f`'s result and the largest single allocation it asked for.
fn largest_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

// ---- Types. ----

struct Refuses;
impl Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses: the handle is closed"))
    }
}

#[derive(Debug)]
struct Even(u32);
impl<'de> serde::Deserialize<'de> for Even {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Even, D::Error> {
        let n = u32::deserialize(d)?;
        if n % 2 == 0 {
            Ok(Even(n))
        } else {
            Err(serde::de::Error::custom(format!("{n} is odd")))
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
enum Shape {
    Dot,
    Line(i64),
    Box { w: u16, h: i128, name: String },
    Pair(Option<char>, f64),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Inner {
    ys: Vec<f64>,
    flag: bool,
    raw: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Sample {
    id: u32,
    xs: Vec<f64>,
    name: String,
    tag: Option<char>,
    inner: Vec<Inner>,
    shapes: Vec<Shape>,
    map: BTreeMap<String, Vec<i32>>,
    unit: (),
    boxed: Box<[u16]>,
    cow: Cow<'static, [i32]>,
    pair: (u8, i64, (), String),
    sizes: Vec<usize>,
    offsets: Vec<isize>,
}

/// Reads a sequence of `u64` with its own visitor, one element at a time.
#[derive(Debug, PartialEq)]
struct OwnSeq(Vec<u64>);

impl<'de> Deserialize<'de> for OwnSeq {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OwnSeq, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OwnSeq;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("u64s")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<OwnSeq, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<u64>()? {
                    v.push(x);
                }
                Ok(OwnSeq(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A visitor whose value is a `Vec<u8>`, exactly the value of serde's own, counting the
/// elements it is given.
struct Counting<'a>(&'a Cell<usize>);

impl<'de> Visitor<'de> for Counting<'_> {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Vec<u8>, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = s.next_element::<u8>()? {
            self.0.set(self.0.get() + 1);
            v.push(x);
        }
        Ok(v)
    }
}

impl<'de> DeserializeSeed<'de> for Counting<'_> {
    type Value = Vec<u8>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_seq(self)
    }
}

/// Writes the elements of its vector through a filter, so serde does not know the length.
struct Filtered(Vec<u32>);
impl Serialize for Filtered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter(|x| *x % 3 != 0))
    }
}

/// Announces one more element than it writes.
struct Liar;
impl Serialize for Liar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut q = s.serialize_seq(Some(2))?;
        q.serialize_element(&1u8)?;
        q.end()
    }
}

/// Reads one element of a sequence and stops.
#[derive(Debug)]
struct FirstOnly(#[allow(dead_code)] u8);
impl<'de> Deserialize<'de> for FirstOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FirstOnly, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<FirstOnly, A::Error> {
                let x = s.next_element::<u8>()?.unwrap_or(0);
                Ok(FirstOnly(x))
            }
        }
        d.deserialize_seq(V)
    }
}

// ---- The users' words. ----

#[test]
fn a_custom_encode_error_keeps_its_message() {
    assert_eq!(
        encode(&(1u8, Refuses)).unwrap_err(),
        "refuses: the handle is closed"
    );
}

#[test]
fn a_custom_decode_error_keeps_its_message() {
    let bytes = encode(&vec![2u32, 7]).unwrap();
    assert_eq!(decode::<Vec<Even>>(&bytes).unwrap_err(), "7 is odd");
    let good = encode(&vec![2u32, 8]).unwrap();
    assert_eq!(decode::<Vec<Even>>(&good).unwrap()[1].0, 8);
}

/// Nested deep in ordinary types, the message still comes through.
#[test]
fn nested_errors_keep_their_words_in_every_shape() {
    let shapes = vec![
        Shape::Dot,
        Shape::Line(-5),
        Shape::Box {
            w: 300,
            h: -1 << 100,
            name: "b".into(),
        },
        Shape::Pair(Some('é'), 2.5),
        Shape::Pair(None, -0.0),
    ];
    let mut map = std::collections::BTreeMap::new();
    map.insert(7u8, (true, vec![2u32, 9], ()));
    let v = (shapes, map, 3u64, -3i32, "s".to_owned(), vec![1u8, 2]);
    let bytes = encode(&v).unwrap();
    type T = (
        Vec<Shape>,
        std::collections::BTreeMap<u8, (bool, Vec<Even>, ())>,
        u64,
        i32,
        String,
        Vec<u8>,
    );
    assert_eq!(decode::<T>(&bytes).unwrap_err(), "9 is odd");
    // Where nothing fails, the value comes back.
    let ok = encode(&(vec![Shape::Line(1)], 5u16)).unwrap();
    assert_eq!(
        decode::<(Vec<Shape>, u16)>(&ok).unwrap(),
        (vec![Shape::Line(1)], 5)
    );
    // serde's own reports come through too.
    let bad_variant = [9u8];
    let e = decode::<Shape>(&bad_variant).unwrap_err();
    assert!(e.contains("variant index"), "{e}");
}

#[test]
fn other_errors_are_typed_with_a_message() {
    let e = decode_typed::<u64>(&[]).unwrap_err();
    assert_eq!(
        e,
        Error::End {
            at: 0,
            needed: 8,
            left: 0
        }
    );
    assert_eq!(
        decode::<u64>(&[1, 2]).unwrap_err(),
        "unexpected end of input: 8 bytes needed at byte 0, 2 left"
    );
}

// ---- The bytes. ----

#[test]
fn the_format_s_bytes() {
    let v = (
        1u16,
        true,
        'a',
        "hi",
        Some(3u8),
        None::<u8>,
        vec![1u32, 2],
        -2i8,
        (),
        Shape::Line(-1),
    );
    let mut want = vec![1, 0, 1, b'a', 0, 0, 0, 2, b'h', b'i', 1, 3, 0];
    want.extend_from_slice(&[2, 1, 0, 0, 0, 2, 0, 0, 0, 0xfe, 1]);
    want.extend_from_slice(&(-1i64).to_le_bytes());
    assert_eq!(encode(&v).unwrap(), want);
    // Varint lengths: 300 takes two bytes.
    let e = encode(&vec![0u8; 300]).unwrap();
    assert_eq!(&e[..2], &[0xac, 0x02]);
    assert_eq!(e.len(), 302);
    // Bytes and a `Vec<u8>` are the same on the wire.
    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    assert_eq!(
        encode(&Bytes(&[9, 8, 7])).unwrap(),
        encode(&vec![9u8, 8, 7]).unwrap()
    );
    // `encode_into` appends.
    assert_eq!(encode_into(&7u8, vec![1, 2]).unwrap(), vec![1, 2, 7]);
}

/// The one-copy paths are taken for the promised types, in both directions, and give the
/// bytes of the per-element path (a `VecDeque` is written element by element).
#[test]
#[cfg(target_endian = "little")]
fn one_copy_where_promised_with_the_per_element_bytes() {
    fn check<T>(v: Vec<T>)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + Debug + Clone,
    {
        let per_element: VecDeque<T> = v.iter().cloned().collect();
        bulk::TAKEN.with(|t| t.set((0, 0)));
        let slow = encode(&per_element).unwrap();
        assert_eq!(bulk::TAKEN.with(Cell::get), (0, 0));
        let fast = encode(&v).unwrap();
        let slice = encode(v.as_slice()).unwrap();
        assert_eq!(bulk::TAKEN.with(Cell::get), (2, 0));
        assert_eq!(fast, slow);
        assert_eq!(slice, slow);
        assert_eq!(decode::<Vec<T>>(&fast).unwrap(), v);
        assert_eq!(bulk::TAKEN.with(Cell::get), (2, 1));
        assert_eq!(decode::<VecDeque<T>>(&fast).unwrap(), per_element);
        assert_eq!(bulk::TAKEN.with(Cell::get), (2, 1));
        // Onto the end of a vector (pmap's results), in one copy too.
        let mut onto = v[..v.len() / 2].to_vec();
        decode_seq_into(&fast, v.len(), &mut onto).unwrap();
        assert_eq!(bulk::TAKEN.with(Cell::get), (2, 2));
        assert_eq!(onto[..v.len() / 2], v[..v.len() / 2]);
        assert_eq!(onto[v.len() / 2..], v[..]);
    }
    check(vec![1u8, 2, 255]);
    check(vec![-1i8, 2, 3]);
    check(vec![1u16, 0xffff, 3]);
    check(vec![-1i16, 2]);
    check(vec![1u32, 2, 3]);
    check(vec![-1i32]);
    check(vec![u64::MAX, 2, 3]);
    check(vec![i64::MIN, 2, 3]);
    check(vec![u128::MAX, 2, 3]);
    check(vec![i128::MIN, 2]);
    check(vec![1.5f32, -0.0, f32::INFINITY]);
    check(vec![1.5f64, -0.0, f64::MIN_POSITIVE]);
    check(vec![usize::MAX, 0]);
    check(vec![isize::MIN, 0]);
    check(Vec::<u8>::new());

    // Behind a box, a cow, a reference, in a struct: the slice's path.
    bulk::TAKEN.with(|t| t.set((0, 0)));
    let boxed: Box<[u16]> = vec![1, 2, 3].into();
    let cow: Cow<'_, [i32]> = Cow::Owned(vec![-4, 5]);
    let borrowed: Cow<'_, [i32]> = Cow::Borrowed(&[6, 7]);
    let e = encode(&(&boxed, &cow, &borrowed, &[1.5f64, 2.5][..])).unwrap();
    assert_eq!(bulk::TAKEN.with(Cell::get), (4, 0));
    type T = (
        Box<[u16]>,
        Cow<'static, [i32]>,
        Cow<'static, [i32]>,
        Vec<f64>,
    );
    let back: T = decode(&e).unwrap();
    assert_eq!(bulk::TAKEN.with(Cell::get), (4, 4));
    assert_eq!(&*back.0, &[1, 2, 3]);
    assert_eq!(&*back.1, &[-4, 5]);
    assert_eq!(&*back.2, &[6, 7]);
    assert_eq!(back.3, vec![1.5, 2.5]);

    // Not for bools or chars: their bytes need checking.
    bulk::TAKEN.with(|t| t.set((0, 0)));
    let e = encode(&(vec![true, false], vec!['x'])).unwrap();
    let _: (Vec<bool>, Vec<char>) = decode(&e).unwrap();
    assert_eq!(bulk::TAKEN.with(Cell::get), (0, 0));
}

/// A user's visitor whose value is a `Vec<u8>` is not bypassed: it sees every element.
#[test]
fn a_user_visitor_of_a_vec_u8_is_not_bypassed() {
    let v: Vec<u8> = (0..=255).collect();
    let bytes = encode(&v).unwrap();
    let seen = Cell::new(0);
    #[cfg(target_endian = "little")]
    bulk::TAKEN.with(|t| t.set((0, 0)));
    let back = Counting(&seen)
        .deserialize(&mut de::Reader::new(de::Slice::new(&bytes)))
        .unwrap();
    assert_eq!(back, v);
    assert_eq!(seen.get(), 256);
    #[cfg(target_endian = "little")]
    assert_eq!(bulk::TAKEN.with(Cell::get).1, 0);
}

/// A user's own visitor reads a `Vec<u64>` written in bulk, and gets the same values.
#[test]
fn a_user_visitor_reads_what_the_bulk_path_wrote() {
    let v: Vec<u64> = (0..1000).map(|i| i * 0x0101_0101_0101 + 7).collect();
    let bytes = encode(&v).unwrap();
    assert_eq!(decode::<OwnSeq>(&bytes).unwrap(), OwnSeq(v));
}

// ---- Lengths, strictness. ----

#[test]
fn unknown_lengths_are_inserted_and_wrong_ones_refused() {
    let v: Vec<u32> = (0..200).collect();
    let e = encode(&(5u8, Filtered(v.clone()), 6u8)).unwrap();
    let kept: Vec<u32> = v.into_iter().filter(|x| x % 3 != 0).collect();
    assert_eq!(
        decode::<(u8, Vec<u32>, u8)>(&e).unwrap(),
        (5, kept.clone(), 6)
    );
    assert_eq!(e, encode(&(5u8, kept, 6u8)).unwrap());
    assert_eq!(
        encode(&Liar).unwrap_err(),
        Error::LengthMismatch {
            announced: 2,
            written: 1
        }
        .to_string()
    );
}

#[test]
fn strict_bytes() {
    let at = |b: &[u8]| decode_typed::<(bool,)>(b).unwrap_err();
    assert_eq!(at(&[2]), Error::Bool { at: 0, byte: 2 });
    assert_eq!(
        decode_typed::<Option<u8>>(&[2, 0]).unwrap_err(),
        Error::OptionTag { at: 0, byte: 2 }
    );
    assert_eq!(
        decode_typed::<char>(&0xd800u32.to_le_bytes()).unwrap_err(),
        Error::Char {
            at: 0,
            value: 0xd800
        }
    );
    assert_eq!(
        decode_typed::<String>(&[2, 0xff, 0xfe]).unwrap_err(),
        Error::Utf8 { at: 1 }
    );
    assert_eq!(
        decode_typed::<u8>(&[1, 2]).unwrap_err(),
        Error::Trailing { at: 1, left: 1 }
    );
    // Overlong and overflowing varints.
    assert_eq!(
        decode_typed::<String>(&[0x80, 0x00]).unwrap_err(),
        Error::Varint { at: 0 }
    );
    let mut too_big = vec![0xff; 9];
    too_big.push(0x02); // bit 64
    assert_eq!(
        decode_typed::<Vec<u8>>(&too_big).unwrap_err(),
        Error::Varint { at: 0 }
    );
    assert_eq!(
        decode_typed::<Shape>(&[0xff, 0xff, 0xff, 0xff, 0x10]).unwrap_err(),
        Error::Varint { at: 0 }
    );
    // The largest u64 and u32 varints are fine where they fit.
    let mut max = vec![0xff; 9];
    max.push(0x01);
    assert!(matches!(
        decode_typed::<Vec<u8>>(&max).unwrap_err(),
        Error::Length { .. }
    ));
    assert!(matches!(
        decode_typed::<Shape>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err(),
        Error::Custom(m) if m.contains("variant index")
    ));
    // A visitor that stops early.
    assert_eq!(
        decode_typed::<FirstOnly>(&[3, 1, 2, 3]).unwrap_err(),
        Error::Unread { left: 2 }
    );
    // Not self-describing.
    #[derive(Debug, serde::Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Untagged {
        A(u8),
    }
    assert!(matches!(
        decode_typed::<Untagged>(&[1]).unwrap_err(),
        Error::NotSelfDescribing(_)
    ));
}

#[test]
fn zero_sized_elements_have_a_budget() {
    let v = vec![(); 1000];
    assert_eq!(encode(&v).unwrap(), vec![0xe8, 0x07]);
    assert_eq!(decode::<Vec<()>>(&encode(&v).unwrap()).unwrap(), v);
    let too_many = vec![(); error::ZERO_SIZED_MAX + 1];
    assert_eq!(encode(&too_many).unwrap_err(), Error::ZeroSized.to_string());
    // Nested, the budget is for the whole value: 16 sequences of 2^16 units each pass
    // every per-sequence check and use it up, and the seventeenth is refused.
    let mut forged = Vec::new();
    let mut tmp = [0u8; 10];
    let n = ser::varint_into(1000, &mut tmp);
    forged.extend_from_slice(&tmp[..n]);
    for _ in 0..1000 {
        let n = ser::varint_into(1 << 16, &mut tmp);
        forged.extend_from_slice(&tmp[..n]);
    }
    let t0 = std::time::Instant::now();
    let e = decode_typed::<Vec<Vec<()>>>(&forged).unwrap_err();
    assert!(
        matches!(e, Error::Length { len: 65536, .. } | Error::ZeroSized),
        "{e:?}"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}

/// A forged length fails at once, before anything is allocated for it.
#[test]
fn forged_lengths_allocate_nothing() {
    fn check<T: serde::de::DeserializeOwned + Debug>(bytes: &[u8]) {
        let (r, largest) = largest_alloc(|| decode_typed::<T>(bytes));
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::Length { .. } | Error::End { .. }),
            "{e:?}"
        );
        assert!(largest < 1024, "{largest} bytes allocated for {e}");
    }
    // Past the bytes left plus the budget for elements that take no bytes.
    for len in [1u64 << 21, 1 << 40, (1 << 62) + 3, u64::MAX] {
        let mut b = [0u8; 10];
        let n = ser::varint_into(len, &mut b);
        let mut bytes = b[..n].to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        check::<Vec<u8>>(&bytes);
        check::<Vec<u64>>(&bytes);
        check::<Vec<u128>>(&bytes);
        check::<Vec<f64>>(&bytes);
        check::<Vec<String>>(&bytes);
        check::<Vec<()>>(&bytes);
        check::<Vec<Vec<()>>>(&bytes);
        check::<String>(&bytes);
        check::<BTreeMap<u8, u8>>(&bytes);
        check::<HashMap<u16, ()>>(&bytes);
        check::<Box<[u16]>>(&bytes);
    }
    // Within the bytes left but not in whole elements.
    check::<Vec<u64>>(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
}

#[test]
fn a_sequence_onto_a_vector_is_checked_like_a_value() {
    // Per element (strings), with elements that take no bytes, and in bulk (numbers).
    let words: Vec<String> = ["a", "", "ccc"].map(String::from).to_vec();
    let mut onto = vec![String::from("first")];
    decode_seq_into(&encode(&words).unwrap(), 3, &mut onto).unwrap();
    assert_eq!(onto, ["first", "a", "", "ccc"]);
    let mut units = vec![(); 2];
    decode_seq_into(&encode(&vec![(); 5]).unwrap(), 5, &mut units).unwrap();
    assert_eq!(units.len(), 7);
    let nums = encode(&vec![1u64, 2, 3]).unwrap();
    // Another length than expected, bytes after the sequence, a sequence cut short.
    let e = decode_seq_into::<u64>(&nums, 4, &mut Vec::new()).unwrap_err();
    assert!(e.contains("3 elements") && e.contains("4 expected"), "{e}");
    let mut longer = nums.clone();
    longer.push(0);
    let e = decode_seq_into::<u64>(&longer, 3, &mut Vec::new()).unwrap_err();
    assert!(e.contains("1 bytes after"), "{e}");
    let e = decode_seq_into::<u64>(&nums[..nums.len() - 1], 3, &mut Vec::new()).unwrap_err();
    assert!(e.contains("23 bytes left"), "{e}");
    let e = decode_seq_into::<String>(&encode(&words).unwrap()[..4], 3, &mut Vec::new());
    assert!(e.is_err());
    // A forged length allocates nothing, whatever is expected.
    for len in [1u64 << 21, 1 << 40, u64::MAX] {
        let mut b = [0u8; 10];
        let n = ser::varint_into(len, &mut b);
        let mut bytes = b[..n].to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        for expect in [len as usize, 1] {
            let (r, largest) = largest_alloc(|| {
                let mut v: Vec<u64> = Vec::new();
                let a = decode_seq_into(&bytes, expect, &mut v);
                let mut w: Vec<String> = Vec::new();
                let b = decode_seq_into(&bytes, expect, &mut w);
                (a, b)
            });
            assert!(r.0.is_err() && r.1.is_err(), "{r:?}");
            assert!(largest < 1024, "{largest} bytes allocated");
        }
    }
}

/// A recursive type: each `Cons` is one level (an enum).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum List {
    Nil,
    Cons(Box<List>),
}

fn list(depth: usize) -> List {
    (1..depth).fold(List::Nil, |l, _| List::Cons(Box::new(l)))
}

#[test]
fn nesting_is_bounded_on_both_sides() {
    use super::error::DEPTH_MAX;
    let max = DEPTH_MAX as usize;
    // As deep as allowed: written and read back.
    let deepest = list(max);
    let bytes = encode(&deepest).unwrap();
    assert_eq!(decode::<List>(&bytes).unwrap(), deepest);
    // One level more: refused by the writer, and by the reader when forged.
    assert_eq!(
        encode(&list(max + 1)).unwrap_err(),
        Error::Depth.to_string()
    );
    let mut forged = bytes.clone();
    forged.insert(0, 1);
    assert_eq!(decode_typed::<List>(&forged).unwrap_err(), Error::Depth);
    // A million levels in a million bytes: an error, not a stack overflow (which would
    // abort this test process).
    let mut forged = vec![1u8; 1_000_000];
    forged.push(0);
    assert_eq!(decode_typed::<List>(&forged).unwrap_err(), Error::Depth);
    // SAFETY: `forged` is ours and outlives the call.
    let shared = unsafe { decode_shared::<List>(forged.as_ptr(), forged.len(), None) };
    assert_eq!(shared.unwrap_err(), Error::Depth.to_string());
    // Every kind of level counts alike on both sides: options, sequences, maps, tuples,
    // structs, variants with fields, newtypes.
    fn agree<T: Serialize + serde::de::DeserializeOwned + PartialEq + Debug>(
        wrap: impl Fn(T) -> T,
        seed: T,
        levels_each: usize,
    ) {
        let mut v = seed;
        let mut depth = 1;
        while depth + levels_each <= DEPTH_MAX as usize {
            v = wrap(v);
            depth += levels_each;
        }
        let bytes = encode(&v).unwrap_or_else(|e| panic!("at {depth}: {e}"));
        assert_eq!(decode::<T>(&bytes).unwrap(), v);
        assert_eq!(encode(&wrap(v)).unwrap_err(), Error::Depth.to_string());
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Tree {
        Leaf(u8),
        Node { kids: Vec<Tree> },
        Pair(Box<Tree>, u8),
        Maybe(Option<Box<Tree>>),
        Keyed(BTreeMap<u8, Tree>),
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wrap(Box<Nested>);
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Nested {
        End,
        More(Wrap),
    }
    // A struct variant with a vector: the variant, its fields and the vector.
    agree(|t| Tree::Node { kids: vec![t] }, Tree::Leaf(1), 3);
    agree(|t| Tree::Pair(Box::new(t), 2), Tree::Leaf(1), 2);
    agree(|t| Tree::Maybe(Some(Box::new(t))), Tree::Leaf(1), 2);
    agree(|t| Tree::Keyed(BTreeMap::from([(3, t)])), Tree::Leaf(1), 2);
    agree(|n| Nested::More(Wrap(Box::new(n))), Nested::End, 2);
}

// ---- Round trips (proptest). ----

/// `v` survives a round trip: equal as a value, and equal bytes when encoded again (which
/// also holds for NaNs; not for hash maps, whose order changes).
fn round_trip<T>(v: &T)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(v).unwrap();
    let back: T = decode(&bytes).unwrap_or_else(|e| panic!("{e} for {v:?}"));
    // SAFETY: `bytes` is ours and outlives the call.
    let shared: T = unsafe { super::decode_shared(bytes.as_ptr(), bytes.len(), None) }
        .unwrap_or_else(|e| panic!("{e} for {v:?} from shared memory"));
    if !std::any::type_name::<T>().contains("HashMap") {
        assert_eq!(encode(&back).unwrap(), bytes);
        assert_eq!(encode(&shared).unwrap(), bytes);
    }
    if format!("{v:?}").contains("NaN") {
        return;
    }
    assert_eq!(&back, v);
}

fn inner() -> impl Strategy<Value = Inner> {
    (
        prop::collection::vec(any::<f64>(), 0..9),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..33),
    )
        .prop_map(|(ys, flag, raw)| Inner { ys, flag, raw })
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Dot),
        any::<i64>().prop_map(Shape::Line),
        (any::<u16>(), any::<i128>(), ".{0,8}").prop_map(|(w, h, name)| Shape::Box { w, h, name }),
        (any::<Option<char>>(), any::<f64>()).prop_map(|(c, x)| Shape::Pair(c, x)),
    ]
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        (
            any::<u32>(),
            prop::collection::vec(any::<f64>(), 0..40),
            ".{0,12}",
            any::<Option<char>>(),
            prop::collection::vec(inner(), 0..4),
            prop::collection::vec(shape(), 0..5),
        ),
        (
            prop::collection::btree_map(".{0,4}", prop::collection::vec(any::<i32>(), 0..5), 0..4),
            prop::collection::vec(any::<u16>(), 0..9),
            prop::collection::vec(any::<i32>(), 0..9),
            (any::<u8>(), any::<i64>(), ".{0,4}"),
            prop::collection::vec(any::<usize>(), 0..5),
            prop::collection::vec(any::<isize>(), 0..5),
        ),
    )
        .prop_map(
            |((id, xs, name, tag, inner, shapes), (map, boxed, cow, p, sizes, offsets))| Sample {
                id,
                xs,
                name,
                tag,
                inner,
                shapes,
                map,
                unit: (),
                boxed: boxed.into(),
                cow: Cow::Owned(cow),
                pair: (p.0, p.1, (), p.2),
                sizes,
                offsets,
            },
        )
}

macro_rules! numbers_round_trip {
    ($($name:ident: $t:ty),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $(
                #[test]
                fn $name(x in any::<$t>(), v in prop::collection::vec(any::<$t>(), 0..67)) {
                    round_trip(&x);
                    round_trip(&v);
                    round_trip(&v.clone().into_boxed_slice());
                    round_trip(&Cow::<'static, [$t]>::Owned(v.clone()));
                    // The slice's bytes are the vector's, and a user's visitor that reads
                    // element by element gets them too.
                    prop_assert_eq!(encode(v.as_slice()).unwrap(), encode(&v).unwrap());
                    let deque: VecDeque<$t> = decode(&encode(&v).unwrap()).unwrap();
                    prop_assert_eq!(encode(&deque).unwrap(), encode(&v).unwrap());
                }
            )*
        }
    };
}

numbers_round_trip!(
    rt_u8: u8, rt_i8: i8, rt_u16: u16, rt_i16: i16, rt_u32: u32, rt_i32: i32, rt_u64: u64,
    rt_i64: i64, rt_u128: u128, rt_i128: i128, rt_f32: f32, rt_f64: f64, rt_usize: usize,
    rt_isize: isize, rt_bool: bool, rt_char: char,
);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn structs_enums_maps_round_trip(s in sample()) {
        round_trip(&s);
        round_trip(&vec![s.clone(), s]);
    }

    #[test]
    fn scalars_and_containers_round_trip(
        a in any::<(u8, i64, String, Option<char>)>(),
        m in prop::collection::hash_map(any::<u16>(), ".{0,3}", 0..6),
        o in any::<Option<Option<bool>>>(),
        n in prop::collection::vec(prop::collection::vec(any::<u64>(), 0..4), 0..4),
        u in prop::collection::vec(Just(()), 0..9),
    ) {
        round_trip(&a);
        round_trip(&m);
        round_trip(&o);
        round_trip(&n);
        round_trip(&u);
        round_trip(&((), ((),), [1u8, 2, 3], (1.5f32, -2i16)));
    }

    /// Decoding arbitrary bytes as many types ends in a value or a typed error, without a
    /// panic and without an allocation larger than a bound.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz_all(&bytes);
    }

    /// The same for valid encodings with a byte changed, or cut short.
    #[test]
    fn damaged_encodings_never_panic(
        s in sample(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&s).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        fuzz_all(&bytes);
        let n = cut.index(bytes.len());
        fuzz_all(&bytes[..n]);
    }
}

/// `decode_seq_into` agrees with decoding a `Vec<T>`, within the same allocation bound.
fn seq<T: serde::de::DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) {
    let whole = decode_typed::<Vec<T>>(bytes);
    let n = whole.as_ref().map_or(0, Vec::len);
    let (onto, largest) = largest_alloc(|| {
        let mut v = Vec::new();
        decode_seq_into::<T>(bytes, n, &mut v).map(|()| v)
    });
    match whole {
        Ok(w) => assert_eq!(onto.unwrap(), w),
        Err(_) => assert!(onto.is_err()),
    }
    let bound = 160 * bytes.len() + 4096;
    assert!(largest <= bound, "{largest} > {bound}");
}

fn fuzz_all(bytes: &[u8]) {
    fn one<T: serde::de::DeserializeOwned>(bytes: &[u8]) {
        let (r, largest) = largest_alloc(|| decode_typed::<T>(bytes).map(drop));
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
        }
        // The largest single allocation: the output's own (a string, a bulk vector) of at
        // most the input's length, or what a visitor reserves from a size hint no larger
        // than the bytes left: times an element's size (at most 64 here), and for a hash
        // map times the up to 2.3 buckets per entry of its power-of-two table.
        let bound = 160 * bytes.len() + 4096;
        assert!(largest <= bound, "{largest} > {bound}");
        // From shared memory: the same outcome, the same bound.
        let (shared, largest) = largest_alloc(|| {
            // SAFETY: `bytes` is ours and outlives the call.
            unsafe { super::decode_shared::<T>(bytes.as_ptr(), bytes.len(), None) }.map(drop)
        });
        let slice = decode_typed::<T>(bytes)
            .map(drop)
            .map_err(|e| e.to_string());
        assert_eq!(shared, slice);
        assert!(largest <= bound, "{largest} > {bound}");
    }
    seq::<u64>(bytes);
    seq::<String>(bytes);
    seq::<()>(bytes);
    one::<Vec<u64>>(bytes);
    one::<Vec<u8>>(bytes);
    one::<Vec<f32>>(bytes);
    one::<Vec<String>>(bytes);
    one::<Vec<()>>(bytes);
    one::<Vec<Vec<()>>>(bytes);
    one::<Shape>(bytes);
    one::<Vec<Shape>>(bytes);
    one::<Sample>(bytes);
    one::<BTreeMap<u16, Vec<u8>>>(bytes);
    one::<HashMap<String, Option<i128>>>(bytes);
    one::<(bool, char, Option<u8>, String)>(bytes);
    one::<OwnSeq>(bytes);
}

// ---- SharedSlice: format, views where lent memory holds them, forged bytes. ----

/// Memory aligned for any number, as a region's mapping is: 256 KiB.
struct Lent(Vec<u128>);

impl Lent {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the vector's elements are plain numbers with no padding: all its bytes
        // are initialized, `u8` has alignment 1, borrowed as long as `self`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 16) }
    }
}

/// `bytes` copied into aligned memory at `at`, and a `Home` over all of it.
fn lent_at(bytes: &[u8], at: usize) -> (Lent, Home) {
    let mut buf = vec![0u128; (256 << 10) / 16];
    // SAFETY: as in `Lent::bytes`, mutably: any bytes are valid `u128`s.
    let all =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 16) };
    all[at..at + bytes.len()].copy_from_slice(bytes);
    let home = Home::new(all.as_ptr(), all.len(), std::sync::Arc::new(()));
    (Lent(buf), home)
}

#[test]
fn shared_slices_have_a_padded_format_and_round_trip_owned() {
    // Length 3, then padding to an offset aligned for the numbers (after the length and
    // the padding byte, 2 bytes in: 6 more for `f64`, none for `u8`).
    let v = SharedSlice::from(vec![1.5f64, -2.0, 0.25]);
    let bytes = encode(&v).unwrap();
    assert_eq!(&bytes[..8], &[3, 6, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&bytes[8..16], &1.5f64.to_le_bytes());
    assert_eq!(bytes.len(), 8 + 24);
    assert_eq!(
        &encode(&SharedSlice::from(vec![7u8, 8])).unwrap(),
        &[2, 0, 7, 8]
    );
    // After a byte of a tuple, the padding still aligns the numbers in the payload.
    let t = encode(&(9u8, SharedSlice::from(vec![5u32]))).unwrap();
    assert_eq!(t, [9, 1, 1, 0, 5, 0, 0, 0]);
    // Without a home, every decoding owns its numbers.
    let back: SharedSlice<f64> = decode(&bytes).unwrap();
    assert!(!back.is_in_place());
    assert_eq!(back, v);
    // SAFETY: `bytes` is ours and outlives the call.
    let shared: SharedSlice<f64> =
        unsafe { decode_shared(bytes.as_ptr(), bytes.len(), None) }.unwrap();
    assert_eq!(shared, v);
    let back: (u8, SharedSlice<u32>) = decode(&t).unwrap();
    assert_eq!((back.0, back.1.into_vec()), (9, vec![5]));
    round_trip(&SharedSlice::<u64>::new());
    round_trip(&SharedSlice::from(
        (0..1000).map(|i| i as i128 - 7).collect::<Vec<_>>(),
    ));
    // Another serde format sees a sequence, as for a `Vec`.
    use serde::de::value::{Error as ValueError, SeqDeserializer};
    let d = SeqDeserializer::<_, ValueError>::new(vec![4u16, 5, 6].into_iter());
    let s = SharedSlice::<u16>::deserialize(d).unwrap();
    assert!(!s.is_in_place());
    assert_eq!(&*s, &[4, 5, 6]);
}

#[test]
fn shared_slices_are_views_only_inside_lent_memory_and_aligned() {
    let v = SharedSlice::from((0..10_000).map(|i| i as f64).collect::<Vec<_>>());
    let bytes = encode(&v).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0x90, 0x4e, 5, 0],
        "10 000, then 5 bytes of padding"
    );
    // At offset 0 of aligned memory: a view, into that memory.
    let (buf, home) = lent_at(&bytes, 0);
    let got: SharedSlice<f64> = decode_in(&buf.bytes()[..bytes.len()], Some(&home)).unwrap();
    assert!(got.is_in_place());
    assert_eq!(got.as_ptr() as usize, buf.bytes().as_ptr() as usize + 8);
    assert_eq!(got, v);
    // The same from memory read as shared.
    // SAFETY: `buf` outlives the call.
    let got: SharedSlice<f64> =
        unsafe { decode_shared(buf.bytes().as_ptr(), bytes.len(), Some(home.clone())) }.unwrap();
    assert!(got.is_in_place());
    assert_eq!(got, v);
    // Moved by 1 byte: the numbers are not aligned, so they are copied.
    let (buf, home) = lent_at(&bytes, 1);
    let got: SharedSlice<f64> = decode_in(&buf.bytes()[1..1 + bytes.len()], Some(&home)).unwrap();
    assert!(!got.is_in_place());
    assert_eq!(got, v);
    // Bytes that do not lie in the lent memory: copied.
    let (_other, home) = lent_at(&[], 0);
    let got: SharedSlice<f64> = decode_in(&bytes, Some(&home)).unwrap();
    assert!(!got.is_in_place());
    assert_eq!(got, v);
    // Bytes need no alignment.
    let b = encode(&(1u8, SharedSlice::from(vec![3u8; 70_000]))).unwrap();
    let (buf, home) = lent_at(&b, 3);
    let got: (u8, SharedSlice<u8>) = decode_in(&buf.bytes()[3..3 + b.len()], Some(&home)).unwrap();
    assert!(got.1.is_in_place());
    assert_eq!(&*got.1, &vec![3u8; 70_000][..]);
    // Fewer numbers than the regions' threshold: copied, even inside lent memory.
    let small = encode(&SharedSlice::from(vec![2.5f64; 100])).unwrap();
    let (buf, home) = lent_at(&small, 0);
    let got: SharedSlice<f64> = decode_in(&buf.bytes()[..small.len()], Some(&home)).unwrap();
    assert!(!got.is_in_place());
    assert_eq!(&*got, &[2.5; 100][..]);
}

#[test]
fn forged_shared_slices_are_typed_errors() {
    let home_bytes = encode(&SharedSlice::from(vec![1u64, 2])).unwrap();
    let (buf, home) = lent_at(&home_bytes, 0);
    let check = |bytes: &[u8], want: &str| {
        let e = decode::<SharedSlice<u64>>(bytes).unwrap_err();
        assert!(e.contains(want), "{e} for {bytes:?}");
        let e = decode_in::<SharedSlice<u64>>(bytes, Some(&home)).unwrap_err();
        assert!(e.contains(want), "{e} for {bytes:?}");
    };
    // A padding byte of 16 or more.
    check(&[1, 16, 0], "padding of 16 bytes");
    // More numbers than the bytes left hold, the product overflowing included: nothing
    // is allocated for them.
    check(&[2, 0, 1, 2, 3, 4, 5, 6, 7, 8], "2 elements of 8 bytes");
    let mut huge = vec![0xff; 9];
    huge.push(0x01);
    huge.push(0);
    check(&huge, "elements of 8 bytes");
    // Padding past the end, and nothing at all.
    check(&[1, 7, 0, 0], "unexpected end");
    check(&[], "unexpected end");
    // Trailing bytes after a valid slice.
    let mut t = home_bytes.clone();
    t.push(0);
    check(&t, "bytes after the value");
    // Numbers claimed past the end of the input, inside the lent memory: refused, not
    // lent (the view's bounds are the input's, never the memory around it).
    let mut claim = vec![0x80, 0x80, 0x04, 0]; // 65536 bytes, no padding
    claim.extend_from_slice(&[5; 60]);
    let (claimed, around) = lent_at(&claim, 0);
    let e =
        decode_in::<SharedSlice<u8>>(&claimed.bytes()[..claim.len()], Some(&around)).unwrap_err();
    assert!(
        e.contains("65536 elements of 1 bytes, 60 bytes left"),
        "{e}"
    );
    // The lent bytes themselves still decode.
    let ok: SharedSlice<u64> = decode_in(&buf.bytes()[..home_bytes.len()], Some(&home)).unwrap();
    assert_eq!(&*ok, &[1, 2]);
    // Forged lengths ask for no allocation of their size.
    let (_, largest) = largest_alloc(|| {
        decode::<SharedSlice<f64>>(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 1, 2]).unwrap_err()
    });
    assert!(largest < 1024, "{largest} bytes");
}
