//! The shared-memory ring that carries a local worker's calls: frames of every size pass,
//! a worker that forges its position in the ring is a protocol error for it alone, a
//! worker killed while the master waits on the ring is a typed error without a hang, and
//! the socket alone still serves when the ring is turned off.

ptools_workerset::enable_test_support!();

use std::time::{Duration, Instant};

use ptools_workerset::__test_hooks::forge_ring_position;
use ptools_workerset::{Cluster, Error};

fn add1(x: u64) -> u64 {
    x + 1
}

fn sum(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| u64::from(b)).sum()
}

/// The names of the memfds the worker maps (`/memfd:NAME (deleted)`), once each (its
/// ring's descriptor is closed once mapped).
fn memfds(_: ()) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut names: Vec<String> = maps
        .lines()
        .filter_map(|l| l.find("/memfd:").map(|at| l[at..].to_string()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Forges this worker's write position in its ring, then sits idle (so only the master's
/// check of the position can end the call).
fn forge_then_idle(pos: u64) -> bool {
    std::thread::sleep(Duration::from_millis(50));
    let forged = forge_ring_position(true, pos);
    std::thread::sleep(Duration::from_secs(if forged { 60 } else { 0 }));
    forged
}

/// Forges this worker's read position in its ring (as if it had read calls never sent),
/// then sits idle.
fn forge_read_then_idle(pos: u64) -> bool {
    let forged = forge_ring_position(false, pos);
    std::thread::sleep(Duration::from_secs(if forged { 60 } else { 0 }));
    forged
}

fn kill_self_after(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    // SAFETY: raising a signal in this process has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGKILL) };
    ms
}

#[test]
fn a_local_worker_has_a_ring_and_the_socket_alone_serves_without_it() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let names = c.remotecall_fetch(id, memfds, ()).unwrap();
    assert_eq!(
        names.iter().filter(|n| n.contains("ptools-ring")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(c.remotecall_fetch(id, add1, 41).unwrap(), 42);

    let plain = Cluster::builder().shared_memory_ring(false).build();
    let id = plain.addprocs(1).unwrap()[0];
    let names = plain.remotecall_fetch(id, memfds, ()).unwrap();
    assert!(
        !names.iter().any(|n| n.contains("ptools-ring")),
        "{names:?}"
    );
    for x in 0..100 {
        assert_eq!(plain.remotecall_fetch(id, add1, x).unwrap(), x + 1);
    }
}

#[test]
fn frames_larger_than_the_ring_pass_in_pieces_in_order() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    // Pipelined: the first large argument takes the argument region, the others (600 KiB
    // each, over the ring's 256 KiB) go through the ring in pieces, behind small calls.
    let mut refs = Vec::new();
    let mut want = Vec::new();
    for i in 0..8u8 {
        let v = vec![i; 600 * 1024];
        want.push(sum(v.clone()));
        refs.push(c.remotecall(id, sum, v).unwrap());
        want.push(u64::from(i) + 1);
        refs.push(c.remotecall(id, |x: u64| x + 1, u64::from(i)).unwrap());
    }
    let got: Vec<u64> = refs.into_iter().map(|r| r.fetch().unwrap()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_forged_ring_position_is_a_protocol_error_for_that_worker_alone() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let (bad, good) = (ids[0], ids[1]);
    for pos in [u64::MAX, 1 << 40] {
        let bad = if pos == u64::MAX {
            bad
        } else {
            c.addprocs(1).unwrap()[0]
        };
        let t = Instant::now();
        let e = c.remotecall_fetch(bad, forge_then_idle, pos).unwrap_err();
        assert!(
            matches!(&e, Error::Protocol { id, cause, .. } if *id == bad && cause.contains("ring")),
            "{e:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        assert!(!c.workers().contains(&bad));
        assert_eq!(c.remotecall_fetch(good, add1, 1).unwrap(), 2);
    }
}

#[test]
fn a_forged_read_position_is_a_protocol_error_at_the_next_call() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let (bad, good) = (ids[0], ids[1]);
    let first = c.remotecall(bad, forge_read_then_idle, 1 << 40).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Writing this call finds the forged position.
    let second = c.remotecall(bad, add1, 1).unwrap();
    let t = Instant::now();
    for r in [first.fetch().map(|_| 0), second.fetch()] {
        let e = r.unwrap_err();
        assert!(
            matches!(&e, Error::Protocol { id, cause, .. } if *id == bad && cause.contains("ring")),
            "{e:?}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(c.remotecall_fetch(good, add1, 1).unwrap(), 2);
}

#[test]
fn a_worker_killed_while_the_master_waits_on_the_ring_is_a_typed_error() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    // Long enough that the master's spin is over and it sleeps on the futex, and short.
    for ms in [0, 200] {
        let id = if ms == 0 {
            id
        } else {
            c.addprocs(1).unwrap()[0]
        };
        let t = Instant::now();
        let e = c.remotecall_fetch(id, kill_self_after, ms).unwrap_err();
        assert!(matches!(e, Error::WorkerDied { .. }), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
    assert_eq!(c.nprocs(), 1, "only the master is left");
}
