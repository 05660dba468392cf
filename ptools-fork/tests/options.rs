//! The run options: how many children are alive at once, the timeout, the result cap, and
//! invalid options.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ptools_fork::{ChildError, Pfork, PforkError};

fn main() {
    common::run(&[
        (
            "max_alive_bounds_live_children",
            max_alive_bounds_live_children,
        ),
        (
            "default_runs_all_children_at_once",
            default_runs_all_children_at_once,
        ),
        (
            "timeout_kills_and_reaps_the_slow_child",
            timeout_kills_and_reaps_the_slow_child,
        ),
        (
            "timeout_cancels_children_not_started",
            timeout_cancels_children_not_started,
        ),
        ("zero_timeout_starts_nothing", zero_timeout_starts_nothing),
        ("max_alive_zero_is_invalid", max_alive_zero_is_invalid),
        ("cap_is_inclusive", cap_is_inclusive),
        ("options_are_reusable", options_are_reusable),
        ("result_above_4_gib", result_above_4_gib),
    ]);
}

/// Children of our parent alive (or not yet reaped) right now, seen from a child, from
/// /proc/<ppid>/task/<ppid>/children (the parent forks from its main thread).
fn siblings_alive() -> usize {
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let list = std::fs::read_to_string(format!("/proc/{ppid}/task/{ppid}/children")).unwrap();
    list.split_whitespace().count()
}

fn max_alive_bounds_live_children() {
    for k in [1, 2, 3] {
        let outcomes = Pfork::new()
            .max_alive(k)
            .timeout(Duration::from_secs(120))
            .run(9, |_| siblings_alive())
            .unwrap();
        for (i, o) in outcomes.iter().enumerate() {
            let seen = *o.as_ref().unwrap();
            // A child counts itself; the parent reaps a child before forking the next.
            assert!(seen <= k, "max_alive {k}, child {i} saw {seen} alive");
        }
    }
}

fn default_runs_all_children_at_once() {
    // Every child counts itself in on a counter in anonymous shared memory, then waits until
    // all 6 have: this ends only if the parent starts all of them without waiting for any.
    let counter = SharedCounter::new();
    let outcomes = Pfork::new()
        .timeout(Duration::from_secs(120))
        .run(6, |_| {
            counter.get().fetch_add(1, Ordering::SeqCst);
            while counter.get().load(Ordering::SeqCst) < 6 {
                std::thread::yield_now();
            }
            true
        })
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == Ok(true)), "{outcomes:?}");
}

/// An `AtomicUsize` in an anonymous `MAP_SHARED` page, shared with forked children.
struct SharedCounter(std::ptr::NonNull<AtomicUsize>);

impl SharedCounter {
    fn new() -> Self {
        // SAFETY: an anonymous shared mapping of one page; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // The page is zeroed, which is a valid AtomicUsize of 0, and page-aligned.
        Self(std::ptr::NonNull::new(p.cast()).unwrap())
    }

    fn get(&self) -> &AtomicUsize {
        // SAFETY: the mapping lives as long as `self` and holds an initialised AtomicUsize.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page mapped in `new`; no reference to it outlives self.
        unsafe { libc::munmap(self.0.as_ptr().cast(), 4096) };
    }
}

fn timeout_kills_and_reaps_the_slow_child() {
    // The timeout is a liveness bound for children 0 and 2, which return at once; child 1
    // never returns on its own.
    let outcomes = Pfork::new()
        .timeout(Duration::from_secs(3))
        .run(3, |i| {
            if i == 1 {
                common::sleep_forever();
            }
            i
        })
        .unwrap();
    assert_eq!(outcomes, vec![Ok(0), Err(ChildError::TimedOut), Ok(2)]);
    assert!(common::children().is_empty());
}

fn timeout_cancels_children_not_started() {
    let outcomes = Pfork::new()
        .max_alive(1)
        .timeout(Duration::from_millis(200))
        .run(3, |_| -> u8 { common::sleep_forever() })
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Err(ChildError::TimedOut),
            Err(ChildError::Cancelled),
            Err(ChildError::Cancelled)
        ]
    );
}

