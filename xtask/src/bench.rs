//! `cargo xtask bench`: runs the criterion benches of every facility (and, with `--peers`,
//! the Python peer scripts in `bench/peers/`) and writes `BENCHMARKS.md` with the plot
//! `docs/benchmarks.svg`.
//!
//! The scenarios are one data table, [`SCENARIOS`]: a line names the criterion id of
//! ptools' bench, the id of its same-run baseline, the target and the peer it is compared
//! with. Figures are read back from criterion's `estimates.json` (the median's
//! `point_estimate`, in nanoseconds) and `benchmark.json` (the throughput, if any), never
//! typed in. A result older than the run (its bench failed, or does not exist yet) is shown
//! as "not measured" with the reason.

mod json;
mod svg;
#[cfg(test)]
mod test;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use json::Json;

/// What a scenario is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// ptools' median at most this many times its baseline's.
    Ratio(f64),
    /// At least this many items per second.
    MinRate(f64),
    /// A median of at most this many nanoseconds.
    MaxTime(f64),
    /// Faster than the Python peer, time per item.
    BeatPeer,
    /// No target: the figure is reported.
    Reported,
}

/// Which panel of the plot a scenario goes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Plot {
    /// Time per iteration (shorter is better).
    Time,
    /// Items per second (longer is better).
    Rate,
    /// Not plotted.
    None,
}

/// Where ptools' figure comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Source {
    /// A criterion benchmark and, if any, its baseline in the same bench binary.
    Criterion {
        id: &'static str,
        baseline: Option<&'static str>,
    },
    /// Medians a bench that is not criterion's prints on stdout (ids as named by
    /// [`printed_figures`]).
    Printed {
        id: &'static str,
        baseline: Option<&'static str>,
    },
    /// The resident memory of an idle worker, printed by the bench on stderr as
    /// `... resident memory: Some(<KiB>) KiB`.
    WorkerRss,
}

/// One row of BENCHMARKS.md.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) package: &'static str,
    pub(crate) bench: &'static str,
    pub(crate) source: Source,
    pub(crate) target: Target,
    /// The key a peer script prints for the same scenario.
    pub(crate) peer: Option<&'static str>,
    pub(crate) plot: Plot,
}

const fn crit(
    name: &'static str,
    (package, bench): (&'static str, &'static str),
    id: &'static str,
    baseline: Option<&'static str>,
    target: Target,
    peer: Option<&'static str>,
    plot: Plot,
) -> Scenario {
    let source = Source::Criterion { id, baseline };
    Scenario {
        name,
        package,
        bench,
        source,
        target,
        peer,
        plot,
    }
}

/// A row whose figures a non-criterion bench prints (see [`printed_figures`]).
const fn printed(
    name: &'static str,
    at: (&'static str, &'static str),
    id: &'static str,
    baseline: Option<&'static str>,
    target: Target,
    peer: Option<&'static str>,
    plot: Plot,
) -> Scenario {
    let mut s = crit(name, at, id, baseline, target, peer, plot);
    s.source = Source::Printed { id, baseline };
    s
}

use Plot as P;
use Target::{BeatPeer, MaxTime, MinRate, Ratio, Reported};

// The bench binaries: (package, `[[bench]]` name).
const RT: (&str, &str) = ("ptools-workerset", "round_trip");
const TP: (&str, &str) = ("ptools-workerset", "throughput");
const FORK: (&str, &str) = ("ptools-fork", "pfork");
const FORK_IL: (&str, &str) = ("ptools-fork", "pfork_interleaved");
const SHM: (&str, &str) = ("ptools-shm", "shm_cycle");
const ST: (&str, &str) = ("ptools-stasks", "stasks");
const ST_IL: (&str, &str) = ("ptools-stasks", "interleaved");
const Q: (&str, &str) = ("ptools-queue", "queue");

