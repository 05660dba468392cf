//! Remote calls on real worker processes: results, closures, tuples, panics, bad data,
//! calls to the master, and the process bookkeeping (`procs`, `rmprocs`, `myid`).

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_workerset::{Cluster, Error, myid};
use serde::{Deserialize, Serialize};

fn square(x: u64) -> u64 {
    x * x
}

fn whoami(_: ()) -> (usize, u32) {
    (myid(), std::process::id())
}

fn boom(msg: String) -> u8 {
    panic!("{msg}")
}

/// A remote call made from inside a worker.
fn nested(_: ()) -> String {
    match ptools_workerset::remotecall_fetch(1, square, 2) {
        Ok(v) => format!("ok {v}"),
        Err(e) => e.to_string(),
    }
}

fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
    v
}

/// A type whose encoding fails on purpose.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refused"))
    }
}

fn make_unencodable(_: ()) -> Unencodable {
    Unencodable
}

/// A type that encodes fine but refuses to decode the value 13.
#[derive(Debug, Serialize)]
struct Picky(u8);

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            13 => Err(serde::de::Error::custom("unlucky")),
            v => Ok(Picky(v)),
        }
    }
}

fn picky_id(p: Picky) -> Picky {
    p
}

fn picky_make(v: u8) -> Picky {
    Picky(v)
}

#[test]
fn fetch_closures_tuples_and_ids() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    assert_eq!(ids, vec![2, 3]);
    assert_eq!(c.procs(), vec![1, 2, 3]);
    assert_eq!(c.workers(), vec![2, 3]);
    assert_eq!((c.nprocs(), c.nworkers()), (3, 2));
    assert_eq!(c.remotecall_fetch(2, square, 12).unwrap(), 144);
    assert_eq!(
        c.remotecall_fetch(
            3,
            |(a, b): (u64, String)| format!("{b}{a}"),
            (7, "x".into())
        )
        .unwrap(),
        "x7"
    );
    let (id, pid) = c.remotecall_fetch(3, whoami, ()).unwrap();
    assert_eq!(id, 3);
    assert_eq!(Some(pid as i32), c.pid(3));
    assert_ne!(pid, std::process::id());
    // Calls to id 1 run in the master.
    assert_eq!(
        c.remotecall_fetch(1, whoami, ()).unwrap(),
        (1, std::process::id())
    );
    // Large payloads in both directions.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    assert_eq!(c.remotecall_fetch(2, echo_bytes, big.clone()).unwrap(), big);
    assert_eq!(myid(), 1);
    // Workers cannot call out yet, and say so rather than run "id 1" in themselves.
    assert!(
        c.remotecall_fetch(2, nested, ())
            .unwrap()
            .contains("not supported")
    );
}

#[test]
fn remote_panic_is_typed_and_worker_survives() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    match c.remotecall_fetch(w, boom, "kaput".into()) {
        Err(Error::RemotePanic {
            id,
            message,
            location,
        }) => {
            assert_eq!(id, w);
            assert_eq!(message, "kaput");
            assert!(location.unwrap().contains("remote_calls.rs"));
        }
        other => panic!("expected a remote panic, got {other:?}"),
    }
    assert_eq!(c.remotecall_fetch(w, square, 3).unwrap(), 9);
    // The same on the master.
    assert!(
        c.remotecall_fetch(1, boom, "here".into())
            .unwrap_err()
            .is_remote_panic()
    );
}

#[test]
fn encode_and_decode_failures_keep_the_link() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    // Argument that fails to encode in the master.
    let r = c.remotecall_fetch(w, |_: Unencodable| 0u8, Unencodable);
    assert!(matches!(r, Err(Error::Encode(_))), "{r:?}");
    // Result that fails to encode in the worker.
    let r = c.remotecall_fetch(w, make_unencodable, ());
    assert!(matches!(r, Err(Error::Encode(_))), "{r:?}");
    // Argument that fails to decode in the worker.
    let r = c.remotecall_fetch(w, picky_id, Picky(13));
    assert!(matches!(&r, Err(Error::Decode(_))), "{r:?}");
    // Result that fails to decode in the master.
    let r = c.remotecall_fetch(w, picky_make, 13);
    assert!(matches!(&r, Err(Error::Decode(_))), "{r:?}");
    assert_eq!(c.remotecall_fetch(w, picky_make, 12).unwrap().0, 12);
    assert_eq!(c.remotecall_fetch(w, square, 5).unwrap(), 25);
}