fn zero_timeout_starts_nothing() {
    let outcomes = Pfork::new().timeout(Duration::ZERO).run(3, |i| i).unwrap();
    assert_eq!(outcomes, vec![Err(ChildError::Cancelled); 3]);
}

fn max_alive_zero_is_invalid() {
    let err = Pfork::new().max_alive(0).run(3, |i| i).unwrap_err();
    assert!(matches!(err, PforkError::InvalidArgument(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid argument: max_alive must be at least 1"
    );
}

fn cap_is_inclusive() {
    let outcomes = Pfork::new()
        .max_result_bytes(8)
        .run(2, |i| if i == 0 { (1u64 << 56) - 1 } else { u64::MAX })
        .unwrap();
    // postcard varints hold 7 bits a byte: 2^56 - 1 takes 8 bytes, u64::MAX 10.
    assert_eq!(outcomes[0], Ok((1 << 56) - 1));
    assert_eq!(
        outcomes[1],
        Err(ChildError::ResultTooLarge { len: 10, max: 8 })
    );
}

fn options_are_reusable() {
    let opts = Pfork::new().max_alive(2);
    let a = opts.run(3, |i| i).unwrap();
    let b = opts.clone().run(3, |i| i + 1).unwrap();
    assert_eq!(a, vec![Ok(0), Ok(1), Ok(2)]);
    assert_eq!(b, vec![Ok(1), Ok(2), Ok(3)]);
}

/// Environment variable that enables [`result_above_4_gib`]: it needs about 9 GiB of memory
/// and several seconds, too much for every CI run.
const HUGE: &str = "PTOOLS_TEST_HUGE";

/// A result of `chunks` MiB, serialized as a sequence of 1 MiB byte strings (so the child
/// needs no 4 GiB value besides its encoding) and checked chunk by chunk while it is decoded
/// (so the parent keeps only the received frame).
#[derive(Debug, PartialEq)]
struct Stream {
    chunks: u32,
}

const MIB: usize = 1 << 20;

impl serde::Serialize for Stream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut chunk = vec![0u8; MIB];
        let mut seq = s.serialize_seq(Some(self.chunks as usize))?;
        for k in 0..self.chunks {
            chunk.fill(k as u8);
            seq.serialize_element(&BytesRef(&chunk))?;
        }
        seq.end()
    }
}

/// Serializes a byte slice as bytes (one length, then raw bytes), not as a sequence of u8.
struct BytesRef<'a>(&'a [u8]);

impl serde::Serialize for BytesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Stream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Chunk(u8);
        impl<'de> serde::Deserialize<'de> for Chunk {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Chunk;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a 1 MiB chunk of one repeated byte")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Chunk, E> {
                        let first = *b.first().ok_or_else(|| E::custom("empty chunk"))?;
                        if b.len() != MIB || b.iter().any(|&x| x != first) {
                            return Err(E::custom("corrupt chunk"));
                        }
                        Ok(Chunk(first))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Stream;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of chunks")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Stream, A::Error> {
                let mut chunks = 0u32;
                while let Some(Chunk(b)) = seq.next_element()? {
                    if b != chunks as u8 {
                        return Err(serde::de::Error::custom("chunks out of order"));
                    }
                    chunks += 1;
                }
                Ok(Stream { chunks })
            }
        }
        d.deserialize_seq(V)
    }
}

fn result_above_4_gib() {
    if std::env::var_os(HUGE).is_none() {
        print!("(skipped: set {HUGE}=1 to run) ");
        return;
    }
    // 4 GiB + 16 MiB of payload: a 32-bit length would wrap to 16 MiB and fail to decode.
    let chunks = 4096 + 16;
    let outcomes = Pfork::new()
        .timeout(Duration::from_secs(600))
        .max_result_bytes(u64::MAX)
        .run(1, |_| Stream { chunks })
        .unwrap();
    assert_eq!(outcomes, vec![Ok(Stream { chunks })]);
}
