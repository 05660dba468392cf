//! Queue throughput end to end (100 000 trivial any-worker tasks with callbacks through 2
//! workers, against the same calls made directly from 2 threads), the same at 10^4, 10^5
//! and 10^6 tasks (the cost per task must not grow with the queue's size), dropping a
//! paused queue and `set_priorities` at the same sizes (against the same work on plain
//! `std` structures), and queue + dequeue of one task at several queue sizes.

ptools_workerset::enable_test_support!();

use std::collections::{BTreeSet, VecDeque};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use parking_lot::Mutex;
use ptools_queue::{QueuedWorkerTask, Target, TaskQueue};
use ptools_workerset::Cluster;

fn add1(x: u64) -> u64 {
    x + 1
}

const N: u64 = 100_000;

/// The sizes of the size curves.
const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

/// Queues `n` any-worker tasks with callbacks (adding their results to `sum`) and waits
/// until every callback has run.
fn run_tasks(q: &TaskQueue, sum: &Arc<AtomicU64>, n: u64) {
    for i in 0..n {
        let sum = sum.clone();
        let cb = move |_x: u64, r: ptools_queue::Result<u64>| {
            sum.fetch_add(r.unwrap(), Ordering::Relaxed);
        };
        q.queue_worker_task(QueuedWorkerTask::new(i, add1, cb, Target::Any))
            .unwrap();
    }
    assert!(q.wait_idle_timeout(Duration::from_secs(600)));
}

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
                run_tasks(&q, &sum, N);
            }
            t0.elapsed()
        })
    });

    // The size curve: flat sampling, one iteration per sample at 10^6 tasks (about a
    // minute in all), several at the smaller sizes so that each sample lasts long enough
    // to ride out a shared machine's bursts; the cost per task is the figure to compare
    // across sizes.
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(100));
    for n in SIZES {
        g.throughput(Throughput::Elements(n));
        g.measurement_time(per_sample(n, 0.5e-6, 1.0));
        g.bench_function(BenchmarkId::new("raw_boxed_fifo", n), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| raw_boxed_fifo(n)).sum())
        });
        g.measurement_time(per_sample(n, 4e-6, 5.0));
        g.bench_function(BenchmarkId::new("queue_size", n), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    run_tasks(&q, &sum, n);
                }
                t0.elapsed()
            })
        });
    }
    g.finish();
    eprintln!("counts after the throughput runs: {:?}", q.counts());
}

type RawJob = Box<dyn FnOnce() + Send>;

/// Baseline of the queue's own data-structure work for `n` tasks, without ptools: one
/// thread boxes `n` callbacks (each holding its data and a clone of a shared `Arc`, as a
/// queued task does) into a `Mutex<VecDeque>`, then two threads take and run them. All
/// are held at once before they run, as in the queue, whose workers lag far behind the
/// thread that queues. No remote call: what is left is allocation, memory and locks.
fn raw_boxed_fifo(n: u64) -> Duration {
    let sum = Arc::new(AtomicU64::new(0));
    let fifo: Mutex<VecDeque<RawJob>> = Mutex::new(VecDeque::new());
    let t0 = Instant::now();
    for i in 0..n {
        let sum = sum.clone();
        let job: RawJob = Box::new(move || {
            sum.fetch_add(add1(i), Ordering::Relaxed);
        });
        fifo.lock().push_back(job);
    }
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some(job) = fifo.lock().pop_front() else {
                        return;
                    };
                    job();
                }
            });
        }
    });
    let t = t0.elapsed();
    assert_eq!(sum.load(Ordering::Relaxed), n * (n + 1) / 2);
    t
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

/// A queued task without ptools: the same fields, the same size and the same one heap
/// block per task as the queue's entries (priority, sequence number, task number and
/// index, bucket, target, and the boxed task: data, function, callback slot, id).
#[allow(dead_code)] // Only held and dropped, as the queue's entries are.
struct RawEntry {
    prio: f64,
    seq: u64,
    task: (u64, u32),
    bucket: Option<Box<[usize]>>,
    target: Option<Arc<Target>>,
    job: Box<dyn std::any::Any + Send>,
}

#[allow(dead_code)]
struct RawPart {
    data: u64,
    method: fn(u64) -> u64,
    callback: Option<Box<dyn FnMut(u64, u64) + Send>>,
    id: (u64, u64, u32),
}

/// `n` raw entries, as `filled` queues them (priority `i`).
fn raw_filled(n: u64) -> Vec<RawEntry> {
    (0..n)
        .map(|i| RawEntry {
            prio: i as f64,
            seq: i,
            task: (i, i as u32),
            bucket: None,
            target: None,
            job: Box::new(RawPart {
                data: i,
                method: add1,
                callback: None,
                id: (1, i, i as u32),
            }),
        })
        .collect()
}

