//! Targets for real: worker ids, lists, host name, short name and IP, all workers, and
//! the typed errors for unknown ones; the master runs tasks when there is no worker.

ptools_workerset::enable_test_support!();

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ptools_queue::{Error, QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::Cluster;

const WAIT: Duration = Duration::from_secs(120);

fn whoami(_: ()) -> usize {
    ptools_workerset::myid()
}

fn run_on(q: &TaskQueue, t: impl Into<Target>) -> Result<usize, Error> {
    q.execute_worker_task(QueuedWorkerTask::without_callback((), whoami, t))
}

#[test]
fn ids_host_names_and_addresses() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let q = TaskQueue::new(&c);
    assert_eq!(q.prep_remotes().unwrap(), 2);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let remotes = q.remotes();
    assert_eq!(remotes.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    for r in &remotes {
        assert_eq!(r.hostname, host);
        assert_eq!(Some(r.pid), c.pid(r.id));
        assert!(r.ips.contains(&"127.0.0.1".parse().unwrap()), "{:?}", r.ips);
    }
    for &id in &ids {
        assert_eq!(run_on(&q, id).unwrap(), id);
    }
    assert!(ids.contains(&run_on(&q, ids.clone()).unwrap()));
    let short = host.split('.').next().unwrap();
    for h in [host, short, "127.0.0.1", &format!("{short}.some.domain")] {
        assert!(ids.contains(&run_on(&q, h).unwrap()), "{h}");
    }
    for ip in &remotes[0].ips {
        assert!(ids.contains(&run_on(&q, *ip).unwrap()), "{ip}");
    }
    // Every host of a list must be known: a typo is an error, not a silent narrowing.
    assert!(matches!(
        run_on(&q, vec!["no-such-host", "127.0.0.1"]),
        Err(Error::UnknownHost(h)) if h == "no-such-host"
    ));
    assert!(ids.contains(&run_on(&q, vec![host.to_string()]).unwrap()));

    assert!(
        matches!(run_on(&q, "no-such-host.invalid"), Err(Error::UnknownHost(h)) if h == "no-such-host.invalid")
    );
    assert!(matches!(
        run_on(&q, "192.0.2.1"),
        Err(Error::UnknownHost(_))
    ));
    assert!(matches!(run_on(&q, 999), Err(Error::UnknownWorker(999))));
    assert!(matches!(
        run_on(&q, vec![ids[0], 999]),
        Err(Error::UnknownWorker(999))
    ));
    assert!(matches!(
        run_on(&q, Vec::<usize>::new()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        run_on(&q, Target::All),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(q.counts().queued, 0, "a refused task is not queued");
}

#[test]
fn all_workers_runs_once_on_each_and_pinned_tasks_stay_pinned() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let cb = move |_: (), r: ptools_queue::Result<usize>| s2.lock().unwrap().push(r.unwrap());
    let id = q
        .queue_worker_task(QueuedWorkerTask::new((), whoami, cb, Target::All))
        .unwrap();
    q.pause();
    let pinned = Arc::new(Mutex::new(Vec::new()));
    for i in 0..20 {
        let want = ids[i % 2];
        let p2 = pinned.clone();
        let cb = move |_: (), r: ptools_queue::Result<usize>| {
            p2.lock().unwrap().push((want, r.unwrap()))
        };
        q.queue_worker_task(QueuedWorkerTask::new((), whoami, cb, want))
            .unwrap();
    }
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, ids);
    let pinned = pinned.lock().unwrap();
    assert_eq!(pinned.len(), 20);
    assert!(pinned.iter().all(|(want, got)| want == got), "{pinned:?}");
    assert_eq!(
        q.dequeue_worker_task(id),
        ptools_queue::DequeueStatus::Finished
    );
}

#[test]
fn all_workers_parts_are_seen_by_set_priorities_and_dequeued_together() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    q.pause();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o2 = outcomes.clone();
    let cb = move |_: (), r: ptools_queue::Result<usize>| o2.lock().unwrap().push(r);
    let id = q
        .queue_worker_task(QueuedWorkerTask::new((), whoami, cb, Target::All))
        .unwrap();
    assert_eq!(q.counts().queued, 2);
    let mut parts = Vec::new();
    q.set_priorities(|target, t, p| {
        assert_eq!(*target, Target::All);
        parts.push(t.part().unwrap());
        p
    })
    .unwrap();
    parts.sort_unstable();
    assert_eq!(parts, ids);
    assert_eq!(
        q.dequeue_worker_task(id),
        ptools_queue::DequeueStatus::Dequeued
    );
    q.resume();
    assert!(q.wait_idle_timeout(WAIT));
    let o = outcomes.lock().unwrap();
    assert_eq!(o.len(), 2);
    assert!(o.iter().all(|r| matches!(r, Err(Error::Dequeued))));
}

#[test]
fn without_workers_the_master_runs_the_tasks() {
    let c = Cluster::new();
    let q = TaskQueue::new(&c);
    assert_eq!(q.prep_remotes().unwrap(), 1);
    assert_eq!(run_on(&q, Target::Any).unwrap(), 1);
    assert_eq!(run_on(&q, 1).unwrap(), 1);
}