/// The scenarios, one per line: name, package, bench, ptools' criterion id, the baseline's,
/// the target (from each facility's issue, as its `benches/README.md` states it), the peer
/// key and the plot panel.
#[rustfmt::skip]
pub(crate) const SCENARIOS: &[Scenario] = &[
    crit("remotecall_fetch round trip (u64)", RT, "round_trip/remotecall_fetch_u64", Some("round_trip/raw_socketpair_u64"), Ratio(1.5), Some("py_processpool_round_trip"), P::Time),
    crit("first-free throughput, 2 workers, 2 callers", TP, "dispatch/first_free_2_workers/2", None, MinRate(50_000.0), Some("py_pool_map_chunksize1"), P::Rate),
    crit("first-free throughput, 2 workers, 8 callers", TP, "dispatch/first_free_2_workers/8", None, MinRate(50_000.0), Some("py_pool_map_chunksize1"), P::Rate),
    crit("pipelined remotecall, 2 workers", TP, "dispatch/pipelined_remotecall_2_workers", None, MinRate(200_000.0), None, P::Rate),
    crit("pmap throughput, 10^6 trivial items, 2 workers", TP, "pmap/trivial_1e6_items_2_workers", None, MinRate(5e6), Some("py_pool_map_default"), P::Rate),
    crit("pfork n = 2", FORK, "pfork/ptools/2", Some("pfork/raw/2"), Ratio(1.3), Some("py_fork_pickle_2"), P::Time),
    crit("pfork n = 8", FORK, "pfork/ptools/8", Some("pfork/raw/8"), Ratio(1.3), Some("py_fork_pickle_8"), P::Time),
    crit("pfork n = 32", FORK, "pfork/ptools/32", Some("pfork/raw/32"), Ratio(1.3), Some("py_fork_pickle_32"), P::Time),
    printed("pfork n = 2, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/2", Some("pfork_interleaved/raw/2"), Ratio(1.3), Some("py_fork_pickle_2"), P::None),
    printed("pfork n = 8, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/8", Some("pfork_interleaved/raw/8"), Ratio(1.3), Some("py_fork_pickle_8"), P::None),
    printed("pfork n = 32, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/32", Some("pfork_interleaved/raw/32"), Ratio(1.3), Some("py_fork_pickle_32"), P::None),
    crit("pfork n = 2, 1 GiB resident", FORK, "pfork_1gib/ptools/2", Some("pfork_1gib/raw/2"), Reported, Some("py_fork_pickle_1gib_2"), P::Time),
    crit("pfork n = 8, 1 GiB resident", FORK, "pfork_1gib/ptools/8", Some("pfork_1gib/raw/8"), Reported, Some("py_fork_pickle_1gib_8"), P::Time),
    crit("shm create cycle, 1 MiB, pages reserved", SHM, "shm_cycle/ptools_reserve/1MiB", Some("shm_cycle/raw_fallocate/1MiB"), Ratio(1.3), None, P::Time),
    crit("shm create cycle, 1 MiB, not reserved", SHM, "shm_cycle/ptools_noreserve/1MiB", Some("shm_cycle/raw/1MiB"), Ratio(2.0), Some("py_shm_cycle_1mib"), P::Time),
    crit("256 MiB create + fill, 1 process", SHM, "fill/ptools/256MiB", Some("fill/raw/256MiB"), Ratio(1.0), None, P::Time),
    crit("256 MiB job, 1 server task", ST, "fill256/stasks/1", Some("fill256/raw_memset"), Reported, None, P::Time),
    crit("256 MiB job, 2 server tasks", ST, "fill256/stasks/2", Some("fill256/raw_memset"), BeatPeer, Some("py_numpy_fill256_2proc"), P::Time),
    printed("256 MiB job, 1 server task, interleaved rounds", ST_IL, "fill256_interleaved/stasks/1", Some("fill256_interleaved/raw_memset"), Reported, None, P::None),
    printed("256 MiB job, 2 server tasks, interleaved rounds", ST_IL, "fill256_interleaved/stasks/2", Some("fill256_interleaved/raw_memset"), BeatPeer, Some("fill256_interleaved/python"), P::None),
    crit("queue of 100 000 tasks with callbacks, 2 workers", Q, "throughput/any_worker_callbacks_2_workers_100k", Some("throughput/baseline_remotecall_fetch_2_threads_100k"), MinRate(50_000.0), None, P::Rate),
    crit("set_priorities over 100 000 queued tasks", Q, "set_priorities/reverse_100k_queued", None, MaxTime(50e6), None, P::Time),
    crit("addprocs(2) start-up", TP, "startup/addprocs_2", None, Reported, Some("py_pool2_startup"), P::Time),
    Scenario { name: "worker resident memory (idle, after one call)", package: TP.0, bench: TP.1, source: Source::WorkerRss, target: Reported, peer: Some("py_worker_rss"), plot: P::None },
];

/// The peer scripts, and what each of their keys measures.
const PEER_SCRIPTS: &[&str] = &["workers.py", "fork.py", "shm.py"];

#[rustfmt::skip]
pub(crate) const PEER_LABELS: &[(&str, &str)] = &[
    ("py_processpool_round_trip", "ProcessPoolExecutor(1) submit().result()"),
    ("py_pool_map_chunksize1", "Pool(2).map, chunksize=1"),
    ("py_pool_map_default", "Pool(2).map, default chunksize"),
    ("py_fork_pickle_2", "os.fork + pickle, n = 2"),
    ("py_fork_pickle_8", "os.fork + pickle, n = 8"),
    ("py_fork_pickle_32", "os.fork + pickle, n = 32"),
    ("py_fork_pickle_1gib_2", "os.fork + pickle, n = 2, 1 GiB resident"),
    ("py_fork_pickle_1gib_8", "os.fork + pickle, n = 8, 1 GiB resident"),
    ("py_shm_cycle_1mib", "SharedMemory(create=True, 1 MiB), close, unlink"),
    ("py_numpy_fill256_2proc", "SharedMemory 256 MiB, numpy fill in Pool(2), sum, unlink"),
    ("py_pool2_startup", "multiprocessing.Pool(2) (fork) + first call"),
    ("py_worker_rss", "ProcessPoolExecutor worker VmRSS"),
    ("fill256_interleaved/python", "shm.py's job (numpy, Pool(2)), in the same interleaved rounds"),
];