/// A pseudo-random priority for task data `x`, a different one for each `salt`: integers
/// below 2^20, so ties too at 10^6 tasks.
fn shuffled(x: u64, salt: u64) -> f64 {
    ((x ^ salt.wrapping_mul(0x5851_f42d_4c95_7f2d)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44)
        as f64
}

fn priorities(c: &mut Criterion) {
    let cluster = Cluster::new();
    cluster.addprocs(1).unwrap();
    // Queues are filled on first use, so that a filtered run skips the filling.
    let mut q100k = None;
    let mut g = c.benchmark_group("set_priorities");
    g.sample_size(20);
    g.bench_function("reverse_100k_queued", |b| {
        let q = q100k.get_or_insert_with(|| filled(&cluster, N));
        b.iter(|| q.set_priorities(|_, _, p| -p).unwrap())
    });
    g.bench_function("from_data_100k_queued", |b| {
        let q = q100k.get_or_insert_with(|| filled(&cluster, N));
        b.iter(|| {
            q.set_priorities(|_, t, _| (*t.data::<u64>().unwrap() % 1000) as f64)
                .unwrap()
        })
    });
    drop(q100k);

    // The size curve: a new pseudo-random priority from each task's data at every call,
    // so that every call reorders the whole queue. Against two baselines on plain `std`
    // structures holding the same entries: the usual way (new priorities, keys sorted by
    // `sort_unstable`, a `BTreeSet` built), and only the memory passes any way needs (the
    // entries read and their priorities written, a key written per entry and copied).
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(100));
    for n in SIZES {
        g.throughput(Throughput::Elements(n));
        g.measurement_time(per_sample(n, 0.3e-6, 1.0));
        let mut raw = None;
        let mut salt = 0;
        g.bench_function(BenchmarkId::new("raw_sort_btree", n), |b| {
            let raw = raw.get_or_insert_with(|| raw_filled(n));
            b.iter(|| {
                salt += 1;
                let mut keys: Vec<(u64, u64, u32)> = Vec::with_capacity(raw.len());
                for (i, e) in raw.iter_mut().enumerate() {
                    let data = e.job.downcast_ref::<RawPart>().unwrap().data;
                    e.prio = shuffled(data, salt);
                    keys.push((key(e.prio), e.seq, i as u32));
                }
                keys.sort_unstable();
                black_box(keys.into_iter().collect::<BTreeSet<_>>())
            })
        });
        g.bench_function(BenchmarkId::new("raw_memory_passes", n), |b| {
            let raw = raw.get_or_insert_with(|| raw_filled(n));
            b.iter(|| {
                salt += 1;
                let mut keys: Vec<(u64, u64, u32)> = Vec::with_capacity(raw.len());
                for (i, e) in raw.iter().enumerate() {
                    let data = e.job.downcast_ref::<RawPart>().unwrap().data;
                    keys.push((key(shuffled(data, salt)), e.seq, i as u32));
                }
                for k in &keys {
                    raw[k.2 as usize].prio = f64::from_bits(k.0);
                }
                black_box(VecDeque::from(keys.clone()))
            })
        });
        drop(raw);
        let mut q = None;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let q = q.get_or_insert_with(|| filled(&cluster, n));
            b.iter(|| {
                salt += 1;
                q.set_priorities(|_, t, _| shuffled(*t.data::<u64>().unwrap(), salt))
                    .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("drop_paused");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(100));
    for n in SIZES {
        g.throughput(Throughput::Elements(n));
        // The filling, not timed, is what takes long: few drops per sample (one at 10^6).
        g.measurement_time(per_sample(n, 0.05e-6, 0.2));
        g.bench_function(BenchmarkId::new("raw_vec", n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let raw = raw_filled(n);
                        let t0 = Instant::now();
                        drop(raw);
                        t0.elapsed()
                    })
                    .sum()
            })
        });
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let q = filled(&cluster, n);
                        let t0 = Instant::now();
                        drop(q);
                        t0.elapsed()
                    })
                    .sum()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("queue_dequeue_one");
    for n in [1_000u64, 10_000, 100_000] {
        let mut q = None;
        let mut p = 0.0;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let q = q.get_or_insert_with(|| filled(&cluster, n));
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

/// A measurement time for 10 samples of `n` tasks at `per_task` seconds each, at least
/// `floor` seconds (flat sampling: each sample runs as many iterations as fit in a tenth
/// of it, at least one).
fn per_sample(n: u64, per_task: f64, floor: f64) -> Duration {
    Duration::from_secs_f64((n as f64 * per_task * 10.0).max(floor))
}

/// An `f64` as a `u64` in the same order (`f64::total_cmp`'s).
fn key(p: f64) -> u64 {
    let b = p.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

criterion_group!(benches, throughput, priorities);
criterion_main!(benches);
