//! Running the bench binaries and the peer scripts, relaying their output and picking
//! out the figures that are not in criterion's files.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{PEER_SCRIPTS, RUST_PEERS, SCENARIOS, Source};

/// A criterion filter matching exactly the ids the table reads from this bench, so the
/// benches nobody reports on do not cost run time.
pub(crate) fn filter(package: &str, bench: &str) -> String {
    let mut ids = Vec::new();
    for s in SCENARIOS
        .iter()
        .filter(|s| (s.package, s.bench) == (package, bench))
    {
        if let Source::Criterion { id, baseline } = s.source {
            for id in std::iter::once(id).chain(baseline) {
                let escaped: String = id
                    .chars()
                    .flat_map(|c| {
                        let special = "\\.+*?()|[]{}^$".contains(c);
                        special
                            .then_some('\\')
                            .into_iter()
                            .chain(std::iter::once(c))
                    })
                    .collect();
                if !ids.contains(&escaped) {
                    ids.push(escaped);
                }
            }
        }
    }
    format!("^({})$", ids.join("|"))
}

/// Whether a bench binary is one of those that print their figures (not criterion).
pub(crate) fn prints_figures(package: &str, bench: &str) -> bool {
    SCENARIOS.iter().any(|s| {
        (s.package, s.bench) == (package, bench) && matches!(s.source, Source::Printed { .. })
    })
}

/// What a bench run yields beside criterion's files: the largest worker resident memory
/// printed on stderr, and the figures a non-criterion bench printed on stdout.
pub(crate) type BenchOutput = (Option<u64>, Vec<(String, f64)>);

/// Runs one bench binary, relaying its output.
pub(crate) fn run_bench(package: &str, bench: &str, quick: bool) -> Result<BenchOutput, String> {
    let mut args: Vec<String> = ["bench", "--package", package, "--bench", bench, "--"]
        .map(str::to_owned)
        .into();
    let printing = prints_figures(package, bench);
    if printing {
        // Each takes its number of rounds its own way (criterion's flags would be misread).
        let rounds: &[&str] = match (bench, quick) {
            ("pfork_interleaved", true) => &["100"],
            ("pfork_interleaved", false) => &["300"],
            (_, true) => &["--rounds", "5"],
            (_, false) => &["--rounds", "15"],
        };
        args.extend(rounds.iter().map(|a| (*a).to_owned()));
    } else {
        args.push(filter(package, bench));
        if quick {
            for a in ["--warm-up-time", "0.5", "--measurement-time", "1"] {
                args.push(a.to_owned());
            }
        }
    }
    println!("\n$ cargo {}", args.join(" "));
    let t0 = Instant::now();
    let mut child = Command::new(crate::cargo())
        .args(&args)
        .current_dir(crate::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let bench_name = bench.to_owned();
    let out_reader = std::thread::spawn(move || {
        let mut figures = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if printing {
                figures.extend(printed_figures(&bench_name, &line));
            }
        }
        figures
    });
    let mut rss = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if let Some(kib) = worker_rss_kib(&line) {
                rss = Some(rss.map_or(kib, |r: u64| r.max(kib)));
            }
        }
    }
    let figures = out_reader.join().unwrap_or_default();
    let status = child.wait().map_err(|e| e.to_string())?;
    println!("  ({:.0} s)", t0.elapsed().as_secs_f64());
    if status.success() {
        Ok((rss, figures))
    } else {
        Err(format!(
            "`cargo bench -p {package} --bench {bench}` failed with {status}"
        ))
    }
}

/// Figures a non-criterion bench prints, as (id, nanoseconds).
///
/// - `pfork_interleaved` (ptools-fork) prints, per n,
///   `n= 8  raw p10 A p50 B   ptools p10 C p50 D   ratio ...` in microseconds; the ids are
///   `pfork_interleaved/{raw,ptools}/<n>` and the figure is p50.
/// - `death_latency` (ptools-workerset) prints `death <variant> p50 <µs> p99 <µs>`; the ids
///   are `death_latency/<variant>/{p50,p99}`.
/// - `interleaved` (ptools-stasks) prints, per variant,
///   `  stasks/2    median  512.3 ms   min ...`; the ids are `fill256_interleaved/<first
///   word of the variant>` (`raw_memset`, `stasks/1`, `stasks/2`, `python`, ...).
pub(crate) fn printed_figures(bench: &str, line: &str) -> Vec<(String, f64)> {
    if bench == "death_latency" {
        // `death <variant> p50 <µs> p99 <µs>`
        let t: Vec<&str> = line.split_whitespace().collect();
        return match t.as_slice() {
            ["death", variant, "p50", p50, "p99", p99] => [("p50", p50), ("p99", p99)]
                .into_iter()
                .filter_map(|(q, v)| {
                    let us = v.parse::<f64>().ok()?;
                    Some((format!("death_latency/{variant}/{q}"), us * 1e3))
                })
                .collect(),
            _ => Vec::new(),
        };
    }
    if bench == "interleaved" {
        let t: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = t.iter().position(|w| *w == "median") else {
            return Vec::new();
        };
        return match (
            t.first(),
            t.get(i + 1).and_then(|v| v.parse::<f64>().ok()),
            t.get(i + 2),
        ) {
            (Some(name), Some(ms), Some(&"ms")) if i > 0 => {
                vec![(format!("fill256_interleaved/{name}"), ms * 1e6)]
            }
            _ => Vec::new(),
        };
    }
    if bench != "pfork_interleaved" {
        return Vec::new();
    }
    let Some(rest) = line.trim_start().strip_prefix("n=") else {
        return Vec::new();
    };
    let t: Vec<&str> = rest.split_whitespace().collect();
    let Some(n) = t.first().and_then(|n| n.parse::<u32>().ok()) else {
        return Vec::new();
    };
    let p50 = |who: &str| {
        let i = t.iter().position(|w| *w == who)?;
        (t.get(i + 3) == Some(&"p50")).then_some(())?;
        t.get(i + 4)?.parse::<f64>().ok()
    };
    ["raw", "ptools"]
        .into_iter()
        .filter_map(|who| p50(who).map(|us| (format!("pfork_interleaved/{who}/{n}"), us * 1e3)))
        .collect()
}

