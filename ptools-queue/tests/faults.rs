//! Faults, for real: remote panics, callbacks that panic, workers killed while running,
//! while idle and while paused, and a task that kills its own worker. Every task ends in
//! exactly one outcome; nothing stays queued.

ptools_workerset::enable_test_support!();

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill as kill_pid};
use nix::unistd::Pid;
use ptools_queue::{CallbackPanic, Error, QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::{Cluster, Termination};

const WAIT: Duration = Duration::from_secs(120);

fn ident(x: u64) -> u64 {
    x
}

fn boom(x: u64) -> u64 {
    if x == 3 {
        panic!("three");
    }
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn abort(_: u64) -> u64 {
    std::process::abort()
}

type Log = Arc<Mutex<Vec<(u64, Result<u64, Error>)>>>;

/// A callback that records `(data, outcome)`.
fn recorder(log: &Log) -> impl FnMut(u64, ptools_queue::Result<u64>) + Send + 'static {
    let log = log.clone();
    move |x, r| log.lock().unwrap().push((x, r))
}

fn kill(c: &Cluster, id: usize) -> i32 {
    let pid = c.pid(id).unwrap();
    // Our own child, not reaped yet: the pid is still its.
    kill_pid(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
    pid
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_remote_panic_is_the_outcome_and_the_feeder_goes_on() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    let log: Log = Arc::default();
    for i in 0..6 {
        q.queue_worker_task(QueuedWorkerTask::new(i, boom, recorder(&log), Target::Any))
            .unwrap();
    }
    assert!(q.wait_idle_timeout(WAIT));
    let mut log = log.lock().unwrap().drain(..).collect::<Vec<_>>();
    log.sort_by_key(|e| e.0);
    for (x, r) in log {
        if x == 3 {
            let e = r.unwrap_err();
            assert!(e.is_remote_panic(), "{e}");
            assert!(e.to_string().contains("three"), "{e}");
        } else {
            assert_eq!(r.unwrap(), x);
        }
    }
    let n = q.counts();
    assert_eq!((n.done, n.failed), (5, 1));
}

#[test]
fn a_callback_that_panics_is_counted_and_reported_and_the_queue_goes_on() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    let reported: Arc<Mutex<Vec<CallbackPanic>>> = Arc::default();
    let r2 = reported.clone();
    q.set_error_hook(move |p| r2.lock().unwrap().push(p.clone()));
    let ok = Arc::new(Mutex::new(0));
    let mut bad = Vec::new();
    for i in 0..10u64 {
        let ok = ok.clone();
        let cb = move |x: u64, _r: ptools_queue::Result<u64>| {
            if x.is_multiple_of(3) {
                panic!("callback {x}");
            }
            *ok.lock().unwrap() += 1;
        };
        let id = q
            .queue_worker_task(QueuedWorkerTask::new(i, ident, cb, Target::Any))
            .unwrap();
        if i.is_multiple_of(3) {
            bad.push(id);
        }
    }
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(*ok.lock().unwrap(), 6);
    let n = q.counts();
    assert_eq!((n.done, n.callback_panics), (10, 4));
    let mut got: Vec<_> = reported.lock().unwrap().iter().map(|p| p.task).collect();
    got.sort();
    assert_eq!(got, bad);
    assert!(
        reported
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.message.starts_with("callback "))
    );
    // And later tasks still run.
    let t = QueuedWorkerTask::without_callback(7, ident, Target::Any);
    assert_eq!(q.execute_worker_task(t).unwrap(), 7);
}