fn peer_label(key: &str) -> &str {
    PEER_LABELS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, l)| l)
}

/// A figure read back from criterion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    /// Median time of one iteration.
    pub(crate) median_ns: f64,
    /// Items per iteration (criterion `Throughput::Elements`), if the bench declares them.
    pub(crate) elements: Option<f64>,
    /// Bytes per iteration (criterion `Throughput::Bytes`).
    pub(crate) bytes: Option<f64>,
    /// Half the width of the median's 95 % confidence interval, relative to the median
    /// (criterion's bootstrap); `None` for figures that are not criterion's.
    pub(crate) spread: Option<f64>,
}

/// A line printed by a peer script.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerFigure {
    Seconds { median: f64, items: f64 },
    Kib(f64),
    Skipped(String),
}

/// ptools' figure for one scenario.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Figure {
    Time(Measured),
    Kib(f64),
    /// Not measured, with the reason.
    Missing(String),
}

/// One rendered row: the scenario and what was measured for it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: Scenario,
    pub(crate) ptools: Figure,
    pub(crate) baseline: Option<Figure>,
    /// The peer's figure, or why there is none.
    pub(crate) peer: Option<Result<PeerFigure, String>>,
}

impl Row {
    /// ptools' median over the baseline's (time ratio: lower is better).
    pub(crate) fn ratio(&self) -> Option<f64> {
        match (&self.ptools, &self.baseline) {
            (Figure::Time(p), Some(Figure::Time(b))) if b.median_ns > 0.0 => {
                Some(p.median_ns / b.median_ns)
            }
            _ => None,
        }
    }

    /// Whether the target is met; `None` when there is no target or no figure.
    pub(crate) fn meets(&self) -> Option<bool> {
        match self.scenario.target {
            Target::Ratio(max) => self.ratio().map(|r| r <= max),
            Target::MinRate(min) => match &self.ptools {
                Figure::Time(m) => rate(m).map(|r| r >= min),
                _ => None,
            },
            Target::MaxTime(max) => match &self.ptools {
                Figure::Time(m) => Some(m.median_ns <= max),
                _ => None,
            },
            Target::BeatPeer => self.peer_factor().map(|f| f > 1.0),
            Target::Reported => None,
        }
    }

    /// How many times faster (or smaller, for memory) ptools is than the peer.
    pub(crate) fn peer_factor(&self) -> Option<f64> {
        match (&self.ptools, &self.peer) {
            (Figure::Time(m), Some(Ok(PeerFigure::Seconds { median, items }))) => {
                let ours = m.median_ns / m.elements.unwrap_or(1.0);
                let theirs = median * 1e9 / items;
                (ours > 0.0).then(|| theirs / ours)
            }
            (Figure::Kib(ours), Some(Ok(PeerFigure::Kib(theirs)))) if *ours > 0.0 => {
                Some(theirs / ours)
            }
            _ => None,
        }
    }
}

/// Items per second of a throughput bench.
pub(crate) fn rate(m: &Measured) -> Option<f64> {
    m.elements
        .filter(|_| m.median_ns > 0.0)
        .map(|e| e / (m.median_ns * 1e-9))
}

/// Parsed command line of `cargo xtask bench`.
#[derive(Debug, Default, Clone, Copy)]
struct Options {
    quick: bool,
    peers: bool,
    no_run: bool,
}

const USAGE: &str = "cargo xtask bench [--quick] [--peers] [--no-run]\n\n  \
    --quick   short criterion times (warm-up 0.5 s, measurement 1 s) and short peer budgets\n  \
    --peers   also run the Python peers in bench/peers/ (needs python3; numpy optional)\n  \
    --no-run  run nothing: re-render BENCHMARKS.md and the plot from the last results";

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    for a in args {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--peers" => o.peers = true,
            "--no-run" => o.no_run = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    Ok(Some(o))
}

/// Where results of a run are kept beside criterion's, for `--no-run`.
fn state_file(target: &Path) -> PathBuf {
    target.join("ptools-bench").join("extra.tsv")
}

fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    if dir.is_absolute() {
        dir
    } else {
        crate::root().join(dir)
    }
}

