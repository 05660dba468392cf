//! `pmap`: results in order whatever the batching, on clusters, sets, and the master.

ptools_workerset::enable_test_support!();

use ptools_workerset::{Cluster, Error, Mode, WorkerSet};

fn square(x: u64) -> u64 {
    x * x
}

fn fail_at_777(x: u64) -> u64 {
    assert_ne!(x, 777, "item 777");
    x
}

/// Item `x` of a map whose worker dies at item `die`.
fn exit_at((x, die): (u64, u64)) -> u64 {
    if x == die {
        std::process::exit(3);
    }
    x
}

/// Item `x` of a map whose item `at` panics.
fn panic_at((x, at): (u64, u64)) -> u64 {
    assert_ne!(x, at, "item {at}");
    x
}

/// Slow for a few items, so batches end out of the order they were sent in.
fn uneven(x: u64) -> u64 {
    if x.is_multiple_of(97) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    x * 3
}

/// `f` on another thread; panics if it takes longer than a minute (a hang).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("pmap hung")
}

#[test]
fn results_in_order_for_many_sizes() {
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    for n in [0u64, 1, 2, 3, 10, 1000, 200_000] {
        let got = c.pmap(square, 0..n).unwrap();
        assert_eq!(got.len() as u64, n);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, &v)| v == (i as u64) * (i as u64))
        );
    }
    let words = c
        .pmap(
            |(i, s): (usize, String)| format!("{s}{i}"),
            vec![(1, "a".to_string()), (2, "b".into())],
        )
        .unwrap();
    assert_eq!(words, vec!["a1", "b2"]);
}

#[test]
fn on_sets_of_both_modes() {
    let c = Cluster::new();
    let ids = c.addprocs(3).unwrap();
    for mode in [Mode::RoundRobin, Mode::FirstFree] {
        let ws = WorkerSet::with_cluster(&c, &ids[1..], mode).unwrap();
        let got = ws.pmap(|x: u32| x + 1, 0..5000u32).unwrap();
        assert_eq!(got, (1..5001).collect::<Vec<u32>>());
    }
}

#[test]
fn a_panic_fails_the_map() {
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    match c.pmap(fail_at_777, 0..10_000) {
        Err(Error::RemotePanic { message, .. }) => assert!(message.contains("item 777")),
        other => panic!("expected a remote panic, got {:?}", other.map(|v| v.len())),
    }
    // The workers are fine afterwards.
    assert_eq!(c.pmap(square, 0..10u64).unwrap()[3], 9);
}

#[test]
fn results_in_order_when_batches_end_out_of_order() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    for mode in [Mode::RoundRobin, Mode::FirstFree] {
        let ws = WorkerSet::with_cluster(&c, &ids, mode).unwrap();
        let got = ws.pmap(uneven, 0..3000u64).unwrap();
        assert_eq!(got, (0..3000u64).map(|x| x * 3).collect::<Vec<_>>());
    }
}

#[test]
fn a_panic_in_any_round_fails_the_map_in_both_modes() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    for mode in [Mode::RoundRobin, Mode::FirstFree] {
        let ws = WorkerSet::with_cluster(&c, &ids, mode).unwrap();
        // A probe, an item of the early batches, an item of the last ones.
        for at in [0u64, 1, 40, 9_999] {
            match ws.pmap(panic_at, (0..10_000u64).map(|x| (x, at))) {
                Err(Error::RemotePanic { message, .. }) => {
                    assert!(message.contains(&format!("item {at}")), "{message}")
                }
                other => panic!("{mode:?} at {at}: {:?}", other.map(|v| v.len())),
            }
        }
        // Nothing leaked: every worker is free again and serves the next map.
        assert_eq!(ws.pmap(square, 0..1000u64).unwrap()[999], 999 * 999);
        assert_eq!(ws.waiting(), 0);
    }
}

#[test]
fn a_worker_dying_mid_map_is_a_typed_error_not_a_hang() {
    // Dying on a probe, in an early batch, in one of the last batches.
    for die in [0u64, 50, 9_990] {
        let c = Cluster::new();
        let ids = c.addprocs(2).unwrap();
        let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
        let ws2 = ws.clone();
        let r = within_a_minute(move || ws2.pmap(exit_at, (0..10_000u64).map(|x| (x, die))));
        match r {
            Err(Error::WorkerDied { id, .. }) => assert!(ids.contains(&id)),
            other => panic!("die at {die}: {:?}", other.map(|v| v.len())),
        }
        // The survivor serves the next map alone.
        let ws2 = ws.clone();
        let got = within_a_minute(move || ws2.pmap(square, 0..5000u64)).unwrap();
        assert_eq!(got[4999], 4999 * 4999);
        assert_eq!(ws.workers().len(), 1);
    }
}

fn spin_500us(x: u64) -> u64 {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_micros(500) {
        std::hint::spin_loop();
    }
    x + 1
}

fn id(_: ()) -> usize {
    ptools_workerset::myid()
}