#[test]
fn a_killed_worker_fails_its_running_and_pinned_tasks_others_go_on() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let (victim, other) = (ids[0], ids[1]);
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    let log: Log = Arc::default();
    let running = q
        .queue_worker_task(QueuedWorkerTask::new(
            600_000,
            sleep_ms,
            recorder(&log),
            victim,
        ))
        .unwrap();
    wait_for("the long task to start", || q.counts().running == 1);
    let mut pinned = Vec::new();
    for i in 0..5 {
        pinned.push(
            q.queue_worker_task(QueuedWorkerTask::new(i, ident, recorder(&log), victim))
                .unwrap(),
        );
    }
    for i in 100..120 {
        q.queue_worker_task(QueuedWorkerTask::new(i, ident, recorder(&log), Target::Any))
            .unwrap();
    }
    // Pinned to both: the other one takes it.
    q.queue_worker_task(QueuedWorkerTask::new(
        200,
        ident,
        recorder(&log),
        vec![victim, other],
    ))
    .unwrap();
    let pid = kill(&c, victim);
    assert!(q.wait_idle_timeout(WAIT));
    let died = |e: &Error| match e {
        Error::Worker(ptools_workerset::Error::WorkerDied {
            id,
            pid: p,
            termination,
        }) => {
            *id == victim
                && *p == pid
                && *termination == Termination::Signaled(Signal::SIGKILL as i32)
        }
        _ => false,
    };
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1 + 5 + 20 + 1, "every task ends once");
    for (x, r) in log.iter() {
        match x {
            600_000 | 0..5 => assert!(r.as_ref().is_err_and(died), "{x}: {r:?}"),
            _ => assert_eq!(r.as_ref().unwrap(), x),
        }
    }
    assert_eq!(
        q.dequeue_worker_task(running),
        ptools_queue::DequeueStatus::Finished
    );
    let n = q.counts();
    assert_eq!((n.done, n.failed, n.queued, n.running), (21, 6, 0, 0));
    assert_eq!(q.num_remotes(), 1);
    // Later: pinning to the dead worker is refused with its death; unknown ids too.
    let r = q.queue_worker_task(QueuedWorkerTask::without_callback(1, ident, victim));
    assert!(r.as_ref().is_err_and(died), "{r:?}");
    let r = q.queue_worker_task(QueuedWorkerTask::without_callback(1, ident, 999));
    assert!(matches!(r, Err(Error::UnknownWorker(999))), "{r:?}");
    // All-workers tasks now run on the survivor only.
    let all: Log = Arc::default();
    q.queue_worker_task(QueuedWorkerTask::new(5, ident, recorder(&all), Target::All))
        .unwrap();
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(all.lock().unwrap().len(), 1);
}

#[test]
fn when_the_last_worker_dies_nothing_stays_queued() {
    let c = Cluster::new();
    let ids = c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    q.pause();
    let log: Log = Arc::default();
    for i in 0..10 {
        q.queue_worker_task(QueuedWorkerTask::new(i, ident, recorder(&log), Target::Any))
            .unwrap();
    }
    kill(&c, ids[0]);
    // Paused and idle: the feeder notices the death by itself.
    assert!(q.wait_idle_timeout(WAIT));
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 10);
    assert!(
        log.iter().all(|(_, r)| matches!(r, Err(Error::NoWorkers))),
        "{log:?}"
    );
    assert_eq!(q.num_remotes(), 0);
    let r = q.queue_worker_task(QueuedWorkerTask::without_callback(1, ident, Target::Any));
    assert!(matches!(r, Err(Error::NoWorkers)), "{r:?}");
}

#[test]
fn a_task_that_kills_its_worker_fails_alone_and_the_rest_run_elsewhere() {
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    let log: Log = Arc::default();
    for i in 0..50 {
        q.queue_worker_task(QueuedWorkerTask::new(i, ident, recorder(&log), Target::Any))
            .unwrap();
    }
    q.queue_worker_task(QueuedWorkerTask::new(
        1000,
        abort,
        recorder(&log),
        Target::Any,
    ))
    .unwrap();
    for i in 50..100 {
        q.queue_worker_task(QueuedWorkerTask::new(i, ident, recorder(&log), Target::Any))
            .unwrap();
    }
    assert!(q.wait_idle_timeout(WAIT));
    let log = log.lock().unwrap();
    let mut xs: Vec<u64> = log.iter().map(|e| e.0).collect();
    xs.sort_unstable();
    let mut want: Vec<u64> = (0..100).collect();
    want.push(1000);
    assert_eq!(xs, want, "every task ends exactly once");
    for (x, r) in log.iter() {
        match r {
            Ok(v) => assert_eq!(v, x),
            // Tasks already sent to the dying worker (pipelined behind the abort) fail
            // with it; none is lost or run twice.
            Err(e) => assert!(e.is_worker_died(), "{x}: {e}"),
        }
    }
    assert!(log.iter().any(|(x, r)| *x == 1000 && r.is_err()));
    assert_eq!(q.num_remotes(), 1);
}
