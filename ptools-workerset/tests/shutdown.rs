//! Graceful shutdown loses no finished call: with calls still in flight, `rmprocs` makes
//! every call end as either its result or `WorkerDied`, and a call that ran in the worker
//! always comes back with its result.

ptools_workerset::enable_test_support!();

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use ptools_workerset::{Cluster, Error};

/// Records that call `i` ran, then returns it.
fn record((path, i): (String, u64)) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .unwrap();
    // One short append per call: the kernel writes it whole (O_APPEND).
    f.write_all(format!("{i}\n").as_bytes()).unwrap();
    i
}

#[test]
fn a_call_that_ran_is_never_reported_dead_on_shutdown() {
    const CALLS: u64 = 300;
    let dir = std::env::temp_dir();
    for round in 0..20 {
        let path = dir.join(format!("ptools-shutdown-{}-{round}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let cluster = Cluster::new();
        let ids = cluster.addprocs(1).unwrap();
        let p = path.to_string_lossy().into_owned();
        let refs: Vec<_> = (0..CALLS)
            .map(|i| cluster.remotecall(ids[0], record, (p.clone(), i)).unwrap())
            .collect();
        // Let a varying share of the calls finish first.
        std::thread::sleep(Duration::from_micros(50 * round));
        cluster.rmprocs(&ids).unwrap();

        let mut returned = BTreeSet::new();
        for (i, r) in refs.into_iter().enumerate() {
            match r.fetch_timeout(Duration::from_secs(30)) {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    returned.insert(v);
                }
                Err(Error::WorkerDied { .. }) => {}
                Err(e) => panic!("round {round}, call {i}: unexpected {e}"),
            }
        }
        let ran: BTreeSet<u64> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            ran.difference(&returned).collect::<Vec<_>>(),
            Vec::<&u64>::new(),
            "round {round}: calls ran but were reported dead"
        );
        assert!(returned.is_subset(&ran));
    }
}
