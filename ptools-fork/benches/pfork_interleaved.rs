//! `pfork(n, trivial)` against the raw fork / pipe / waitpid loop, interleaved: each round
//! runs one raw and one ptools iteration back to back, so load from other processes on a
//! shared machine hits both alike. Prints the 10th and 50th percentiles and their ratios.
//! Not a criterion bench: criterion measures one function after the other, and on a busy
//! machine the load can change between the two.
//!
//! ```text
//! cargo bench -p ptools-fork --bench pfork_interleaved [-- ROUNDS]
//! ```

use std::hint::black_box;
use std::time::Instant;

mod raw;
use raw::raw_fork;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // The first free argument that parses is the number of rounds (cargo bench passes
    // `--bench`, and criterion-style flags are ignored).
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(300);
    println!("pfork interleaved, {rounds} rounds; times in microseconds");
    for n in [1, 2, 8, 32, 128] {
        let (mut raw, mut pt) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
        for _ in 0..rounds {
            let t = Instant::now();
            black_box(raw_fork(n));
            raw.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            black_box(ptools_fork::pfork(n, |i| i as u64).expect("pfork"));
            pt.push(t.elapsed().as_secs_f64() * 1e6);
        }
        raw.sort_by(f64::total_cmp);
        pt.sort_by(f64::total_cmp);
        let (r10, r50, p10, p50) = (
            percentile(&raw, 0.1),
            percentile(&raw, 0.5),
            percentile(&pt, 0.1),
            percentile(&pt, 0.5),
        );
        println!(
            "n={n:>3}  raw p10 {r10:>8.0} p50 {r50:>8.0}   ptools p10 {p10:>8.0} p50 {p50:>8.0}   ratio p10 {:.2} p50 {:.2}",
            p10 / r10,
            p50 / r50
        );
    }
}
