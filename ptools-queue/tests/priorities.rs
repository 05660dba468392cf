//! Priorities: lower first, ties in submission order, a panicking priority function that
//! changes nothing, and a reversal of the whole order while tasks run (1 worker, 1000
//! tasks, reversed after 100 have started): none lost, none run twice, the rest follow
//! the new order.

ptools_workerset::enable_test_support!();

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ptools_queue::{DequeueStatus, Error, QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::Cluster;

const WAIT: Duration = Duration::from_secs(120);

fn gate_path(master: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ptools-queue-gate-{master}"))
}

/// `x`, once the master's gate file exists for `x >= 100` (the worker's parent is the
/// master).
fn gated(x: u64) -> u64 {
    if x >= 100 {
        let gate = gate_path(std::os::unix::process::parent_id());
        let t0 = std::time::Instant::now();
        while !gate.exists() && t0.elapsed() < std::time::Duration::from_secs(120) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    x
}

fn ident(x: u64) -> u64 {
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A queue on one worker, paused, so the order is decided by priorities alone.
fn one_worker() -> (Cluster, TaskQueue) {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    q.pause();
    (c, q)
}

#[test]
fn lower_first_ties_in_submission_order() {
    let (_c, q) = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let prios = [
        3.0,
        1.0,
        2.0,
        1.0,
        f64::NEG_INFINITY,
        f64::INFINITY,
        -0.0,
        0.0,
    ];
    for (i, &p) in prios.iter().enumerate() {
        let order = order.clone();
        let cb = move |x: u64, _r| order.lock().unwrap().push(x);
        q.queue_worker_task(QueuedWorkerTask::new(i as u64, ident, cb, Target::Any).priority(p))
            .unwrap();
    }
    let nan = QueuedWorkerTask::without_callback(9, ident, Target::Any).priority(f64::NAN);
    assert!(matches!(q.queue_worker_task(nan), Err(Error::InvalidPriority(p)) if p.is_nan()));
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(*order.lock().unwrap(), [4, 6, 7, 1, 3, 2, 0, 5]);
}

#[test]
fn priority_of_one_task_and_nan_rejected_whole() {
    let (_c, q) = one_worker();
    let a = q
        .queue_worker_task(QueuedWorkerTask::without_callback(1, ident, Target::Any))
        .unwrap();
    let b = q
        .queue_worker_task(QueuedWorkerTask::without_callback(2, ident, Target::Any))
        .unwrap();
    assert_eq!(q.priority(a), Some(0.0));
    assert!(q.set_priority(b, -5.0).unwrap());
    assert_eq!(q.priority(b), Some(-5.0));
    assert!(matches!(
        q.set_priority(b, f64::NAN),
        Err(Error::InvalidPriority(_))
    ));
    let r = q.set_priorities(|_, t, _| if t.id() == a { f64::NAN } else { 7.0 });
    assert!(matches!(r, Err(Error::InvalidPriority(_))));
    assert_eq!((q.priority(a), q.priority(b)), (Some(0.0), Some(-5.0)));
    q.set_priorities(|target, t, cur| {
        assert_eq!(*target, Target::Any);
        cur + *t.data::<u64>().unwrap() as f64
    })
    .unwrap();
    assert_eq!((q.priority(a), q.priority(b)), (Some(1.0), Some(-3.0)));
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(q.priority(a), None);
    assert_eq!(q.dequeue_worker_task(a), DequeueStatus::Finished);
}

#[test]
fn a_panicking_priority_function_is_an_error_and_changes_nothing() {
    let (_c, q) = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    // Priorities chosen so the dispatch order (4, 1, 5, 2, 0, 3) is neither the
    // submission order nor its reverse.
    let prios = [5.0, 2.0, 4.0, 6.0, 1.0, 3.0];
    let mut ids = Vec::new();
    for (i, &p) in prios.iter().enumerate() {
        let order = order.clone();
        let cb = move |x: u64, _r| order.lock().unwrap().push(x);
        ids.push(
            q.queue_worker_task(
                QueuedWorkerTask::new(i as u64, ident, cb, Target::Any).priority(p),
            )
            .unwrap(),
        );
    }
    // Reverses the order for the first two tasks it sees, then panics on the third.
    let mut calls = 0;
    let r = q.set_priorities(|_, t, _| {
        calls += 1;
        if calls == 3 {
            panic!("no priority for task {}", t.data::<u64>().unwrap());
        }
        -(*t.data::<u64>().unwrap() as f64)
    });
    assert_eq!(calls, 3, "the function ran until it panicked, then no more");
    let Err(Error::PriorityPanic(message)) = r else {
        panic!("expected PriorityPanic, got {r:?}");
    };
    assert!(message.starts_with("no priority for task "), "{message}");
    let shown = Error::PriorityPanic(message.clone()).to_string();
    assert_eq!(shown, format!("priority function panicked: {message}"));
    // A payload that is not a string is reported as such.
    let r = q.set_priorities(|_, _, _| std::panic::panic_any(7u8));
    assert!(
        matches!(&r, Err(Error::PriorityPanic(m)) if m == "<non-string panic payload>"),
        "{r:?}"
    );
    // Every priority is as it was, and so is the dispatch order.
    for (id, &p) in ids.iter().zip(&prios) {
        assert_eq!(q.priority(*id), Some(p));
    }
    assert_eq!(q.counts().queued, prios.len());
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(*order.lock().unwrap(), [4, 1, 5, 2, 0, 3]);
}

#[test]
fn reversal_while_running_loses_nothing_and_runs_nothing_twice() {
    // Tasks from 100 on wait for this file, which appears after the reversal: however
    // slowly this thread runs, the reversal finds most tasks still queued.
    let gate = gate_path(std::process::id());
    let _ = std::fs::remove_file(&gate);
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    let n = 1000u64;
    let started = Arc::new(Mutex::new(Vec::new()));
    let finished = Arc::new(AtomicUsize::new(0));
    // Queue all while paused, so the first 1000 go in by (priority = index, sequence).
    q.pause();
    for i in 0..n {
        let (started, finished) = (started.clone(), finished.clone());
        let cb = move |x: u64, r: ptools_queue::Result<u64>| {
            assert_eq!(r.unwrap(), x);
            // One worker: completion order is start order.
            started.lock().unwrap().push(x);
            finished.fetch_add(1, Ordering::SeqCst);
        };
        q.queue_worker_task(QueuedWorkerTask::new(i, gated, cb, Target::Any).priority(i as f64))
            .unwrap();
    }
    q.resume();
    let deadline = Instant::now() + WAIT;
    while finished.load(Ordering::SeqCst) < 100 {
        assert!(Instant::now() < deadline, "the first 100 never finished");
        std::thread::yield_now();
    }
    q.set_priorities(|_, t, _| -(*t.data::<u64>().unwrap() as f64))
        .unwrap();
    std::fs::write(&gate, b"").unwrap();
    let idle = q.wait_idle_timeout(WAIT);
    let _ = std::fs::remove_file(&gate);
    assert!(idle);
    let order = started.lock().unwrap().clone();
    // None lost, none twice.
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    // An ascending prefix (those started before the reversal), then descending.
    let k = order
        .iter()
        .enumerate()
        .take_while(|&(i, &x)| x == i as u64)
        .count();
    assert!(k >= 100, "reversed after only {k}");
    assert!(
        order[k..].windows(2).all(|w| w[0] > w[1]),
        "tail not descending"
    );
    assert!(k < n as usize, "the reversal came after everything had run");
    let c = q.counts();
    assert_eq!((c.done, c.failed, c.queued, c.running), (n, 0, 0, 0));
}

#[test]
fn dequeue_by_id_and_filter() {
    let (_c, q) = one_worker();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut ids = Vec::new();
    for i in 0..10u64 {
        let log = log.clone();
        let cb = move |x: u64, r: ptools_queue::Result<u64>| {
            log.lock()
                .unwrap()
                .push((x, r.is_ok(), matches!(r, Err(Error::Dequeued))))
        };
        ids.push(
            q.queue_worker_task(QueuedWorkerTask::new(i, ident, cb, Target::Any))
                .unwrap(),
        );
    }
    assert_eq!(q.dequeue_worker_task(ids[3]), DequeueStatus::Dequeued);
    assert_eq!(q.dequeue_worker_task(ids[3]), DequeueStatus::Finished);
    let gone = q.dequeue_worker_tasks(|t| t.data::<u64>().is_some_and(|x| x % 2 == 0));
    assert_eq!(gone, [ids[0], ids[2], ids[4], ids[6], ids[8]]);
    assert_eq!(q.counts().queued, 4);
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    let mut log = log.lock().unwrap().clone();
    log.sort_unstable();
    let want: Vec<_> = (0..10u64)
        .map(|x| {
            let removed = x == 3 || x % 2 == 0;
            (x, !removed, removed)
        })
        .collect();
    assert_eq!(log, want);
    let c = q.counts();
    assert_eq!((c.done, c.dequeued), (4, 6));
    // Another queue's id is unknown here.
    let other = TaskQueue::new(q.cluster());
    assert_eq!(other.dequeue_worker_task(ids[1]), DequeueStatus::Unknown);
}

#[test]
fn dequeue_of_a_running_task_still_calls_back_once() {
    let c = Cluster::new();
    c.addprocs(1).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let cb = move |_x: u64, r: ptools_queue::Result<u64>| {
        assert_eq!(r.unwrap(), 300);
        calls2.fetch_add(1, Ordering::SeqCst);
    };
    let id = q
        .queue_worker_task(QueuedWorkerTask::new(300, sleep_ms, cb, Target::Any))
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while q.counts().running == 0 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert_eq!(q.dequeue_worker_task(id), DequeueStatus::Running);
    assert!(q.wait_idle_timeout(WAIT));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(q.dequeue_worker_task(id), DequeueStatus::Finished);
}

/// A pseudo-random number from `i` (a multiplicative hash).
fn mix(i: u64) -> u64 {
    (i ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17
}

/// Runs the queue (one worker) until idle and returns the data of the tasks in the order
/// their callbacks saw them, which on one worker is the dispatch order.
fn run_in_order(q: &TaskQueue, order: &Arc<Mutex<Vec<u64>>>) -> Vec<u64> {
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    std::mem::take(&mut *order.lock().unwrap())
}

fn logging(order: &Arc<Mutex<Vec<u64>>>) -> impl FnMut(u64, ptools_queue::Result<u64>) + 'static {
    let order = order.clone();
    move |x, r| {
        assert_eq!(r.unwrap(), x);
        order.lock().unwrap().push(x);
    }
}

#[test]
fn equal_priorities_run_in_submission_order_across_100k_tasks() {
    let (_c, q) = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let n = 100_000u64;
    for i in 0..n {
        let t = QueuedWorkerTask::new(i, ident, logging(&order), Target::Any).priority(2.5);
        q.queue_worker_task(t).unwrap();
    }
    let got = run_in_order(&q, &order);
    assert_eq!(got.len(), n as usize);
    assert!(got.into_iter().eq(0..n), "not in submission order");
}

#[test]
fn set_priorities_orders_10k_tasks_by_priority_then_submission() {
    let (_c, q) = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let n = 10_000u64;
    for i in 0..n {
        // Queued in another order first, so that the reordering moves everything.
        let t = QueuedWorkerTask::new(i, ident, logging(&order), Target::Any).priority(-(i as f64));
        q.queue_worker_task(t).unwrap();
    }
    // Many ties (100 values), negative and fractional priorities.
    let prio = |x: u64| (mix(x) % 100) as f64 / 4.0 - 10.0;
    q.set_priorities(|_, t, _| prio(*t.data::<u64>().unwrap()))
        .unwrap();
    let mut want: Vec<u64> = (0..n).collect();
    want.sort_by(|&a, &b| prio(a).total_cmp(&prio(b)).then(a.cmp(&b)));
    assert_eq!(run_in_order(&q, &order), want);
}

#[test]
fn dequeue_in_the_middle_of_a_long_queue() {
    let (_c, q) = one_worker();
    let order = Arc::new(Mutex::new(Vec::new()));
    let dequeued = Arc::new(Mutex::new(Vec::new()));
    let mut ids = Vec::new();
    for i in 0..1000u64 {
        let (order, dequeued) = (order.clone(), dequeued.clone());
        let cb = move |x: u64, r: ptools_queue::Result<u64>| match r {
            Ok(_) => order.lock().unwrap().push(x),
            Err(Error::Dequeued) => dequeued.lock().unwrap().push(x),
            Err(e) => panic!("{x}: {e}"),
        };
        ids.push(
            q.queue_worker_task(QueuedWorkerTask::new(i, ident, cb, Target::Any))
                .unwrap(),
        );
    }
    assert_eq!(q.dequeue_worker_task(ids[500]), DequeueStatus::Dequeued);
    assert_eq!(q.dequeue_worker_task(ids[500]), DequeueStatus::Finished);
    assert_eq!(q.priority(ids[500]), None);
    // Then a third of them at once.
    let gone = q.dequeue_worker_tasks(|t| t.data::<u64>().is_some_and(|x| x % 3 == 1));
    let want_gone: Vec<_> = (0..1000).filter(|i| i % 3 == 1).map(|i| ids[i]).collect();
    assert_eq!(gone, want_gone);
    let got = run_in_order(&q, &order);
    let want: Vec<u64> = (0..1000).filter(|&i| i != 500 && i % 3 != 1).collect();
    assert_eq!(got, want);
    let mut dequeued = dequeued.lock().unwrap().clone();
    dequeued.sort_unstable();
    let mut want_dequeued: Vec<u64> = (0..1000).filter(|i| i % 3 == 1).collect();
    want_dequeued.push(500);
    want_dequeued.sort_unstable();
    assert_eq!(dequeued, want_dequeued);
}

#[test]
fn the_id_of_a_finished_task_never_reaches_a_later_one() {
    // Task records are reused once a task has ended: the old id must still answer
    // Finished, and leave the task that now uses the record alone.
    let (_c, q) = one_worker();
    q.resume();
    let old: Vec<_> = (0..3u64)
        .map(|i| {
            q.queue_worker_task(QueuedWorkerTask::without_callback(i, ident, Target::Any))
                .unwrap()
        })
        .collect();
    assert!(q.wait_idle_timeout(WAIT));
    q.pause();
    let new: Vec<_> = (0..3u64)
        .map(|i| {
            q.queue_worker_task(QueuedWorkerTask::without_callback(i, ident, Target::Any))
                .unwrap()
        })
        .collect();
    for &id in &old {
        assert_eq!(q.priority(id), None);
        assert!(!q.set_priority(id, -1.0).unwrap());
        assert_eq!(q.dequeue_worker_task(id), DequeueStatus::Finished);
    }
    for &id in &new {
        assert!(!old.contains(&id));
        assert_eq!(q.priority(id), Some(0.0));
    }
    assert_eq!(q.counts().queued, 3);
    assert_eq!(q.dequeue_worker_task(new[1]), DequeueStatus::Dequeued);
    assert_eq!(q.counts().queued, 2);
}
