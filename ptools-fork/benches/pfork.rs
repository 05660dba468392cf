//! `pfork(n, trivial)` against a raw fork / pipe / waitpid loop written with libc, measured in
//! the same run (`pfork/ptools/<n>` against `pfork/raw/<n>`), then the same with 1 GiB
//! resident in the parent (`pfork_1gib/...`), where the cost of `fork` itself (copying the
//! page tables) dominates.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

mod raw;
use raw::raw_fork;

fn ptools_fork(n: usize) -> Vec<u64> {
    ptools_fork::pfork(n, |i| i as u64).expect("pfork")
}

fn bench_pair(c: &mut Criterion, group: &str, ns: &[usize], samples: usize) {
    let mut g = c.benchmark_group(group);
    g.sample_size(samples);
    for &n in ns {
        g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, &n| {
            b.iter(|| black_box(raw_fork(n)))
        });
        g.bench_with_input(BenchmarkId::new("ptools", n), &n, |b, &n| {
            b.iter(|| black_box(ptools_fork(n)))
        });
    }
    g.finish();
}

fn trivial(c: &mut Criterion) {
    assert_eq!(raw_fork(3), [0, 1, 2]);
    assert_eq!(ptools_fork(3), [0, 1, 2]);
    bench_pair(c, "pfork", &[2, 8, 32], 100);
}

fn resident_1gib(c: &mut Criterion) {
    // 1 GiB written page by page, so every page is resident and mapped in the parent.
    let mut big = vec![0u8; 1 << 30];
    for page in big.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&big);
    // Each fork copies the page tables of 1 GiB (about 2 MiB of them): few samples suffice.
    bench_pair(c, "pfork_1gib", &[2, 8], 10);
    drop(black_box(big));
}

criterion_group!(benches, trivial, resident_1gib);
criterion_main!(benches);