/// `cargo xtask bench ARGS`.
pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let Some(opts) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let started = Instant::now();
    let started_at = SystemTime::now();
    let target = target_dir();
    let load_before = load_average();
    let mut failures = Vec::new();
    // Key/value lines kept for `--no-run`: peer lines, worker memory, run facts.
    let mut extra: Vec<String> = Vec::new();

    if opts.no_run {
        let text = std::fs::read_to_string(state_file(&target)).map_err(|e| {
            format!(
                "--no-run needs an earlier run ({}: {e})",
                state_file(&target).display()
            )
        })?;
        extra = text.lines().map(str::to_owned).collect();
    } else {
        let before = crate::leaks::Snapshot::take(&target);
        extra.push(format!(
            "mode\t{}",
            if opts.quick { "quick" } else { "full" }
        ));
        extra.push(format!("date\t{}", utc_date(started_at)));
        extra.push(format!("commit\t{}", commit()));
        extra.push(format!("load_before\t{load_before}"));
        for (package, bench) in benches() {
            if !bench_exists(package, bench) {
                continue;
            }
            match run_bench(package, bench, opts.quick) {
                Ok((rss, figures)) => {
                    extra.push(format!("ran\t{package}\t{bench}"));
                    if let Some(kib) = rss {
                        extra.push(format!("ptools_worker_rss\tkib\t{kib}"));
                    }
                    for (id, ns) in figures {
                        extra.push(format!("printed\t{id}\t{ns}"));
                    }
                }
                Err(e) => {
                    eprintln!("xtask bench: {e}");
                    extra.push(format!("failed\t{package}\t{bench}\t{e}"));
                    failures.push(e);
                }
            }
        }
        if opts.peers {
            extra.extend(
                run_peers(opts.quick)
                    .into_iter()
                    .map(|l| format!("peer\t{l}")),
            );
        } else {
            extra.push("peers\tnot run (`--peers` not given)".to_owned());
        }
        // Benches create segments and processes too: a run must leave neither behind.
        if let Err(e) = crate::leaks::check(&before, &target) {
            eprintln!("xtask bench: {e}");
            failures.push(e);
        }
        extra.push(format!("load_after\t{}", load_average()));
        extra.push(format!("duration\t{:.0}", started.elapsed().as_secs_f64()));
        let state = state_file(&target);
        std::fs::create_dir_all(state.parent().expect("has a parent"))
            .and_then(|()| std::fs::write(&state, extra.join("\n") + "\n"))
            .map_err(|e| format!("cannot write {}: {e}", state.display()))?;
    }

    // With --no-run, results are as fresh as the run that `extra` describes.
    let fresh_since = if opts.no_run { None } else { Some(started_at) };
    let report = collect(&target, &extra, fresh_since);
    let md = render_markdown(&report);
    let svg_text = svg::render(&report.rows);
    let root = crate::root();
    std::fs::create_dir_all(root.join("docs")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("docs/benchmarks.svg"), svg_text).map_err(|e| e.to_string())?;
    std::fs::write(root.join("BENCHMARKS.md"), &md).map_err(|e| e.to_string())?;
    println!("\n{md}");
    println!(
        "xtask bench: wrote BENCHMARKS.md and docs/benchmarks.svg ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} bench run(s) failed: {}",
            failures.len(),
            failures.join("; ")
        ))
    }
}

/// The (package, bench) pairs of the table, each once, in table order.
fn benches() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for s in SCENARIOS {
        if !out.contains(&(s.package, s.bench)) {
            out.push((s.package, s.bench));
        }
    }
    out
}

fn bench_exists(package: &str, bench: &str) -> bool {
    crate::root()
        .join(package)
        .join("benches")
        .join(format!("{bench}.rs"))
        .is_file()
}

