//! `WorkerSet`: PTools.jl's test_worker_set first (round-robin order, first-free over busy
//! workers), then argument errors, FIFO order, failures, dead workers, and calls still
//! waiting when the last handle of the set is dropped.

ptools_workerset::enable_test_support!();

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ptools_workerset::{Cluster, Error, Mode, WorkerSet, myid};

fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-parameter; CLOCK_MONOTONIC is shared by all processes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn id(_: ()) -> usize {
    myid()
}

/// Sleeps, and reports where and when it ran.
fn sleep_report(ms: u64) -> (usize, u64, u64) {
    let t0 = now_ns();
    std::thread::sleep(Duration::from_millis(ms));
    (myid(), t0, now_ns())
}

/// The order in which this worker process ran its calls.
fn seq(_: ()) -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn wait_for_file(path: String) -> usize {
    while !std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    seq(())
}

fn wait_then_exit(path: String) -> usize {
    wait_for_file(path);
    std::process::exit(3)
}

/// Its argument, and the worker it ran on.
fn tagged(x: u64) -> (u64, usize) {
    (x, myid())
}

fn boom(_: ()) -> u8 {
    panic!("boom")
}

fn gate(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!("ptools-ws-{tag}-{}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

struct Rm(String);
impl Drop for Rm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn round_robin_answers_in_turn() {
    let c = Cluster::new();
    let ids = c.addprocs(3).unwrap();
    assert_eq!(ids, vec![2, 3, 4]);
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::RoundRobin).unwrap();
    let got: Vec<usize> = (0..4)
        .map(|_| ws.remotecall_fetch(id, ()).unwrap())
        .collect();
    assert_eq!(got, vec![2, 3, 4, 2]);
    // remotecall and remotecall_wait follow the same turn.
    ws.remotecall_wait(id, ()).unwrap();
    assert_eq!(ws.remotecall(id, ()).unwrap().fetch().unwrap(), 4);
}

#[test]
fn first_free_never_doubles_up_and_serves_the_queue() {
    let c = Cluster::new();
    let ids = c.addprocs(4).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let runs: Vec<(usize, u64, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u64)
            .map(|i| {
                let ws = ws.clone();
                s.spawn(move || {
                    ws.remotecall_fetch(sleep_report, 50 + 40 * (i % 4))
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.len(), 8);
    for (i, a) in runs.iter().enumerate() {
        assert!(ids.contains(&a.0));
        for b in &runs[i + 1..] {
            if a.0 == b.0 {
                assert!(
                    a.2 <= b.1 || b.2 <= a.1,
                    "two calls overlapped on worker {}",
                    a.0
                );
            }
        }
    }
}

#[test]
fn first_free_waiters_run_in_fifo_order() {
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let path = gate("fifo");
    let _rm = Rm(path.clone());
    let first = ws.remotecall(wait_for_file, path.clone()).unwrap();
    assert_eq!(first.worker(), ids[0]);
    let queued: Vec<_> = (0..20).map(|_| ws.remotecall(seq, ()).unwrap()).collect();
    // Nothing queued has been sent: the worker is busy.
    assert!(queued.iter().all(|r| r.worker() == 0 && !r.is_ready()));
    std::fs::write(&path, b"go").unwrap();
    assert_eq!(first.fetch().unwrap(), 0);
    for (i, r) in queued.into_iter().enumerate() {
        assert_eq!(r.fetch().unwrap(), i + 1);
    }
}

/// Blocks until `ws` has `n` calls waiting.
fn until_waiting(ws: &WorkerSet, n: usize) {
    let t0 = std::time::Instant::now();
    while ws.waiting() != n {
        assert!(t0.elapsed() < Duration::from_secs(60), "never {n} waiting");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn blocking_callers_and_queued_calls_share_one_fifo() {
    // A thread blocked in remotecall_fetch waits as itself (it writes its own call once
    // handed a worker); calls from remotecall wait encoded. One queue, one order.
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let path = gate("mixed");
    let _rm = Rm(path.clone());
    let first = ws.remotecall(wait_for_file, path.clone()).unwrap();
    std::thread::scope(|s| {
        let a = ws.remotecall(seq, ()).unwrap();
        until_waiting(&ws, 1);
        let t1 = s.spawn(|| ws.remotecall_fetch(seq, ()).unwrap());
        until_waiting(&ws, 2);
        let b = ws.remotecall(seq, ()).unwrap();
        let t2 = s.spawn(|| ws.remotecall_fetch(seq, ()).unwrap());
        until_waiting(&ws, 4);
        std::fs::write(&path, b"go").unwrap();
        assert_eq!(first.fetch().unwrap(), 0);
        assert_eq!(a.fetch().unwrap(), 1);
        assert_eq!(t1.join().unwrap(), 2);
        assert_eq!(b.fetch().unwrap(), 3);
        assert_eq!(t2.join().unwrap(), 4);
    });
    assert_eq!(ws.waiting(), 0);
    // The worker went back on the free list: a new call runs at once.
    assert_eq!(ws.remotecall_fetch(seq, ()).unwrap(), 5);
}

#[test]
fn a_blocked_caller_learns_that_the_last_worker_died() {
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let path = gate("lastdies");
    let _rm = Rm(path.clone());
    let busy = ws.remotecall(wait_then_exit, path.clone()).unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3)
            .map(|_| s.spawn(|| ws.remotecall_fetch(id, ())))
            .collect();
        until_waiting(&ws, 3);
        std::fs::write(&path, b"go").unwrap();
        assert!(busy.fetch().unwrap_err().is_worker_died());
        for w in waiters {
            assert!(matches!(w.join().unwrap(), Err(Error::NoWorkers)));
        }
    });
    assert!(matches!(ws.remotecall_fetch(id, ()), Err(Error::NoWorkers)));
}

#[test]
fn bad_sets_are_refused() {
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    assert!(matches!(
        WorkerSet::with_cluster(&c, &[], Mode::FirstFree),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        WorkerSet::with_cluster(&c, &[ids[0], ids[0]], Mode::RoundRobin),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        WorkerSet::with_cluster(&c, &[ids[0], 77], Mode::FirstFree),
        Err(Error::UnknownWorker(77))
    ));
    // The master may be part of a set.
    let ws = WorkerSet::with_cluster(&c, &[1], Mode::FirstFree).unwrap();
    assert_eq!(ws.remotecall_fetch(id, ()).unwrap(), 1);
}

#[test]
fn a_failed_call_frees_its_worker() {
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    for _ in 0..3 {
        assert!(ws.remotecall_fetch(boom, ()).unwrap_err().is_remote_panic());
    }
    let r = ws.remotecall(id, ()).unwrap();
    assert_eq!(r.fetch_timeout(Duration::from_secs(60)).unwrap(), ids[0]);
}

#[test]
fn dead_workers_leave_the_set_and_the_last_fails_the_queue() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let rr = WorkerSet::with_cluster(&c, &ids, Mode::RoundRobin).unwrap();
    let ff = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let path = gate("dead");
    let _rm = Rm(path.clone());
    std::fs::write(&path, b"go").unwrap();
    // Worker ids[0] exits inside a call.
    let r = c.remotecall_fetch(ids[0], wait_then_exit, path.clone());
    assert!(r.unwrap_err().is_worker_died());
    while c.workers().contains(&ids[0]) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rr.workers(), vec![ids[1]]);
    assert_eq!(ff.workers(), vec![ids[1]]);
    for _ in 0..4 {
        assert_eq!(rr.remotecall_fetch(id, ()).unwrap(), ids[1]);
        assert_eq!(ff.remotecall_fetch(id, ()).unwrap(), ids[1]);
    }
    // The last worker dies while callers wait for it.
    std::fs::remove_file(&path).unwrap();
    let busy = ff.remotecall(wait_then_exit, path.clone()).unwrap();
    let waiting: Vec<_> = (0..5).map(|_| ff.remotecall(id, ()).unwrap()).collect();
    std::fs::write(&path, b"go").unwrap();
    assert!(busy.fetch().unwrap_err().is_worker_died());
    for w in waiting {
        assert!(matches!(w.fetch(), Err(Error::NoWorkers)));
    }
    assert!(matches!(ff.remotecall(id, ()), Err(Error::NoWorkers)));
    assert!(matches!(rr.remotecall(id, ()), Err(Error::NoWorkers)));
    assert!(ff.workers().is_empty());
}

#[test]
fn many_threads_share_a_first_free_set() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let ws = &ws;
            s.spawn(move || {
                for i in 0..300u64 {
                    assert_eq!(
                        ws.remotecall_fetch(|x: u64| x * 2, t * 1000 + i).unwrap(),
                        2 * (t * 1000 + i)
                    );
                }
            });
        }
    });
}

