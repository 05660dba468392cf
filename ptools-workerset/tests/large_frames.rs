//! Large arguments and large results at once through a first-free `WorkerSet`: both socket
//! buffers fill, and a completion hook that hands the freed worker to the next caller must
//! not write the next call from the read side (it would wait for the worker to read while
//! the worker waits for the master to read its reply). Direct calls on the same worker run
//! alongside the set's, so the worker is writing a large reply while the set's next call
//! is handed over.

ptools_workerset::enable_test_support!();

use std::sync::mpsc;
use std::time::Duration;

use ptools_workerset::{Cluster, Mode, WorkerSet};

const MIB8: usize = 8 << 20;

/// Returns a result as large as the argument, derived from it.
fn echo_big(v: Vec<u8>) -> Vec<u8> {
    v.iter().map(|b| b.wrapping_add(1)).collect()
}

/// Aborts the test process with a message unless `done` says so within `limit`: a hang
/// becomes a failure instead of a stuck run.
fn deadline(limit: Duration, what: &'static str) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("{what}: no progress within {limit:?}; deadlocked");
            std::process::abort();
        }
    });
    tx
}

#[test]
fn first_free_with_large_frames_both_ways_does_not_deadlock() {
    let done = deadline(
        Duration::from_secs(300),
        "first_free_with_large_frames_both_ways",
    );
    let c = Cluster::new();
    let ids = c.addprocs(1).expect("addprocs");
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).expect("set");
    let w = ids[0];
    std::thread::scope(|s| {
        let c = &c;
        let direct = s.spawn(move || {
            for round in 0..6u8 {
                // Two in flight, so one reply is being written while another call waits.
                let a = c
                    .remotecall(w, echo_big, vec![round; MIB8])
                    .expect("direct");
                let b = c
                    .remotecall(w, echo_big, vec![!round; MIB8])
                    .expect("direct");
                assert!(
                    a.fetch()
                        .expect("direct")
                        .iter()
                        .all(|&x| x == round.wrapping_add(1))
                );
                assert!(
                    b.fetch()
                        .expect("direct")
                        .iter()
                        .all(|&x| x == (!round).wrapping_add(1))
                );
            }
        });
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let ws = ws.clone();
                s.spawn(move || {
                    for round in 0..3u8 {
                        let fill = t.wrapping_mul(16).wrapping_add(round);
                        let got = ws
                            .remotecall_fetch(echo_big, vec![fill; MIB8])
                            .expect("large call");
                        assert_eq!(got.len(), MIB8);
                        assert!(got.iter().all(|&b| b == fill.wrapping_add(1)));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("caller thread");
        }
        direct.join().expect("direct caller");
    });
    // Also with the callers only queueing (no caller reads its own reply): every
    // hand-over then happens on the reader thread.
    let refs: Vec<_> = (0..6u8)
        .map(|i| ws.remotecall(echo_big, vec![i; MIB8]).expect("queue"))
        .collect();
    for (i, r) in refs.into_iter().enumerate() {
        let got = r.fetch().expect("queued large call");
        assert_eq!(got.len(), MIB8);
        assert!(got.iter().all(|&b| b == (i as u8).wrapping_add(1)));
    }
    let _ = done.send(());
}