/// A criterion filter matching exactly the ids the table reads from this bench, so the
/// benches nobody reports on do not cost run time.
fn filter(package: &str, bench: &str) -> String {
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
fn prints_figures(package: &str, bench: &str) -> bool {
    SCENARIOS.iter().any(|s| {
        (s.package, s.bench) == (package, bench) && matches!(s.source, Source::Printed { .. })
    })
}

/// What a bench run yields beside criterion's files: the largest worker resident memory
/// printed on stderr, and the figures a non-criterion bench printed on stdout.
type BenchOutput = (Option<u64>, Vec<(String, f64)>);

/// Runs one bench binary, relaying its output.
fn run_bench(package: &str, bench: &str, quick: bool) -> Result<BenchOutput, String> {
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
/// - `interleaved` (ptools-stasks) prints, per variant,
///   `  stasks/2    median  512.3 ms   min ...`; the ids are `fill256_interleaved/<first
///   word of the variant>` (`raw_memset`, `stasks/1`, `stasks/2`, `python`, ...).
pub(crate) fn printed_figures(bench: &str, line: &str) -> Vec<(String, f64)> {
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

/// Runs every peer script with a time limit; returns their result lines (or one
/// `skipped` line per script that could not run).
fn run_peers(quick: bool) -> Vec<String> {
    let dir = crate::root().join("bench").join("peers");
    let mut lines = Vec::new();
    let limit = Duration::from_secs(if quick { 180 } else { 600 });
    for script in PEER_SCRIPTS {
        let mut cmd = Command::new("python3");
        // -B: leave no __pycache__ in the source tree.
        cmd.arg("-B")
            .arg(script)
            .current_dir(&dir)
            .stdout(Stdio::piped());
        if quick {
            cmd.arg("--quick");
        }
        println!(
            "\n$ (cd bench/peers && python3 -B {script}{})",
            if quick { " --quick" } else { "" }
        );
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                lines.push(format!("{script}\tskipped\tcannot run python3: {e}"));
                continue;
            }
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
            Some(s) => lines.push(format!("{script}\tskipped\tfailed with {s}")),
            None => lines.push(format!(
                "{script}\tskipped\tkilled after {} s",
                limit.as_secs()
            )),
        }
    }
    lines
}

/// Reads one criterion result; `fresh_since` rejects results older than this run.
fn read_measured(
    target: &Path,
    id: &str,
    fresh_since: Option<SystemTime>,
) -> Result<Measured, String> {
    let dir = target.join("criterion").join(id).join("new");
    let est = dir.join("estimates.json");
    let meta = std::fs::metadata(&est).map_err(|_| "no criterion result".to_owned())?;
    if let (Some(since), Ok(modified)) = (fresh_since, meta.modified())
        && modified < since
    {
        return Err("no result from this run (only an older one)".to_owned());
    }
    let text = std::fs::read_to_string(&est).map_err(|e| e.to_string())?;
    let estimates = Json::parse(&text)?;
    let median_ns = estimates
        .path(&["median", "point_estimate"])
        .and_then(Json::as_f64)
        .ok_or("estimates.json has no median")?;
    let bound = |b: &str| {
        estimates
            .path(&["median", "confidence_interval", b])
            .and_then(Json::as_f64)
    };
    let spread = match (bound("lower_bound"), bound("upper_bound")) {
        (Some(lo), Some(hi)) if median_ns > 0.0 => Some((hi - lo) / 2.0 / median_ns),
        _ => None,
    };
    let bench = std::fs::read_to_string(dir.join("benchmark.json"))
        .ok()
        .and_then(|t| Json::parse(&t).ok());
    let throughput = |kind: &str| {
        bench
            .as_ref()
            .and_then(|b| b.path(&["throughput", kind]))
            .and_then(Json::as_f64)
    };
    Ok(Measured {
        median_ns,
        elements: throughput("Elements"),
        bytes: throughput("Bytes"),
        spread,
    })
}

/// Parses a peer line (`key<TAB>seconds<TAB>median<TAB>items`, `key<TAB>kib<TAB>n`,
/// `key<TAB>skipped<TAB>reason`).
pub(crate) fn parse_peer_line(line: &str) -> Option<(String, PeerFigure)> {
    let f: Vec<&str> = line.split('\t').collect();
    let fig = match f.as_slice() {
        [_, "seconds", median, items] => PeerFigure::Seconds {
            median: median.parse().ok()?,
            items: items.parse().ok()?,
        },
        [_, "kib", kib] => PeerFigure::Kib(kib.parse().ok()?),
        [_, "skipped", reason] => PeerFigure::Skipped((*reason).to_owned()),
        _ => return None,
    };
    Some((f[0].to_owned(), fig))
}

/// Everything BENCHMARKS.md shows.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    /// Run facts (`mode`, `date`, `duration`, loads), from the state lines.
    pub(crate) facts: BTreeMap<String, String>,
    pub(crate) machine: Vec<String>,
}

fn collect(target: &Path, extra: &[String], fresh_since: Option<SystemTime>) -> Report {
    let mut facts = BTreeMap::new();
    let mut peers: BTreeMap<String, PeerFigure> = BTreeMap::new();
    let mut peers_skipped: Option<String> = None;
    let mut failed: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut rss = None;
    let mut printed_ns: BTreeMap<String, f64> = BTreeMap::new();
    let mut ran: Vec<(String, String)> = Vec::new();
    for line in extra {
        let (key, rest) = line.split_once('\t').unwrap_or((line, ""));
        match key {
            "peer" => {
                if let Some((k, fig)) = parse_peer_line(rest) {
                    if k.ends_with(".py") {
                        // A whole script failed: its scenarios say so below.
                        if let PeerFigure::Skipped(why) = fig {
                            facts.insert(format!("peer script {k}"), why);
                        }
                    } else {
                        peers.insert(k, fig);
                    }
                }
            }
            "peers" => peers_skipped = Some(rest.to_owned()),
            "ran" => {
                if let Some((p, b)) = rest.split_once('\t') {
                    ran.push((p.to_owned(), b.to_owned()));
                }
            }
            "printed" => {
                if let Some((id, ns)) = rest.split_once('\t')
                    && let Ok(ns) = ns.parse()
                {
                    printed_ns.insert(id.to_owned(), ns);
                }
            }
            "ptools_worker_rss" => rss = rest.split('\t').nth(1).and_then(|v| v.parse().ok()),
            "failed" => {
                let f: Vec<&str> = rest.splitn(3, '\t').collect();
                if let [p, b, why] = f.as_slice() {
                    failed.insert(((*p).to_owned(), (*b).to_owned()), (*why).to_owned());
                }
            }
            _ => {
                facts.insert(key.to_owned(), rest.to_owned());
            }
        }
    }
    let rows = SCENARIOS
        .iter()
        .map(|s| {
            let missing = |why: String| Figure::Missing(why);
            let why_none = if !bench_exists(s.package, s.bench) {
                Some(format!(
                    "bench `{}` of {} does not exist yet",
                    s.bench, s.package
                ))
            } else if let Some(why) = failed.get(&(s.package.to_owned(), s.bench.to_owned())) {
                Some(why.clone())
            } else if matches!(s.source, Source::Printed { .. })
                && !ran
                    .iter()
                    .any(|(p, b)| (p.as_str(), b.as_str()) == (s.package, s.bench))
            {
                // Printed figures exist only in the run's record; criterion's files are
                // checked for freshness instead.
                Some(format!(
                    "`cargo bench -p {} --bench {}` was not part of the recorded run",
                    s.package, s.bench
                ))
            } else {
                None
            };
            let read = |id: &str| match &why_none {
                Some(why) => missing(why.clone()),
                None => match read_measured(target, id, fresh_since) {
                    Ok(m) => Figure::Time(m),
                    Err(e) => missing(format!("`{id}`: {e}")),
                },
            };
            let (ptools, baseline) = match s.source {
                Source::Criterion { id, baseline } => (read(id), baseline.map(read)),
                Source::Printed { id, baseline } => {
                    // A printed figure is in the run's record only if the bench ran in it.
                    let get = |id: &str| match (printed_ns.get(id), &why_none) {
                        (Some(&median_ns), _) => Figure::Time(Measured {
                            median_ns,
                            elements: None,
                            bytes: None,
                            spread: None,
                        }),
                        (None, Some(why)) => missing(why.clone()),
                        (None, None) => missing(format!("the bench printed no figure for `{id}`")),
                    };
                    (get(id), baseline.map(get))
                }
                Source::WorkerRss => (
                    match (&why_none, rss) {
                        (Some(why), _) => missing(why.clone()),
                        (None, Some(kib)) => Figure::Kib(kib),
                        (None, None) => missing("the bench printed no resident memory".into()),
                    },
                    None,
                ),
            };
            let peer = s.peer.map(|k| match (&peers_skipped, peers.get(k)) {
                // A peer the bench ran itself, in its own rounds.
                _ if printed_ns.contains_key(k) => Ok(PeerFigure::Seconds {
                    median: printed_ns[k] * 1e-9,
                    items: 1.0,
                }),
                _ if k.contains('/') => Err(why_none.clone().unwrap_or_else(|| {
                    format!("the bench printed no figure for `{k}` (python3 with numpy missing?)")
                })),
                (Some(why), _) => Err(why.clone()),
                (None, Some(PeerFigure::Skipped(why))) => Err(why.clone()),
                (None, Some(fig)) => Ok(fig.clone()),
                (None, None) => Err("no result from the peer scripts".to_owned()),
            });
            Row {
                scenario: *s,
                ptools,
                baseline,
                peer,
            }
        })
        .collect();
    Report {
        rows,
        facts,
        machine: machine(),
    }
}