#[test]
fn calls_waiting_when_the_last_handle_is_dropped_are_still_served() {
    // Only prevents a hang if calls were lost: no test of how long anything takes.
    const LIMIT: Duration = Duration::from_secs(120);
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    let path = gate("drop");
    let _rm = Rm(path.clone());
    // Both workers stay busy until the gate opens.
    let busy: Vec<_> = (0..2)
        .map(|_| ws.remotecall(wait_for_file, path.clone()).unwrap())
        .collect();
    let mut busy_on: Vec<usize> = busy.iter().map(|r| r.worker()).collect();
    busy_on.sort_unstable();
    assert_eq!(busy_on, ids);
    // Four other threads make a call each, drop their handle on the set, and wait.
    let (tx, rx) = mpsc::channel();
    let waiters: Vec<_> = (0..4u64)
        .map(|i| {
            let (ws, tx) = (ws.clone(), tx.clone());
            std::thread::spawn(move || {
                let r = ws.remotecall(tagged, 100 + i).unwrap();
                drop(ws);
                tx.send((r.worker(), r.is_ready())).unwrap();
                r.fetch_timeout(LIMIT)
            })
        })
        .collect();
    for _ in 0..4 {
        let (worker, ready) = rx.recv_timeout(LIMIT).expect("a caller never called");
        assert_eq!(
            (worker, ready),
            (0, false),
            "waiting, not sent: both workers busy"
        );
    }
    // The owner's handle is the set's last one now.
    drop(ws);
    std::fs::write(&path, b"go").unwrap();
    for r in busy {
        r.fetch_timeout(LIMIT).unwrap();
    }
    for (i, h) in waiters.into_iter().enumerate() {
        let (x, worker) = h.join().unwrap().unwrap();
        assert_eq!(x, 100 + i as u64);
        assert!(ids.contains(&worker), "ran on {worker}, not one of {ids:?}");
    }
}

