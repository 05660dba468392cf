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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// The baseline: what a careful C programmer writes. Fork `n` children, each writes its
/// 8-byte result into its own pipe and `_exit`s; the parent reads each pipe and reaps each
/// child by pid. No framing, no encoding, no timeout, no panic handling, no parent-death
/// signal, no thread check.
fn raw_fork(n: usize) -> Vec<u64> {
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let mut fds = [-1; 2];
        // SAFETY: `fds` is a valid, writable array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these descriptors; nothing else owns them.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the bench process is single-threaded where it forks (criterion measures on
        // the main thread); the child only calls write and _exit, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v = (i as u64).to_le_bytes();
            // SAFETY: `v` is valid for 8 bytes; _exit never returns.
            unsafe {
                libc::write(w.as_raw_fd(), v.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        drop(w);
        children.push((pid, r));
    }
    children
        .into_iter()
        .map(|(pid, r)| {
            let mut v = [0u8; 8];
            // SAFETY: `v` is valid for writes of 8 bytes. The 8 bytes come in one write,
            // which a pipe delivers whole (below PIPE_BUF).
            let got = unsafe { libc::read(r.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
            assert_eq!(got, 8);
            let mut status = 0;
            // SAFETY: `status` is a valid int; `pid` is our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            u64::from_le_bytes(v)
        })
        .collect()
}

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
    for n in [2, 8, 32] {
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
            "n={n:>2}  raw p10 {r10:>8.0} p50 {r50:>8.0}   ptools p10 {p10:>8.0} p50 {p50:>8.0}   ratio p10 {:.2} p50 {:.2}",
            p10 / r10,
            p50 / r50
        );
    }
}