/// A description of this machine, one fact a line.
fn machine() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let l = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            l.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.0} GiB", kib / 1048576.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_owned(), |k| k.trim().to_owned());
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rustc = output("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into());
    let python = output(
        "python3",
        &[
            "-c",
            "import sys\ntry:\n import numpy; n = 'numpy ' + numpy.__version__\nexcept ImportError:\n n = 'no numpy'\nprint('Python', sys.version.split()[0] + ',', n)",
        ],
    )
    .unwrap_or_else(|| "no python3".into());
    vec![
        format!("{model}, {cores} cores available, {mem} RAM"),
        format!("Linux {kernel}; {rustc}; {python}"),
    ]
}

/// The commit the run measured, and whether the work tree differed from it.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(crate::root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    // Changes to Rust sources or manifests change what is measured; untracked files do not.
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if s.is_empty() => head,
        _ => format!("{head} (with uncommitted changes)"),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// `YYYY-MM-DD HH:MM UTC` (std has no calendar; this is the civil-from-days algorithm).
pub(crate) fn utc_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `1.23 µs`, three significant digits.
pub(crate) fn fmt_time(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", sig3(v))
}

/// `1.23 M/s`.
pub(crate) fn fmt_rate(per_s: f64) -> String {
    let (v, unit) = if per_s < 1e3 {
        (per_s, "")
    } else if per_s < 1e6 {
        (per_s / 1e3, " k")
    } else if per_s < 1e9 {
        (per_s / 1e6, " M")
    } else {
        (per_s / 1e9, " G")
    };
    format!("{}{unit}/s", sig3(v))
}

fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_kib(kib: f64) -> String {
    format!("{} MiB", sig3(kib / 1024.0))
}

fn fmt_figure(f: &Figure) -> String {
    match f {
        Figure::Time(m) => {
            let t = fmt_time(m.median_ns);
            let pm = match m.spread {
                Some(sp) if sp < 0.01 => " ±<1%".to_owned(),
                Some(sp) => format!(" ±{:.0}%", sp * 100.0),
                None => String::new(),
            };
            match (rate(m), m.bytes.filter(|_| m.median_ns > 0.0)) {
                (Some(r), _) if m.elements == Some(1.0) => {
                    format!("{} ({t}/call{pm})", fmt_rate(r))
                }
                (Some(r), _) => format!(
                    "{} ({t} per {}{pm})",
                    fmt_rate(r),
                    count(m.elements.unwrap_or(1.0))
                ),
                (None, Some(b)) => format!("{t}{pm} ({:.2} GB/s)", b / m.median_ns),
                (None, None) => format!("{t}{pm}"),
            }
        }
        Figure::Kib(k) => fmt_kib(*k),
        Figure::Missing(_) => "not measured (see below)".to_owned(),
    }
}