/// Runs `f` on its own thread; panics if it has not returned within `limit` (a guard
/// against a lost wake-up hanging the test run, not a measure of speed).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: not done in {limit:?}"))
}

#[test]
fn nudged_callers_take_the_workers_nobody_takes_back() {
    // With a bound no wait reaches, every freed worker goes through the free list and a
    // nudge, never a hand-over to a caller: no caller, and no encoded call, may be left
    // waiting beside a free worker.
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    ws.set_fair_after(Duration::from_secs(3600));
    let sum = {
        let ws = ws.clone();
        within(
            Duration::from_secs(120),
            "8 calling threads and queued calls on 2 workers",
            move || {
                std::thread::scope(|s| {
                    let hs: Vec<_> = (0..8u64)
                        .map(|t| {
                            let ws = &ws;
                            s.spawn(move || {
                                (0..500u64)
                                    .map(|i| {
                                        ws.remotecall_fetch(|x: u64| x * 2, t * 1000 + i).unwrap()
                                    })
                                    .sum::<u64>()
                            })
                        })
                        .collect();
                    // Encoded calls queued among the blocked callers, 4 at a time.
                    let jobs = s.spawn(|| {
                        for k in 0..100u64 {
                            let rs: Vec<_> = (0..4)
                                .map(|j| ws.remotecall(|x: u64| x + 1, 4 * k + j).unwrap())
                                .collect();
                            for (j, r) in rs.into_iter().enumerate() {
                                assert_eq!(r.fetch().unwrap(), 4 * k + j as u64 + 1);
                            }
                        }
                    });
                    jobs.join().unwrap();
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            },
        )
    };
    let want: u64 = (0..8u64)
        .flat_map(|t| (0..500u64).map(move |i| 2 * (t * 1000 + i)))
        .sum();
    assert_eq!(sum, want);
    assert_eq!(ws.waiting(), 0);
    // Both workers are free again: two calls that each wait for the other's file run at
    // once, which they could not on one worker.
    let (a, b) = (gate("nudge-a"), gate("nudge-b"));
    let _rm = (Rm(a.clone()), Rm(b.clone()));
    let ra = ws
        .remotecall(touch_then_wait, (a.clone(), b.clone()))
        .unwrap();
    let rb = ws.remotecall(touch_then_wait, (b, a)).unwrap();
    assert_ne!(ra.worker(), 0);
    assert_ne!(rb.worker(), 0);
    assert_ne!(ra.worker(), rb.worker());
    ra.fetch_timeout(Duration::from_secs(60)).unwrap();
    rb.fetch_timeout(Duration::from_secs(60)).unwrap();
}

/// Creates `mine`, then waits for `theirs`.
fn touch_then_wait((mine, theirs): (String, String)) -> usize {
    std::fs::write(&mine, b"here").unwrap();
    wait_for_file(theirs)
}

#[test]
fn strict_fifo_hands_every_worker_over() {
    // Bound zero: the waiting blocked callers run in the order they came, even while the
    // thread that frees the worker calls again at once.
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    let ws = WorkerSet::with_cluster(&c, &ids, Mode::FirstFree).unwrap();
    ws.set_fair_after(Duration::ZERO);
    let path = gate("strict");
    let _rm = Rm(path.clone());
    let first = ws.remotecall(wait_for_file, path.clone()).unwrap();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..4)
            .map(|k| {
                let h = s.spawn(|| ws.remotecall_fetch(seq, ()).unwrap());
                until_waiting(&ws, k + 1);
                h
            })
            .collect();
        std::fs::write(&path, b"go").unwrap();
        // The gated call's reply is read by the link's reader thread, which hands the
        // worker on; this thread then calls again at once and must queue behind them.
        assert_eq!(first.fetch().unwrap(), 0);
        let late = ws.remotecall_fetch(seq, ()).unwrap();
        let got: Vec<usize> = waiters.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(late, 5);
    });
}