#[test]
fn other_callers_of_the_set_take_turns_with_a_long_map() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let t0 = std::time::Instant::now();
    let (got, (served_at, on)) = std::thread::scope(|s| {
        let map = s.spawn(|| {
            let r = ws.pmap(spin_500us, 0..400u64).unwrap();
            (r, t0.elapsed())
        });
        let call = s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let on = ws.remotecall_fetch(id, ()).unwrap();
            (t0.elapsed(), on)
        });
        let (r, map_took) = map.join().unwrap();
        let (served_at, on) = call.join().unwrap();
        // Batches of about 2 ms: the call waits for a few, not for the whole map.
        assert!(served_at < map_took, "{served_at:?} vs {map_took:?}");
        (r, (served_at, on))
    });
    assert!(ids.contains(&on), "{on} {served_at:?}");
    assert_eq!(got, (1..401).collect::<Vec<u64>>());
}

#[test]
fn without_workers_it_runs_on_the_master() {
    let c = Cluster::new();
    assert_eq!(c.pmap(square, 1..4u64).unwrap(), vec![1, 4, 9]);
}

#[cfg(feature = "progress")]
#[test]
fn with_a_progress_bar() {
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    assert_eq!(c.pmap_progress(square, 0..1000u64).unwrap()[999], 999 * 999);
}

/// An iterator over `0..len` whose `size_hint` claims exactly `claim` items: a bug in an
/// iterator, but one `pmap` must survive with every item mapped once, in order.
struct Lying {
    next: u64,
    len: u64,
    claim: usize,
}

impl Iterator for Lying {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        (self.next < self.len).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.claim, Some(self.claim))
    }
}

#[test]
fn an_iterator_wrong_about_its_length_is_still_mapped_whole() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    for mode in [Mode::FirstFree, Mode::RoundRobin] {
        let ws = WorkerSet::with_cluster(&c, &ids, mode).unwrap();
        // Fewer than claimed, more than claimed, none claimed, none at all, and a claim
        // that no memory could hold (nothing is reserved for a claim alone).
        let cases = [
            (10u64, 5000usize),
            (7000, 3),
            (300, 0),
            (0, 40),
            (3000, usize::MAX),
        ];
        for (len, claim) in cases {
            let ws = ws.clone();
            let got = within_a_minute(move || {
                ws.pmap(
                    square,
                    Lying {
                        next: 0,
                        len,
                        claim,
                    },
                )
            });
            let want: Vec<u64> = (0..len).map(|x| x * x).collect();
            assert_eq!(got.unwrap(), want, "{mode:?}: {len} items, {claim} claimed");
        }
        // An iterator without an exact hint is collected first.
        let ws2 = ws.clone();
        let got = within_a_minute(move || ws2.pmap(square, (0..5000u64).filter(|x| x % 3 == 0)));
        let want: Vec<u64> = (0..5000u64).filter(|x| x % 3 == 0).map(|x| x * x).collect();
        assert_eq!(got.unwrap(), want, "{mode:?}: filtered");
        if mode == Mode::FirstFree {
            // No worker was kept by a map that found fewer items than it took workers
            // for.
            assert_no_worker_kept(&ws, "a wrong length");
        }
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// Both workers of a first-free set are free: with one busy, the other takes a call at
/// once.
fn assert_no_worker_kept(ws: &WorkerSet, after: &str) {
    let busy = ws.remotecall(sleep_ms, 1500).unwrap();
    let other = ws.remotecall(id, ()).unwrap();
    let on = other
        .fetch_timeout(std::time::Duration::from_millis(1000))
        .unwrap_or_else(|e| panic!("after {after}: a worker was kept: {e}"));
    assert_ne!(on, busy.worker());
    busy.fetch().unwrap();
}

fn add1(x: u64) -> u64 {
    x + 1
}

#[test]
fn a_failed_map_leaves_no_link_unread() {
    // The map reads its batches' replies itself, the workers' reader threads left parked
    // for them. When it fails early (a probe panics) it must hand every link back: an
    // asynchronous call nobody waits on is then still completed by a reader thread.
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    for mode in [Mode::FirstFree, Mode::RoundRobin] {
        let ws = WorkerSet::with_cluster(&c, &ids, mode).unwrap();
        for at in [0u64, 1] {
            let r = ws.pmap(panic_at, (0..10_000u64).map(|x| (x, at)));
            assert!(matches!(r, Err(Error::RemotePanic { .. })), "{mode:?} {at}");
            for &id in &ids {
                let r = c.remotecall(id, add1, 41).unwrap();
                // Not `fetch`, which would read the reply on this thread.
                let t0 = std::time::Instant::now();
                while !r.is_ready() {
                    assert!(
                        t0.elapsed() < std::time::Duration::from_millis(500),
                        "{mode:?} at {at}: worker {id}'s reply left unread"
                    );
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                assert_eq!(r.fetch().unwrap(), 42);
            }
        }
    }
}

/// Items `0..len` (an exact length) whose iterator panics on reaching item `at`.
struct Panicking {
    next: u64,
    len: u64,
    at: u64,
}

impl Iterator for Panicking {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        assert_ne!(self.next, self.at, "the items' iterator panics");
        (self.next < self.len).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.len - self.next) as usize;
        (left, Some(left))
    }
}

#[test]
fn an_iterator_that_panics_keeps_no_worker() {
    // Items are taken a batch at a time, after a worker is taken for the batch: a panic
    // there must give the worker back.
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    for at in [0u64, 1, 2, 700] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ws.pmap(
                square,
                Panicking {
                    next: 0,
                    len: 1000,
                    at,
                },
            )
        }));
        assert!(r.is_err(), "at {at}: no panic");
        assert_no_worker_kept(&ws, &format!("a panic at {at}"));
    }
}