#[test]
fn rmprocs_and_unknown_ids() {
    let c = Cluster::new();
    let ids = c.addprocs(3).unwrap();
    let pid = c.pid(ids[1]).unwrap();
    c.rmprocs(&[ids[1]]).unwrap();
    assert_eq!(c.procs(), vec![1, ids[0], ids[2]]);
    assert!(
        c.remotecall_fetch(ids[1], square, 1)
            .unwrap_err()
            .is_worker_died()
    );
    assert!(matches!(
        c.remotecall_fetch(99, square, 1),
        Err(Error::UnknownWorker(99))
    ));
    assert!(matches!(c.rmprocs(&[1]), Err(Error::InvalidArgument(_))));
    // SAFETY: kill with signal 0 only checks existence; the child was reaped by rmprocs.
    assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
    // Ids are never reused.
    assert_eq!(c.addprocs(1).unwrap(), vec![ids[2] + 1]);
}

fn wait_for_file(path: String) -> u8 {
    while !std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    1
}

#[test]
fn ping_is_served_while_busy() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    let path = std::env::temp_dir()
        .join(format!("ptools-ws-ping-{}", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let r = c.remotecall(w, wait_for_file, path.clone()).unwrap();
    // The call cannot end before the file exists, so these pings are answered by a busy
    // worker.
    for _ in 0..3 {
        c.ping(w, Duration::from_secs(60)).unwrap();
    }
    assert!(!r.is_ready());
    std::fs::write(&path, b"go").unwrap();
    assert_eq!(r.fetch().unwrap(), 1);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        c.ping(99, Duration::from_secs(1)),
        Err(Error::UnknownWorker(99))
    ));
}

/// Serializes as a `u32`, refusing odd values with its own message.
#[derive(Debug)]
struct EvenOnly(u32);

impl serde::Serialize for EvenOnly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 2 == 1 {
            return Err(serde::ser::Error::custom(format!(
                "{} is odd, said the encoder",
                self.0
            )));
        }
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EvenOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EvenOnly, D::Error> {
        let n = <u32 as serde::Deserialize>::deserialize(d)?;
        if n % 4 == 2 {
            return Err(serde::de::Error::custom(format!(
                "{n} is 2 mod 4, said the decoder"
            )));
        }
        Ok(EvenOnly(n))
    }
}

fn plus(x: EvenOnly) -> EvenOnly {
    EvenOnly(x.0 + 1)
}

fn plus_two(x: EvenOnly) -> EvenOnly {
    EvenOnly(x.0 + 2)
}

fn times_two(x: EvenOnly) -> EvenOnly {
    EvenOnly(x.0 * 2)
}

#[test]
fn errors_of_the_user_s_serde_impls_keep_their_words() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let expect = |r: Result<EvenOnly, Error>, words: &str| match r {
        Err(Error::Encode(m) | Error::Decode(m)) => assert!(m.contains(words), "{m}"),
        other => panic!("expected a codec error with {words:?}, got {other:?}"),
    };
    // Encoded in the master, refused there.
    expect(
        c.remotecall_fetch(id, plus, EvenOnly(3)),
        "3 is odd, said the encoder",
    );
    // Decoded in the worker, refused there.
    expect(
        c.remotecall_fetch(id, plus, EvenOnly(6)),
        "6 is 2 mod 4, said the decoder",
    );
    // The result encoded in the worker, refused there.
    expect(
        c.remotecall_fetch(id, plus, EvenOnly(4)),
        "5 is odd, said the encoder",
    );
    // The result decoded in the master, refused there.
    expect(
        c.remotecall_fetch(id, plus_two, EvenOnly(8)),
        "10 is 2 mod 4, said the decoder",
    );
    assert_eq!(c.remotecall_fetch(id, times_two, EvenOnly(4)).unwrap().0, 8);
}