fn count(n: f64) -> String {
    if n >= 1e6 && n % 1e6 == 0.0 {
        format!("{}M", n / 1e6)
    } else if n >= 1e3 && n % 1e3 == 0.0 {
        format!("{}k", n / 1e3)
    } else {
        format!("{n}")
    }
}

fn fmt_peer(p: &PeerFigure) -> String {
    match p {
        PeerFigure::Seconds { median, items } if *items > 1.0 => {
            format!(
                "{} ({} per {})",
                fmt_rate(items / median),
                fmt_time(median * 1e9),
                count(*items)
            )
        }
        PeerFigure::Seconds { median, .. } => fmt_time(median * 1e9),
        PeerFigure::Kib(k) => fmt_kib(*k),
        PeerFigure::Skipped(why) => format!("skipped: {why}"),
    }
}

fn fmt_target(t: Target) -> String {
    match t {
        Target::Ratio(1.0) => "≤ 1× (as fast)".to_owned(),
        Target::Ratio(x) => format!("≤ {x}×"),
        Target::MinRate(r) => format!("≥ {}", fmt_rate(r)),
        Target::MaxTime(ns) => format!("≤ {}", fmt_time(ns)),
        Target::BeatPeer => "faster than the peer".to_owned(),
        Target::Reported => "reported".to_owned(),
    }
}

