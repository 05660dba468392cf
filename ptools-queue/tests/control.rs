//! Control: pause and resume, counts, waiting until idle, calls refused on the callback
//! thread, and dropping a queue with tasks still queued.

ptools_workerset::enable_test_support!();

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ptools_queue::{Error, QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::Cluster;

const WAIT: Duration = Duration::from_secs(120);

fn ident(x: u64) -> u64 {
    x
}

#[test]
fn pause_holds_dispatch_and_resume_releases_it() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    q.pause();
    assert!(q.is_paused());
    for i in 0..10 {
        q.queue_worker_task(QueuedWorkerTask::without_callback(i, ident, Target::Any))
            .unwrap();
    }
    // Paused: it cannot become idle, however long we wait.
    assert!(!q.wait_idle_timeout(Duration::from_millis(200)));
    let n = q.counts();
    assert_eq!((n.queued, n.running, n.done), (10, 0, 0));
    q.resume();
    assert!(!q.is_paused());
    assert!(q.wait_idle_timeout(WAIT));
    let n = q.counts();
    assert_eq!((n.queued, n.running, n.done, n.failed), (0, 0, 10, 0));
    q.wait_idle();
}

#[test]
fn execute_from_a_callback_is_refused() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = Arc::new(TaskQueue::new(&c));
    let got = Arc::new(Mutex::new(None));
    let (q2, g2) = (q.clone(), got.clone());
    let cb = move |_x: u64, _r: ptools_queue::Result<u64>| {
        let r = q2.execute_worker_task(QueuedWorkerTask::without_callback(1, ident, Target::Any));
        *g2.lock().unwrap() = Some(matches!(r, Err(Error::InvalidArgument(_))));
    };
    q.queue_worker_task(QueuedWorkerTask::new(0, ident, cb, Target::Any))
        .unwrap();
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(*got.lock().unwrap(), Some(true));
}

#[test]
fn dropping_the_queue_fails_what_is_still_queued() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    q.pause();
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..5 {
        let tx = tx.clone();
        let cb = move |x: u64, r: ptools_queue::Result<u64>| {
            let _ = tx.send((x, matches!(r, Err(Error::Shutdown))));
        };
        q.queue_worker_task(QueuedWorkerTask::new(i, ident, cb, Target::Any))
            .unwrap();
    }
    drop(tx);
    drop(q);
    let mut got = Vec::new();
    while let Ok(v) = rx.recv_timeout(WAIT) {
        got.push(v);
    }
    got.sort_unstable();
    assert_eq!(got, (0..5).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn nan_and_bad_targets_are_refused_before_queuing() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    let t = QueuedWorkerTask::without_callback(1, ident, Target::Any).priority(f64::NAN);
    assert!(matches!(
        q.queue_worker_task(t),
        Err(Error::InvalidPriority(_))
    ));
    let t = QueuedWorkerTask::without_callback(1, ident, Target::Hosts(vec![]));
    assert!(matches!(
        q.queue_worker_task(t),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(q.counts(), ptools_queue::Counts::default());
}

#[cfg(feature = "progress")]
#[test]
fn progress_bar_waits_until_idle() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    for i in 0..100 {
        q.queue_worker_task(QueuedWorkerTask::without_callback(i, ident, Target::Any))
            .unwrap();
    }
    q.wait_idle_progress();
    assert_eq!(q.counts().done, 100);
}

#[test]
fn a_callback_may_queue_follow_up_tasks() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = Arc::new(TaskQueue::new(&c));
    let seen = Arc::new(Mutex::new(Vec::new()));
    /// Queues `x` with a callback that queues `x + 1` until 5.
    fn chain(q: &Arc<TaskQueue>, seen: &Arc<Mutex<Vec<u64>>>, x: u64) {
        let (q2, s2) = (q.clone(), seen.clone());
        let cb = move |x: u64, r: ptools_queue::Result<u64>| {
            s2.lock().unwrap().push(r.unwrap());
            if x < 5 {
                chain(&q2, &s2, x + 1);
            }
        };
        q.queue_worker_task(QueuedWorkerTask::new(x, ident, cb, Target::Any))
            .unwrap();
    }
    chain(&q, &seen, 0);
    // Idle only once the last callback has returned without queuing more.
    let deadline = std::time::Instant::now() + WAIT;
    while seen.lock().unwrap().len() < 6 {
        assert!(std::time::Instant::now() < deadline, "the chain stopped");
        assert!(q.wait_idle_timeout(WAIT));
    }
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn dropping_the_queue_while_tasks_run_still_calls_every_callback_once() {
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let n = 2000u64;
    for i in 0..n {
        let tx = tx.clone();
        let cb = move |x: u64, r: ptools_queue::Result<u64>| {
            let _ = tx.send((x, r.map_err(|e| matches!(e, Error::Shutdown))));
        };
        q.queue_worker_task(QueuedWorkerTask::new(i, ident, cb, Target::Any))
            .unwrap();
    }
    drop(tx);
    // Let some run (pipelined), then drop with calls in flight.
    let deadline = std::time::Instant::now() + WAIT;
    while q.counts().done < 100 {
        assert!(std::time::Instant::now() < deadline, "no task ran");
        std::thread::yield_now();
    }
    drop(q);
    let mut got = Vec::new();
    // Ends when every callback has run or been dropped (the senders are gone).
    while let Ok(v) = rx.recv_timeout(WAIT) {
        got.push(v);
    }
    got.sort_unstable_by_key(|v| v.0);
    assert_eq!(got.len() as u64, n, "every task is called back");
    for (x, r) in got {
        match r {
            Ok(v) => assert_eq!(v, x),
            Err(shutdown) => assert!(shutdown, "{x} failed otherwise"),
        }
    }
}
