//! Workers that die (SIGKILL, abort, segfault, exit): the calls on them fail with a typed
//! `WorkerDied`, the other workers go on, and the dead one leaves `procs()`.

ptools_workerset::enable_test_support!();

use std::time::{Duration, Instant};

use ptools_workerset::{Cluster, Error, Termination};

fn add1(x: u64) -> u64 {
    x + 1
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn abort(_: ()) -> u8 {
    std::process::abort()
}

fn exit7(_: ()) -> u8 {
    std::process::exit(7)
}

fn segfault(_: ()) -> u8 {
    // SAFETY: none, on purpose: this write to address 0 must kill the worker with SIGSEGV.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
    0
}

fn expect_died(r: Result<impl std::fmt::Debug, Error>, id: usize, pid: i32, t: Termination) {
    match r {
        Err(Error::WorkerDied {
            id: i,
            pid: p,
            termination,
        }) => {
            assert_eq!((i, p, termination), (id, pid, t));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

/// Waits (bounded) until worker `id` has left `procs()`.
fn wait_gone(c: &Cluster, id: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.procs().contains(&id) {
        assert!(Instant::now() < deadline, "worker {id} never left procs()");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_fails_running_and_queued_calls_only() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let (victim, other) = (ids[0], ids[1]);
    let pid = c.pid(victim).unwrap();
    let running = c.remotecall(victim, sleep_ms, 600_000).unwrap();
    let queued: Vec<_> = (0..10)
        .map(|i| c.remotecall(victim, add1, i).unwrap())
        .collect();
    let elsewhere = c.remotecall(other, sleep_ms, 50).unwrap();
    // SAFETY: plain kill(2) of our own child, which is not reaped yet.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let sig = Termination::Signaled(libc::SIGKILL);
    expect_died(running.fetch(), victim, pid, sig);
    for q in queued {
        expect_died(q.fetch(), victim, pid, sig);
    }
    assert_eq!(elsewhere.fetch().unwrap(), 50);
    wait_gone(&c, victim);
    assert_eq!(c.procs(), vec![1, other]);
    expect_died(c.remotecall_fetch(victim, add1, 1), victim, pid, sig);
    assert_eq!(c.remotecall_fetch(other, add1, 1).unwrap(), 2);
}

#[test]
fn abort_segfault_and_exit_are_reported() {
    let c = Cluster::new();
    let ids = c.addprocs(4).unwrap();
    let pids: Vec<i32> = ids.iter().map(|&i| c.pid(i).unwrap()).collect();
    expect_died(
        c.remotecall_fetch(ids[0], abort, ()),
        ids[0],
        pids[0],
        Termination::Signaled(libc::SIGABRT),
    );
    expect_died(
        c.remotecall_fetch(ids[1], segfault, ()),
        ids[1],
        pids[1],
        Termination::Signaled(libc::SIGSEGV),
    );
    expect_died(
        c.remotecall_fetch(ids[2], exit7, ()),
        ids[2],
        pids[2],
        Termination::Exited(7),
    );
    assert_eq!(c.remotecall_fetch(ids[3], add1, 1).unwrap(), 2);
    for &id in &ids[..3] {
        wait_gone(&c, id);
    }
    assert_eq!(c.workers(), vec![ids[3]]);
}

#[test]
fn an_idle_worker_killed_leaves_procs() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let pid = c.pid(ids[1]).unwrap();
    // SAFETY: plain kill(2) of our own child, which is not reaped yet.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_gone(&c, ids[1]);
    assert_eq!(c.workers(), vec![ids[0]]);
    assert!(
        c.remotecall_fetch(ids[1], add1, 1)
            .unwrap_err()
            .is_worker_died()
    );
    // rmprocs of a dead worker reports its death.
    assert!(c.rmprocs(&[ids[1]]).unwrap_err().is_worker_died());
}

#[test]
fn rmprocs_kills_a_busy_worker_after_the_grace_period() {
    let c = Cluster::builder()
        .grace_period(Duration::from_millis(100))
        .build();
    let ids = c.addprocs(1).unwrap();
    let busy = c.remotecall(ids[0], sleep_ms, 600_000).unwrap();
    c.rmprocs(&ids).unwrap();
    assert!(busy.fetch().unwrap_err().is_worker_died());
    assert_eq!(c.procs(), vec![1]);
}

#[test]
fn drop_stops_workers() {
    let c = Cluster::builder()
        .grace_period(Duration::from_millis(100))
        .build();
    let ids = c.addprocs(2).unwrap();
    let pids: Vec<i32> = ids.iter().map(|&i| c.pid(i).unwrap()).collect();
    let busy = c.remotecall(ids[0], sleep_ms, 600_000).unwrap();
    drop(c);
    assert!(busy.fetch().unwrap_err().is_worker_died());
    for pid in pids {
        // SAFETY: signal 0 only probes; the pid was ours and has been reaped by drop.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "pid {pid} still exists");
    }
}

#[test]
fn exit_hook_fires_once_per_worker_after_its_calls_failed() {
    use ptools_workerset::WorkerStatus;
    use std::sync::{Arc, Mutex};

    fn sleep_long(_: ()) {
        std::thread::sleep(std::time::Duration::from_secs(600));
    }

    let c = Cluster::new();
    let ids = c.addprocs(2).expect("addprocs");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let pending = Arc::new(Mutex::new(None));
    let seen = pending.clone();
    c.on_worker_exit(move |id, why| {
        // The call pending on the killed worker has already failed.
        let ready = seen
            .lock()
            .expect("lock")
            .as_ref()
            .map(|r: &ptools_workerset::RemoteRef<()>| r.is_ready());
        let _ = tx.lock().expect("lock").send((id, why.clone(), ready));
    });
    let victim = ids[0];
    *pending.lock().expect("lock") = Some(c.remotecall(victim, sleep_long, ()).expect("call"));
    assert!(matches!(c.worker_status(victim), WorkerStatus::Alive));
    let pid = c.pid(victim).expect("pid");
    // SAFETY: `pid` is a worker of this test, alive until reaped by the cluster.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (id, why, ready) = rx.recv().expect("event");
    assert_eq!(id, victim);
    assert_eq!(ready, Some(true));
    assert!(matches!(why, Error::WorkerDied { id, .. } if id == victim));
    assert!(matches!(
        c.worker_status(victim),
        WorkerStatus::Gone(Error::WorkerDied { .. })
    ));
    c.rmprocs(&[ids[1]]).expect("rmprocs");
    let (id, why, _) = rx.recv().expect("event");
    assert_eq!(id, ids[1]);
    assert!(matches!(why, Error::WorkerDied { .. }));
    // Once each: nothing more, even when asked to remove the dead one again.
    assert!(c.rmprocs(&[victim]).is_err());
    assert!(rx.try_recv().is_err());
}
