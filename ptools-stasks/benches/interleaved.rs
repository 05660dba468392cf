//! The 256 MiB end-to-end job of `stasks.rs`, measured round-robin: every round runs each
//! variant once (the raw single-process baseline, 1 and 2 server tasks, and the Python
//! peer from `bench/peers/shm.py` when python3 with numpy is there), so a load that
//! drifts during the run weighs on all of them alike. Prints the median and the minimum
//! of each over the rounds.
//!
//! `cargo bench -p ptools-stasks --bench interleaved [-- --rounds N]` (default 15).
//! `PTOOLS_BENCH_PYTHON` names the interpreter (default `python3`).

ptools_workerset::enable_test_support!();

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use ptools_shm::ShmCfg;
use ptools_stasks::Reserve;
use ptools_workerset::Cluster;

mod job;
use job::{PATTERN, WORDS, raw_job, stasks_job};

/// The Python peer, kept running: one line in, one job, its seconds out.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

const PEER: &str = r#"
import multiprocessing, sys, time
sys.path.insert(0, sys.argv[1])
import shm as peer
if peer.np is None:
    print("no numpy", flush=True)
    sys.exit(0)
with multiprocessing.Pool(2) as pool:
    peer.job(pool)
    print("ready", flush=True)
    for line in sys.stdin:
        t0 = time.perf_counter()
        peer.job(pool)
        print(f"{time.perf_counter() - t0:.6f}", flush=True)
"#;

impl Peer {
    fn start() -> Option<Peer> {
        let python = std::env::var("PTOOLS_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/peers");
        let mut child = Command::new(&python)
            .args(["-B", "-c", PEER, peers])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("python peer skipped: cannot run {python}: {e}"))
            .ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = BufReader::new(child.stdout.take()?);
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        if first.trim() != "ready" {
            eprintln!("python peer skipped: {}", first.trim());
            let _ = child.wait();
            return None;
        }
        Some(Peer {
            child,
            stdin: Some(stdin),
            stdout,
        })
    }

    fn run(&mut self) -> Option<f64> {
        writeln!(self.stdin.as_mut()?, "go").ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        line.trim().parse().ok()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // End of input ends the peer's loop; it shuts its pool down and exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery: nothing to list
    }
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(15usize);
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).expect("addprocs");
    let cfgs = [ShmCfg::new::<u64>("big", WORDS).expect("cfg")];
    let expect = PATTERN.wrapping_mul(WORDS as u64);
    let name = CString::new(format!("/ptools_bench-il-{}", std::process::id())).unwrap();
    let mut peer = Peer::start();

    let names = [
        "raw_memset (1 process)",
        "stasks/1",
        "stasks/2",
        "stasks_master_reserve/2",
        "python shared_memory+numpy+Pool(2)",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        for (k, times) in times.iter_mut().enumerate() {
            let t0 = Instant::now();
            let secs = match k {
                0 => {
                    assert_eq!(raw_job(&name), expect);
                    t0.elapsed().as_secs_f64()
                }
                1 => {
                    assert_eq!(
                        stasks_job(&cluster, &ids[..1], &cfgs, Reserve::Tasks),
                        expect
                    );
                    t0.elapsed().as_secs_f64()
                }
                2 => {
                    assert_eq!(stasks_job(&cluster, &ids, &cfgs, Reserve::Tasks), expect);
                    t0.elapsed().as_secs_f64()
                }
                3 => {
                    assert_eq!(stasks_job(&cluster, &ids, &cfgs, Reserve::Master), expect);
                    t0.elapsed().as_secs_f64()
                }
                _ => match peer.as_mut().and_then(Peer::run) {
                    Some(s) => s,
                    None => continue,
                },
            };
            times.push(secs * 1e3);
        }
    }
    drop(peer);
    println!("interleaved, {rounds} rounds (256 MiB: create, fill, checksum, release):");
    let base = median(&times[0]);
    for (n, t) in names.iter().zip(&times) {
        if t.is_empty() {
            println!("  {n:36} skipped");
            continue;
        }
        let m = median(t);
        let min = t.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  {n:36} median {m:7.1} ms   min {min:7.1} ms   {:.2}x raw",
            m / base
        );
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
