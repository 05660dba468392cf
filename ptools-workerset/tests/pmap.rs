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
