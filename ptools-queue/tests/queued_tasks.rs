//! PTools.jl's `test_queued_tasks`: 10 string-reversal tasks queued with a callback, then 10
//! executed synchronously; on a `TaskQueue` and through the free functions on the default
//! queue.

ptools_workerset::enable_test_support!();

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ptools_queue::{QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::Cluster;

fn reverse(s: String) -> String {
    s.chars().rev().collect()
}

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn ten_queued_with_a_callback_then_ten_executed() {
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    let q = TaskQueue::new(&c);
    assert_eq!(q.prep_remotes().unwrap(), 2);
    assert_eq!(q.num_remotes(), 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=10 {
        let seen = seen.clone();
        let cb = move |s: String, r: ptools_queue::Result<String>| {
            seen.lock().unwrap().push((s, r.unwrap()));
        };
        q.queue_worker_task(QueuedWorkerTask::new(
            format!("parallel {i}"),
            reverse,
            cb,
            Target::Any,
        ))
        .unwrap();
    }
    for i in 1..=10 {
        let t = QueuedWorkerTask::new(
            format!("sequential {i}"),
            reverse,
            |_, _| panic!("execute_worker_task replaces the callback"),
            Target::Any,
        );
        assert_eq!(
            q.execute_worker_task(t).unwrap(),
            reverse(format!("sequential {i}"))
        );
    }
    assert!(q.wait_idle_timeout(WAIT));
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<_> = (1..=10)
        .map(|i| (format!("parallel {i}"), reverse(format!("parallel {i}"))))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    let n = q.counts();
    assert_eq!((n.queued, n.running, n.done, n.failed), (0, 0, 20, 0));
    assert_eq!(n.callback_panics, 0);
}

#[test]
fn free_functions_on_the_default_queue() {
    ptools_workerset::addprocs(2).unwrap();
    assert_eq!(ptools_queue::prep_remotes().unwrap(), 2);
    assert_eq!(ptools_queue::num_remotes(), 2);
    let seen = Arc::new(Mutex::new(0));
    for i in 1..=10 {
        let seen = seen.clone();
        let cb = move |s: String, r: ptools_queue::Result<String>| {
            assert_eq!(r.unwrap(), reverse(s));
            *seen.lock().unwrap() += 1;
        };
        ptools_queue::queue_worker_task(QueuedWorkerTask::new(
            format!("parallel {i}"),
            reverse,
            cb,
            Target::Any,
        ))
        .unwrap();
    }
    for i in 1..=10 {
        let t = QueuedWorkerTask::without_callback(format!("sequential {i}"), reverse, Target::Any);
        assert_eq!(
            ptools_queue::execute_worker_task(t).unwrap(),
            reverse(format!("sequential {i}"))
        );
    }
    assert!(ptools_queue::default_queue().wait_idle_timeout(WAIT));
    assert_eq!(*seen.lock().unwrap(), 10);
    // Nothing queued: nothing to dequeue or reprioritise.
    assert!(ptools_queue::dequeue_worker_tasks(|_| true).is_empty());
    ptools_queue::set_priorities(|_, _, p| p + 1.0).unwrap();
    let ids = ptools_workerset::workers();
    ptools_workerset::rmprocs(&ids).unwrap();
}
