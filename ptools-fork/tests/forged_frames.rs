//! Children that write their own bytes to their result pipe (forged headers announcing 1 TiB
//! or `u64::MAX`, unknown kinds, frames cut short) get typed errors, their siblings keep their
//! results, and the parent holds only what was really sent: shown also under a 1 GiB
//! address-space limit, where allocating an announced size would abort the parent.

mod common;

use std::time::Duration;

use ptools_fork::__test_hooks::write_raw_to_result_pipe;
use ptools_fork::{ChildError, FrameError, Pfork};
use serde::{Serialize, Serializer};

fn main() {
    common::run(&[
        (
            "the_hook_works_only_in_a_child",
            the_hook_works_only_in_a_child,
        ),
        (
            "forged_headers_over_the_default_cap",
            forged_headers_over_the_default_cap,
        ),
        (
            "forged_headers_without_a_cap_are_truncated_frames",
            forged_headers_without_a_cap_are_truncated_frames,
        ),
        (
            "forged_headers_under_a_1_gib_address_space_limit",
            forged_headers_under_a_1_gib_address_space_limit,
        ),
        (
            "oversized_result_is_measured_not_held_by_the_child",
            oversized_result_is_measured_not_held_by_the_child,
        ),
    ]);
}

/// Kind byte of a result frame (the crate's `frame::TAG_OK`).
const KIND_OK: u8 = 0;

/// A frame header: kind, then the little-endian 64-bit payload length.
fn header(kind: u8, len: u64) -> Vec<u8> {
    let mut h = vec![kind];
    h.extend_from_slice(&len.to_le_bytes());
    h
}

/// In a pfork child: writes `bytes` to the result pipe and leaves with code 0, as a child
/// that forged its frame and exited cleanly.
fn forge(bytes: &[u8]) -> ! {
    let code = match write_raw_to_result_pipe(bytes) {
        Ok(()) => 0,
        // The parent may stop reading at the header and close the pipe.
        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => 0,
        Err(_) => 7,
    };
    // SAFETY: _exit is always sound; a pfork child must not return into the parent's frames.
    unsafe { libc::_exit(code) }
}

/// `n` bytes of a recognisable pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A generous timeout: a liveness guard, not a timing check.
fn opts() -> Pfork {
    Pfork::new().timeout(Duration::from_secs(120))
}

