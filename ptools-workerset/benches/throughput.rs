//! Calls per second through a first-free `WorkerSet` with many callers, pipelined
//! `remotecall`, `pmap` items per second, `addprocs(2)` start-up and a worker's resident
//! memory (printed).

ptools_workerset::enable_test_support!();

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ptools_workerset::{Cluster, Mode, WorkerSet};

fn add1(x: u64) -> u64 {
    x + 1
}

fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn dispatch(c: &mut Criterion) {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    // Let the workers settle, then report their memory once.
    cluster.remotecall_fetch(ids[0], add1, 0).unwrap();
    for &id in &ids {
        let pid = cluster.pid(id).unwrap();
        eprintln!(
            "worker {id} (pid {pid}) resident memory: {:?} KiB",
            rss_kib(pid)
        );
    }
    let ws = WorkerSet::with_cluster(&cluster, &ids, Mode::FirstFree).unwrap();

    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    for callers in [2usize, 8] {
        g.bench_function(BenchmarkId::new("first_free_2_workers", callers), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(callers as u64);
                let t0 = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..callers {
                        let ws = &ws;
                        s.spawn(move || {
                            for i in 0..per {
                                black_box(ws.remotecall_fetch(add1, i).unwrap());
                            }
                        });
                    }
                });
                t0.elapsed()
                    .mul_f64(iters as f64 / (per * callers as u64) as f64)
            })
        });
    }
    g.bench_function("pipelined_remotecall_2_workers", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            let mut window = std::collections::VecDeque::with_capacity(1024);
            for i in 0..iters {
                if window.len() == 1024 {
                    let r: ptools_workerset::RemoteRef<u64> = window.pop_front().unwrap();
                    black_box(r.fetch().unwrap());
                }
                window.push_back(cluster.remotecall(ids[(i & 1) as usize], add1, i).unwrap());
            }
            for r in window {
                black_box(r.fetch().unwrap());
            }
            t0.elapsed()
        })
    });
    g.finish();

    // The fixed cost of pmap: 10^4 trivial items, against the same loop in this process.
    let mut g = c.benchmark_group("pmap_small");
    let small: Vec<u64> = (0..10_000).collect();
    g.throughput(Throughput::Elements(small.len() as u64));
    g.bench_function("trivial_1e4_items_2_workers", |b| {
        b.iter(|| black_box(ws.pmap(add1, small.iter().copied()).unwrap()))
    });
    g.bench_function("sequential_1e4_items", |b| {
        b.iter(|| {
            black_box(
                black_box(&small)
                    .iter()
                    .map(|&x| add1(x))
                    .collect::<Vec<u64>>(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pmap");
    let n = 1_000_000u64;
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    let items: Vec<u64> = (0..n).collect();
    g.bench_function("trivial_1e6_items_2_workers", |b| {
        b.iter(|| black_box(ws.pmap(add1, items.iter().copied()).unwrap()))
    });
    g.finish();
}

fn startup(c: &mut Criterion) {
    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    g.bench_function("addprocs_2", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cluster = Cluster::new();
                let t0 = Instant::now();
                black_box(cluster.addprocs(2).unwrap());
                total += t0.elapsed();
                drop(cluster);
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = dispatch, startup
}
criterion_main!(benches);
