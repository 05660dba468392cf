//! The wire codec (postcard), keeping the user's words when a serde impl fails.
//!
//! postcard turns every `serde::ser::Error::custom` / `serde::de::Error::custom` into one
//! message-less error ("Serde Serialization Error"), which hides what a user's own
//! `Serialize` or `Deserialize` impl said (and serde's own "invalid value" / "unknown
//! variant" reports). When that happens, and only then, the work is done a second time by
//! [`words`]: a serializer that writes nothing, and a reader of the same postcard format, both
//! with an error type that keeps the message. The fast path is plain postcard; the second
//! pass costs only a failing call, and runs the user's impl twice (serde impls are expected
//! to be pure). Where the second pass does not fail the same way, postcard's own message is
//! what the user gets.

mod words;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Appends the encoding of `v` to `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(v: &T, buf: Vec<u8>) -> Result<Vec<u8>, String> {
    postcard::to_extend(v, buf).map_err(|e| match e {
        postcard::Error::SerdeSerCustom => words::encode(v).unwrap_or_else(|| e.to_string()),
        e => e.to_string(),
    })
}

/// The encoding of `v`.
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    encode_into(v, Vec::new())
}

/// Decodes a `T` from `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| match e {
        postcard::Error::SerdeDeCustom => {
            words::decode::<T>(bytes).unwrap_or_else(|| e.to_string())
        }
        e => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    enum Shape {
        Dot,
        Line(i64),
        Box { w: u16, h: i128, name: String },
        Pair(Option<char>, f64),
    }

    /// Nested deep in ordinary types, the message still comes through; the re-reader
    /// walks every shape postcard writes.
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
        // The re-reader agrees with postcard where nothing fails.
        let ok = encode(&(vec![Shape::Line(1)], 5u16)).unwrap();
        assert_eq!(words::decode::<(Vec<Shape>, u16)>(&ok), None);
        // serde's own reports come through too.
        let bad_variant = [9u8];
        let e = decode::<Shape>(&bad_variant).unwrap_err();
        assert!(e.contains("variant index"), "{e}");
    }

    #[test]
    fn other_errors_are_postcard_s_own() {
        let e = decode::<u64>(&[]).unwrap_err();
        assert!(!e.is_empty());
        assert_eq!(e, postcard::from_bytes::<u64>(&[]).unwrap_err().to_string());
    }
}