fn the_hook_works_only_in_a_child() {
    let err = write_raw_to_result_pipe(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
}

fn forged_headers_over_the_default_cap() {
    assert_eq!(Pfork::DEFAULT_MAX_RESULT_BYTES, 1 << 30);
    let gib = Pfork::DEFAULT_MAX_RESULT_BYTES;
    let outcomes = opts()
        .run(7, |i| match i {
            1 => forge(&header(KIND_OK, 1 << 40)),
            2 => forge(&header(KIND_OK, u64::MAX)),
            3 => forge(&[header(9, 3), b"abc".to_vec()].concat()),
            // The cap is inclusive: 1 GiB announced is accepted, and then cut short.
            4 => forge(&[header(KIND_OK, gib), pattern(10)].concat()),
            5 => forge(&header(KIND_OK, gib + 1)),
            _ => pattern(200_000 + i),
        })
        .unwrap();
    assert_eq!(outcomes[0], Ok(pattern(200_000)));
    assert_eq!(
        outcomes[1],
        Err(ChildError::ResultTooLarge {
            len: 1 << 40,
            max: gib
        })
    );
    assert_eq!(
        outcomes[2],
        Err(ChildError::ResultTooLarge {
            len: u64::MAX,
            max: gib
        })
    );
    assert_eq!(
        outcomes[3],
        Err(ChildError::BadFrame(FrameError::UnknownKind { kind: 9 }))
    );
    assert_eq!(
        outcomes[4],
        Err(ChildError::BadFrame(FrameError::TruncatedPayload {
            received: 10,
            announced: gib
        }))
    );
    assert_eq!(
        outcomes[5],
        Err(ChildError::ResultTooLarge {
            len: gib + 1,
            max: gib
        })
    );
    assert_eq!(outcomes[6], Ok(pattern(200_006)));
    let message = outcomes[1].as_ref().unwrap_err().to_string();
    assert!(message.contains("1099511627776 bytes"), "{message}");
    let message = outcomes[3].as_ref().unwrap_err().to_string();
    assert_eq!(message, "malformed result frame: unknown frame kind 9");
}

/// Children 1 to 4 forge frames (1 TiB and `u64::MAX` announced, 2 GiB announced, a header
/// cut short); the others return real results, one of 16 MiB. The checks of the outcomes.
fn run_forgers_without_a_cap() {
    let big = 16 << 20;
    let outcomes = opts()
        .max_result_bytes(u64::MAX)
        .run(6, |i| match i {
            1 => forge(&[header(KIND_OK, 1 << 40), pattern(1000)].concat()),
            2 => forge(&header(KIND_OK, u64::MAX)),
            3 => forge(&[header(KIND_OK, 2 << 30), pattern(300_000)].concat()),
            4 => forge(&header(KIND_OK, 1 << 40)[..5]),
            5 => pattern(big),
            _ => pattern(10),
        })
        .unwrap();
    let truncated = |received, announced| {
        Err(ChildError::BadFrame(FrameError::TruncatedPayload {
            received,
            announced,
        }))
    };
    assert_eq!(outcomes[0], Ok(pattern(10)));
    assert_eq!(outcomes[1], truncated(1000, 1 << 40));
    assert_eq!(outcomes[2], truncated(0, u64::MAX));
    assert_eq!(outcomes[3], truncated(300_000, 2 << 30));
    assert_eq!(
        outcomes[4],
        Err(ChildError::BadFrame(FrameError::TruncatedHeader {
            received: 5
        }))
    );
    assert_eq!(outcomes[5].as_ref().map(Vec::len), Ok(big));
    assert!(outcomes[5] == Ok(pattern(big)), "16 MiB result corrupted");
}

fn forged_headers_without_a_cap_are_truncated_frames() {
    run_forgers_without_a_cap();
}

/// Limits this process's address space to `bytes` and checks that the limit bites.
fn limit_address_space(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: `limit` is a valid rlimit for the duration of the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    let mut probe: Vec<u8> = Vec::new();
    assert!(
        probe.try_reserve_exact(bytes as usize).is_err(),
        "the address-space limit does not bite"
    );
}

fn forged_headers_under_a_1_gib_address_space_limit() {
    // In a helper process (a fork of this single-threaded runner), so the limit stays
    // there; the run's children inherit it. A parent that allocated an announced size
    // would abort here, and the helper would die of SIGABRT instead of exiting with 0.
    common::in_helper(Duration::from_secs(300), || {
        limit_address_space(1 << 30);
        run_forgers_without_a_cap();
        0
    });
}

/// A result whose encoding is `chunks` MiB and more, serialized from one 1 MiB buffer, so
/// the value itself needs no memory of that size.
struct Chunks(u32);

const MIB: usize = 1 << 20;

impl Serialize for Chunks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        struct Bytes<'a>(&'a [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        let chunk = vec![5u8; MIB];
        let mut seq = s.serialize_seq(Some(self.0 as usize))?;
        for _ in 0..self.0 {
            seq.serialize_element(&Bytes(&chunk))?;
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for Chunks {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "never sent: the result is over the cap",
        ))
    }
}

fn oversized_result_is_measured_not_held_by_the_child() {
    // A 2 GiB encoding under a 1 GiB address-space limit: the child counts it past the cap
    // without keeping it, and reports its exact size instead of dying of allocation failure.
    common::in_helper(Duration::from_secs(300), || {
        limit_address_space(1 << 30);
        let outcomes = opts()
            .max_result_bytes(64 << 20)
            .run(2, |i| Chunks(if i == 0 { 2048 } else { 1 }))
            .unwrap();
        // postcard: the sequence length 2048 takes 2 bytes, each chunk's length 3.
        let len = 2 + 2048 * (3 + MIB as u64);
        assert_eq!(
            outcomes[0].as_ref().err(),
            Some(&ChildError::ResultTooLarge { len, max: 64 << 20 })
        );
        // A result under the cap is sent (and fails to decode here, on purpose).
        assert!(
            matches!(&outcomes[1], Err(ChildError::Decode(_))),
            "{:?}",
            outcomes[1].as_ref().err()
        );
        0
    });
}