/// Reads `resident memory: Some(1234) KiB` as the workerset bench prints it.
pub(crate) fn worker_rss_kib(line: &str) -> Option<u64> {
    let rest = line.split("resident memory: Some(").nth(1)?;
    rest.split(')').next()?.trim().parse().ok()
}

/// Runs every peer script with a time limit, then the Rust peers; returns their result
/// lines (or one `skipped` line per script that could not run).
pub(crate) fn run_peers(quick: bool) -> Vec<String> {
    let dir = crate::root().join("bench").join("peers");
    let mut lines = Vec::new();
    let limit = Duration::from_secs(if quick { 180 } else { 600 });
    for script in PEER_SCRIPTS {
        let mut cmd = Command::new("python3");
        // -B: leave no __pycache__ in the source tree.
        cmd.arg("-B").arg(script).current_dir(&dir);
        if quick {
            cmd.arg("--quick");
        }
        println!(
            "\n$ (cd bench/peers && python3 -B {script}{})",
            if quick { " --quick" } else { "" }
        );
        lines.extend(run_limited(cmd, script, "python3", limit));
    }
    lines.extend(run_rust_peers(quick, limit));
    lines
}

/// The manifest of the Rust peers: a crate of its own workspace, so that the project's
/// builds (and CI) never compile procspawn and ipc-channel.
fn rust_peers_manifest() -> std::path::PathBuf {
    crate::root()
        .join("bench")
        .join("rust-peers")
        .join("Cargo.toml")
}

/// Builds `bench/rust-peers` (its first build fetches and compiles its dependencies: a
/// limit of its own), then runs it with `limit`. Any failure is one `rust-peers skipped`
/// line, so the report shows the Rust peers as not run and goes on.
pub(crate) fn run_rust_peers(quick: bool, limit: Duration) -> Vec<String> {
    let manifest = rust_peers_manifest();
    let cargo_args = |sub: &str| -> Vec<String> {
        vec![
            sub.to_owned(),
            "--release".to_owned(),
            "--quiet".to_owned(),
            "--manifest-path".to_owned(),
            manifest.display().to_string(),
        ]
    };
    println!("\n$ cargo build --release --manifest-path bench/rust-peers/Cargo.toml -j2");
    let mut build = Command::new(crate::cargo());
    build.args(cargo_args("build")).arg("-j2");
    let built = run_limited(build, RUST_PEERS, "cargo", Duration::from_secs(900));
    if let Some(skipped) = built.into_iter().find(|l| l.starts_with(RUST_PEERS)) {
        return vec![skipped.replace("failed with", "build failed with")];
    }
    println!(
        "\n$ cargo run --release --manifest-path bench/rust-peers/Cargo.toml{}",
        if quick { " -- --quick" } else { "" }
    );
    let mut run = Command::new(crate::cargo());
    run.args(cargo_args("run"));
    if quick {
        run.args(["--", "--quick"]);
    }
    run_limited(run, RUST_PEERS, "cargo", limit)
}

/// Runs one peer command with a time limit, relaying its stdout; returns its stdout lines,
/// and a `<name> skipped <reason>` line if it could not start, failed or overran.
fn run_limited(mut cmd: Command, name: &str, program: &str, limit: Duration) -> Vec<String> {
    let mut lines = Vec::new();
    let mut child = match cmd.stdout(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => return vec![format!("{name}\tskipped\tcannot run {program}: {e}")],
    };
    // Read stdout on a thread so the time limit can be enforced here.
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| println!("  {l}"))
            .collect::<Vec<_>>()
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                // Past the limit: end this child (only ours, by its handle).
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    lines.extend(reader.join().unwrap_or_default());
    match status {
        Some(s) if s.success() => {}
        Some(s) => lines.push(format!("{name}\tskipped\tfailed with {s}")),
        None => lines.push(format!(
            "{name}\tskipped\tkilled after {} s",
            limit.as_secs()
        )),
    }
    lines
}
