//! Server-task benchmarks, each beside its baseline in the same run.
//!
//! - `fill256/*`: the end-to-end job of issue 5: create a 256 MiB shared array, fill it
//!   through `pmap_stasks` with 1 or 2 server tasks (each fills its share), read a
//!   checksum in the master, release it. Baseline: `fill256/raw_memset`, the same job in
//!   one process with plain libc calls (`shm_open`, `ftruncate`, `mmap`, fill, checksum,
//!   `munmap`, `shm_unlink`). Workers are started outside the timing; the group (array
//!   creation, attach in every task, stop, unlink) is inside it. `stasks` reserves the
//!   pages in the tasks (the default), `stasks_master_reserve` in the master,
//!   `stasks_noreserve` not at all.
//! - `call/*`: the cost of one `pmap_stasks` of a trivial handler with 1 and 2 tasks,
//!   against one `remotecall_fetch` round trip of a trivial function
//!   (`call/remotecall_fetch`) to the same workers.

ptools_workerset::enable_test_support!();

use std::ffi::CString;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ptools_shm::{Prefix, ShmCfg};
use ptools_stasks::{Reserve, STasks, TaskContext, pmap_stasks};
use ptools_workerset::Cluster;

mod job;
use job::{PATTERN, WORDS, raw_job, stasks_job};

fn fill(c: &mut Criterion) {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).expect("addprocs");
    let cfgs = [ShmCfg::new::<u64>("big", WORDS).expect("cfg")];
    let expect = PATTERN.wrapping_mul(WORDS as u64);
    let name = CString::new(format!("/ptools_bench-raw-{}", std::process::id())).unwrap();

    let mut g = c.benchmark_group("fill256");
    g.sample_size(10);
    g.bench_function("raw_memset", |b| {
        b.iter(|| assert_eq!(black_box(raw_job(&name)), expect))
    });
    for n in [1, 2] {
        for (name, reserve) in [
            ("stasks", Reserve::Tasks),
            ("stasks_master_reserve", Reserve::Master),
            ("stasks_noreserve", Reserve::None),
        ] {
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| assert_eq!(stasks_job(&cluster, &ids[..n], &cfgs, reserve), expect))
            });
        }
    }
    g.finish();
}

fn echo(x: u64) -> u64 {
    x
}

fn echo_task(_: &mut TaskContext, x: u64) -> u64 {
    x
}

fn call(c: &mut Criterion) {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).expect("addprocs");
    let mut g = c.benchmark_group("call");
    g.bench_function("remotecall_fetch", |b| {
        b.iter(|| {
            cluster
                .remotecall_fetch(ids[0], echo, black_box(7))
                .unwrap()
        })
    });
    for n in [1, 2] {
        let h = STasks::builder()
            .cluster(&cluster)
            .workers(&ids[..n])
            .start(&[], &Prefix::job())
            .expect("start");
        g.bench_function(BenchmarkId::new("pmap_stasks", n), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    black_box(pmap_stasks(&h, echo_task, vec![7u64; n]).unwrap());
                }
                t0.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, call, fill);
criterion_main!(benches);
