//! Host targets with workers that joined over TCP: each reports its host in its handshake
//! (no host call), and workers connecting from 127.0.0.2 and 127.0.0.3 stand for two
//! hosts: tasks targeted at each address run on the worker there, and no other.

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_queue::{QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::{Cluster, CommandLauncher};

fn whoami(_: u64) -> usize {
    ptools_workerset::myid()
}

#[test]
fn tasks_for_an_address_run_on_the_worker_there() {
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(20))
        .build();
    let shell = || CommandLauncher::new(["sh", "-c", "exec {cmd}"]);
    let a = c
        .addprocs_with(&shell().bind("127.0.0.2".parse().unwrap()))
        .unwrap()[0];
    let b = c
        .addprocs_with(&shell().bind("127.0.0.3".parse().unwrap()))
        .unwrap()[0];
    let ha = c.worker_host(a).unwrap();
    assert_eq!(
        ha.addresses[0],
        "127.0.0.2".parse::<std::net::IpAddr>().unwrap()
    );
    assert!(!ha.addresses.contains(&"127.0.0.3".parse().unwrap()));
    let q = TaskQueue::new(&c);
    assert_eq!(q.prep_remotes().unwrap(), 2);
    for _ in 0..10 {
        let on_a = q
            .execute_worker_task(QueuedWorkerTask::without_callback(
                0,
                whoami,
                Target::Host("127.0.0.2".into()),
            ))
            .unwrap();
        let on_b = q
            .execute_worker_task(QueuedWorkerTask::without_callback(
                0,
                whoami,
                Target::Hosts(vec!["127.0.0.3".into()]),
            ))
            .unwrap();
        assert_eq!((on_a, on_b), (a, b));
    }
    q.wait_idle();
    drop(q);
    c.rmprocs(&[a, b]).unwrap();
}
