//! Queued tasks in a few seconds: prime counts over 200 ranges, queued with callbacks
//! and priorities (the ranges nearest a *focus* first), the focus moved half-way with
//! `set_priorities`, a task pinned to a host, one run on every worker, a remote panic
//! that is only an outcome, and the counts at the end.
//!
//! Run with `cargo run -p ptools-queue --example queue`. The work is in [`run`], which
//! uses only the default cluster and queue, so it can be copied as it is into a tour.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ptools_queue::{QueuedWorkerTask, Target};

type BoxError = Box<dyn std::error::Error>;

/// The remote function: the primes in `lo..hi` (trial division; a few ms per range).
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo.max(2)..hi)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

/// Worker id and pid: run on every worker.
fn whoami(_: ()) -> (usize, u32) {
    (ptools_workerset::myid(), std::process::id())
}

fn refuse(x: u64) -> u64 {
    if x == 13 {
        panic!("13 is unlucky");
    }
    x
}

const RANGES: u64 = 200;
const WIDTH: u64 = 5_000;

/// The queue part of a tour: start two workers, queue, reprioritise, wait, report.
pub fn run() -> Result<(), BoxError> {
    let ids = ptools_workerset::addprocs(2)?;
    ptools_queue::prep_remotes()?;
    let q = ptools_queue::default_queue();
    for r in q.remotes() {
        println!(
            "worker {} on {} ({} addresses)",
            r.id,
            r.hostname,
            r.ips.len()
        );
    }

    // Ranges nearest the focus go first: priority = distance from it.
    let done: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let focus = RANGES / 4;
    q.pause();
    for i in 0..RANGES {
        let done = done.clone();
        let cb = move |(lo, _hi): (u64, u64), r: ptools_queue::Result<u64>| {
            if let Ok(n) = r {
                done.lock().unwrap().push((lo / WIDTH, n));
            }
        };
        let t = QueuedWorkerTask::new((i * WIDTH, (i + 1) * WIDTH), count_primes, cb, Target::Any)
            .priority(i.abs_diff(focus) as f64);
        ptools_queue::queue_worker_task(t)?;
    }
    let t0 = Instant::now();
    q.resume();
    while done.lock().unwrap().len() < 40 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The user looks elsewhere: the ranges nearest the end now go first.
    let focus = RANGES - 1;
    ptools_queue::set_priorities(|_target, task, _current| {
        let (lo, _) = *task
            .data::<(u64, u64)>()
            .expect("all tasks here carry a range");
        (lo / WIDTH).abs_diff(focus) as f64
    })?;

    // A task for one host, one for every worker, and a remote panic.
    let host = q.remotes()[0].hostname.clone();
    let on_host = QueuedWorkerTask::without_callback((), whoami, host.as_str());
    let (id, pid) = ptools_queue::execute_worker_task(on_host)?;
    println!("pinned to host {host}: ran on worker {id} (pid {pid})");
    let every = QueuedWorkerTask::new(
        (),
        whoami,
        |_, r: ptools_queue::Result<(usize, u32)>| {
            if let Ok((id, pid)) = r {
                println!("all-workers task: worker {id} (pid {pid})");
            }
        },
        Target::All,
    );
    ptools_queue::queue_worker_task(every)?;
    let unlucky = QueuedWorkerTask::without_callback(13, refuse, Target::Any).priority(-1.0);
    match ptools_queue::execute_worker_task(unlucky) {
        Ok(v) => println!("unexpected: {v}"),
        Err(e) => println!("a remote panic is an outcome: {e}"),
    }

    if !q.wait_idle_timeout(Duration::from_secs(120)) {
        return Err("the queue did not finish in 2 minutes".into());
    }
    let done = done.lock().unwrap();
    let order: Vec<u64> = done.iter().map(|d| d.0).collect();
    let total: u64 = done.iter().map(|d| d.1).sum();
    println!(
        "{} ranges in {:.2?}: {total} primes below {}",
        done.len(),
        t0.elapsed(),
        RANGES * WIDTH
    );
    println!("first done (focus {}): {:?}", RANGES / 4, &order[..8]);
    println!(
        "last done (focus then {focus}): {:?}",
        &order[order.len() - 8..]
    );
    println!("counts: {:?}", q.counts());
    ptools_workerset::rmprocs(&ids)?;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    ptools_workerset::init();
    run()
}
