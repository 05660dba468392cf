//! The read side changes hands between callers and the reader thread without losing a
//! reply or a wake-up: replies left in the buffer behind a caller's own, a caller blocked
//! writing a large call while the worker writes a large reply, and an end of stream seen by
//! one caller while another leaves last.

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_workerset::{Cluster, Error};

fn add1(x: u64) -> u64 {
    x + 1
}

fn big(n: usize) -> Vec<u8> {
    vec![3; n]
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

fn exit_after(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::exit(9);
}

/// Aborts the test binary with a message if the test has not finished in time (a hang
/// would otherwise stall the whole run).
fn watchdog(what: &'static str) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(120))
        {
            eprintln!("hung: {what}");
            std::process::abort();
        }
    });
    tx
}

#[test]
fn replies_buffered_behind_a_caller_s_own_are_delivered() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for i in 0..200u64 {
        // Pipelined: the worker may answer both in one write, read by r1's caller.
        let r1 = c.remotecall(id, add1, i).unwrap();
        let r2 = c.remotecall(id, add1, i + 1).unwrap();
        assert_eq!(r1.fetch().unwrap(), i + 1);
        assert_eq!(r2.fetch_timeout(Duration::from_secs(30)).unwrap(), i + 2);
    }
}

#[test]
fn a_large_call_written_while_a_large_reply_comes_back_does_not_deadlock() {
    let done = watchdog("large call against large reply");
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for _ in 0..3 {
        // The worker writes 8 MiB back while this thread writes 8 MiB to it.
        let r = c.remotecall(id, big, 8 << 20).unwrap();
        assert_eq!(
            c.remotecall_fetch(id, len_of, vec![0u8; 8 << 20]).unwrap(),
            8 << 20
        );
        assert_eq!(r.fetch().unwrap().len(), 8 << 20);
    }
    let _ = done.send(());
}

#[test]
fn a_death_seen_by_one_caller_reaches_every_other() {
    let done = watchdog("death seen by one of two callers");
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let dying = c.remotecall(id, exit_after, 50).unwrap();
    let after = c.remotecall(id, add1, 1).unwrap();
    let t = std::thread::spawn(move || after.fetch());
    assert!(matches!(dying.fetch(), Err(Error::WorkerDied { .. })));
    assert!(matches!(t.join().unwrap(), Err(Error::WorkerDied { .. })));
    let _ = done.send(());
}