/// BENCHMARKS.md: the header, the table, the plot, how each figure was obtained and what
/// was not measured.
pub(crate) fn render_markdown(r: &Report) -> String {
    let fact = |k: &str| r.facts.get(k).map_or("?", String::as_str);
    let quick = fact("mode") == "quick";
    let mut o = String::new();
    let _ = writeln!(o, "# ptools benchmarks\n");
    let _ = writeln!(
        o,
        "Generated by `cargo xtask bench{}{}` on {}; do not edit by hand, re-run instead.\n",
        if quick { " --quick" } else { "" },
        if r.rows.iter().any(|row| matches!(row.peer, Some(Ok(_)))) {
            " --peers"
        } else {
            ""
        },
        fact("date")
    );
    let _ = writeln!(o, "- Machine: {}", r.machine.join("; "));
    if let Some(c) = r.facts.get("commit") {
        let _ = writeln!(o, "- Code: commit {c}");
    }
    let _ = writeln!(
        o,
        "- Run: {}, {} s in all (benches and peers, builds included); load average {} before, {} after. The machine is shared, so absolute times drift between runs: compare the ratios, which pit each figure against a baseline measured in the same run.",
        if quick {
            "quick mode (criterion warm-up 0.5 s, measurement 1 s; short peer budgets)"
        } else {
            "full mode (each bench's own criterion settings)"
        },
        fact("duration"),
        fact("load_before"),
        fact("load_after"),
    );
    for (k, v) in r.facts.iter().filter(|(k, _)| k.starts_with("peer script")) {
        let _ = writeln!(o, "- {k}: {v}");
    }
    let _ = writeln!(o, "\n## Results\n");
    let judged: Vec<bool> = r.rows.iter().filter_map(Row::meets).collect();
    let with_target = r
        .rows
        .iter()
        .filter(|row| row.scenario.target != Target::Reported)
        .count();
    let _ = writeln!(
        o,
        "{} of {with_target} targets met in this run ({} not judged: a figure is missing). \
         `±` is half the width of criterion's 95 % confidence interval of the median.\n",
        judged.iter().filter(|m| **m).count(),
        with_target - judged.len(),
    );
    let _ = writeln!(
        o,
        "| scenario | ptools (median) | baseline, same run | ratio | target | met | Python peer | peer (median) | ptools vs peer |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    for row in &r.rows {
        let s = &row.scenario;
        let id = match s.source {
            Source::Criterion { id, .. } => format!("<br>`{id}`"),
            Source::Printed { id, .. } => format!("<br>`{id}` (printed p50)"),
            Source::WorkerRss => format!("<br>`{}` bench output", s.bench),
        };
        let baseline_id = match s.source {
            Source::Criterion { baseline, .. } | Source::Printed { baseline, .. } => baseline,
            Source::WorkerRss => None,
        };
        let baseline = match (&row.baseline, baseline_id) {
            (Some(b), Some(bid)) => format!("{}<br>`{bid}`", fmt_figure(b)),
            _ => "-".to_owned(),
        };
        let ratio = row.ratio().map_or("-".to_owned(), |x| format!("{x:.2}×"));
        let met = match row.meets() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let (peer_name, peer_fig) = match (s.peer, &row.peer) {
            (Some(k), Some(Ok(p))) => (peer_label(k).to_owned(), fmt_peer(p)),
            (Some(k), Some(Err(why))) => (peer_label(k).to_owned(), format!("not run: {why}")),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        let vs = match (row.peer_factor(), &row.ptools) {
            (Some(f), Figure::Kib(_)) => format!("{f:.1}× smaller"),
            (Some(f), _) if (0.95..=1.05).contains(&f) => "about as fast".to_owned(),
            (Some(f), _) if f >= 1.0 => format!("{f:.1}× faster"),
            (Some(f), _) => format!("{:.1}× slower", 1.0 / f),
            (None, _) => "-".to_owned(),
        };
        let _ = writeln!(
            o,
            "| {}{id} | {} | {baseline} | {ratio} | {} | {met} | {peer_name} | {peer_fig} | {vs} |",
            s.name,
            fmt_figure(&row.ptools),
            fmt_target(s.target),
        );
    }
    let _ = writeln!(
        o,
        "\n![ptools against its baselines and the Python peers](docs/benchmarks.svg)\n"
    );
    o.push_str(HOW);
    let missing: Vec<String> = r
        .rows
        .iter()
        .flat_map(|row| {
            let name = row.scenario.name;
            let ours = std::iter::once(&row.ptools)
                .chain(row.baseline.as_ref())
                .filter_map(move |f| match f {
                    Figure::Missing(why) => Some(format!("- {name}: {why}")),
                    _ => None,
                });
            let peer = match (&row.peer, row.scenario.peer) {
                (Some(Err(why)), Some(k)) => {
                    Some(format!("- {name}, peer ({}): {why}", peer_label(k)))
                }
                _ => None,
            };
            ours.chain(peer)
        })
        .collect();
    let mut seen = Vec::new();
    let missing: Vec<String> = missing
        .into_iter()
        .filter(|m| {
            let new = !seen.contains(m);
            seen.push(m.clone());
            new
        })
        .collect();
    let _ = writeln!(o, "\n## Not measured\n");
    if missing.is_empty() {
        let _ = writeln!(o, "Every scenario was measured in this run.");
    } else {
        for m in missing {
            let _ = writeln!(o, "{m}");
        }
    }
    o
}

const HOW: &str = "\
## How the figures are obtained

- **ptools and baseline columns** are criterion medians of one iteration, read from
  `target/criterion/<id>/new/estimates.json` (the median's `point_estimate`); the criterion
  id is under each figure. Each bench's `benches/README.md` says what one iteration does.
  The baseline is the same work done with raw system calls (socketpair ping-pong, a raw
  fork/pipe/waitpid loop, raw `shm_open`/`mmap` cycles, `memset`) or, for the queue, the
  same calls made directly, in the same bench binary and run.
- **pfork, interleaved rounds** come from `ptools-fork/benches/pfork_interleaved.rs`, not
  criterion: each round runs one raw and one ptools iteration back to back, so load from
  other work on a shared machine hits both alike; the table shows the printed medians
  (p50, 300 rounds; 100 in quick mode).
- **256 MiB job, interleaved rounds** come from `ptools-stasks/benches/interleaved.rs`,
  not criterion: every round runs the raw job, the ptools variants and the Python job of
  `bench/peers/shm.py` once each, so drifting load weighs on all alike; the table shows the
  printed medians (15 rounds; 5 in quick mode), and the peer column is that same Python
  job from the same rounds.
- **±** after a criterion figure is half the width of the 95 % confidence interval of its
  median (criterion's bootstrap), relative to the median: a ratio whose two figures
  overlap within it says less than it seems.
- **ratio** is ptools' median over the baseline's: lower is better, and a `≤` target is the
  largest ratio allowed.
- **Throughput** rows divide the items per iteration (the bench's criterion `Throughput`)
  by the median; first-free dispatch counts one call per iteration.
- **256 MiB job** (ptools-stasks): create a 256 MiB shared array, fill it through
  `pmap_stasks` with 1 or 2 server tasks, checksum it in the master, stop and unlink; the
  baseline does the same job in one process with libc calls and `memset`; the peer is the
  same job with `shared_memory`, numpy and `Pool(2)`.
- **addprocs(2) start-up** is criterion's `iter_custom` around `Cluster::addprocs(2)` until
  both workers' handshakes are done; tearing the cluster down is outside the timing.
- **Worker resident memory** is `VmRSS` from `/proc/<pid>/status` of each of two idle
  workers after one call, printed by `ptools-workerset/benches/throughput.rs`; the table
  shows the larger. The peer figure is the same reading for a ProcessPoolExecutor worker.
- **Python peers** (`bench/peers/*.py`, run by `--peers` on the same machine in the same
  run) time each scenario in a loop bounded in count and in time and print the median per
  iteration; throughput peers divide their item count by it. They use the stdlib
  (`multiprocessing`, `concurrent.futures`, `shared_memory`, `os.fork`, `pickle`) and numpy
  for the 256 MiB job when it is installed (the job is skipped otherwise). Python's
  workers are forked, so they start without re-executing anything, while ptools starts its
  workers by running the executable again.
- **ptools vs peer** compares time per item (or resident memory).

## Re-run

```text
cargo xtask bench                  # the criterion benches, then BENCHMARKS.md and the plot
cargo xtask bench --peers          # the same, plus the Python peers (python3; numpy optional)
cargo xtask bench --quick --peers  # short criterion times and peer budgets
cargo xtask bench --no-run         # re-render from the last run's results
```

Set `CARGO_TARGET_DIR` to keep bench builds apart; results are read from that directory.
";
