//! Queue throughput end to end (100 000 trivial any-worker tasks with callbacks through 2
//! workers, against the same calls made directly from 2 threads), `set_priorities` over
//! 100 000 queued tasks, and queue + dequeue of one task at several queue sizes.

ptools_workerset::enable_test_support!();

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ptools_queue::{QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::Cluster;

fn add1(x: u64) -> u64 {
    x + 1
}

const N: u64 = 100_000;

fn throughput(c: &mut Criterion) {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    let q = TaskQueue::new(&cluster);
    q.prep_remotes().unwrap();
    let sum = Arc::new(AtomicU64::new(0));

    let mut g = c.benchmark_group("throughput");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("baseline_remotecall_fetch_2_threads_100k", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                std::thread::scope(|s| {
                    for &id in &ids {
                        let cluster = &cluster;
                        s.spawn(move || {
                            for i in 0..N / 2 {
                                black_box(cluster.remotecall_fetch(id, add1, i).unwrap());
                            }
                        });
                    }
                });
            }
            t0.elapsed()
        })
    });
    g.bench_function("any_worker_callbacks_2_workers_100k", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                for i in 0..N {
                    let sum = sum.clone();
                    let cb = move |_x: u64, r: ptools_queue::Result<u64>| {
                        sum.fetch_add(r.unwrap(), Ordering::Relaxed);
                    };
                    q.queue_worker_task(QueuedWorkerTask::new(i, add1, cb, Target::Any))
                        .unwrap();
                }
                assert!(q.wait_idle_timeout(Duration::from_secs(600)));
            }
            t0.elapsed()
        })
    });
    g.finish();
    eprintln!("counts after the throughput runs: {:?}", q.counts());
}

/// A paused queue holding `n` any-worker tasks.
fn filled(cluster: &Cluster, n: u64) -> TaskQueue {
    let q = TaskQueue::new(cluster);
    q.prep_remotes().unwrap();
    q.pause();
    for i in 0..n {
        let t = QueuedWorkerTask::without_callback(i, add1, Target::Any).priority(i as f64);
        q.queue_worker_task(t).unwrap();
    }
    q
}

fn priorities(c: &mut Criterion) {
    let cluster = Cluster::new();
    cluster.addprocs(1).unwrap();
    let q = filled(&cluster, N);
    let mut g = c.benchmark_group("set_priorities");
    g.sample_size(20);
    g.bench_function("reverse_100k_queued", |b| {
        b.iter(|| q.set_priorities(|_, _, p| -p).unwrap())
    });
    g.bench_function("from_data_100k_queued", |b| {
        b.iter(|| {
            q.set_priorities(|_, t, _| (*t.data::<u64>().unwrap() % 1000) as f64)
                .unwrap()
        })
    });
    g.finish();
    drop(q);

    let mut g = c.benchmark_group("queue_dequeue_one");
    for n in [1_000u64, 10_000, 100_000] {
        let q = filled(&cluster, n);
        let mut p = 0.0;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                // A priority in the middle of the queue, so the trees are searched.
                p = (p + 7919.0) % n as f64;
                let t = QueuedWorkerTask::without_callback(0, add1, Target::Any).priority(p);
                let id = q.queue_worker_task(t).unwrap();
                black_box(q.dequeue_worker_task(id))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, throughput, priorities);
criterion_main!(benches);
