//! Reading a run back: criterion's files, the run's record (peer lines, printed figures,
//! failures) and the machine, into the rows of the report.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use super::json::{Benchmark, ConfidenceInterval, Estimates};
use super::{Figure, Measured, PeerFigure, RUST_PEERS, Row, SCENARIOS, Source, bench_exists};

/// Reads one criterion result; `fresh_since` rejects results older than this run.
pub(crate) fn read_measured(
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
    let median = Estimates::parse(&text)?.median;
    let median_ns = median.point_estimate;
    let spread = match median.confidence_interval {
        Some(ConfidenceInterval {
            lower_bound: Some(lo),
            upper_bound: Some(hi),
        }) if median_ns > 0.0 => Some((hi - lo) / 2.0 / median_ns),
        _ => None,
    };
    // No `benchmark.json`, or one that does not read: the row simply has no throughput.
    let throughput = std::fs::read_to_string(dir.join("benchmark.json"))
        .ok()
        .and_then(|t| Benchmark::parse(&t).ok())
        .and_then(|b| b.throughput);
    Ok(Measured {
        median_ns,
        elements: throughput.as_ref().and_then(|t| t.elements),
        bytes: throughput.as_ref().and_then(|t| t.bytes),
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

pub(crate) fn collect(target: &Path, extra: &[String], fresh_since: Option<SystemTime>) -> Report {
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
                    if k.ends_with(".py") || k == RUST_PEERS {
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
    // Why a Rust peer key has no line: the crate failed as a whole, or printed no such key.
    let rust_missing = match facts.get(&format!("peer script {RUST_PEERS}")) {
        Some(why) => format!("bench/{RUST_PEERS}: {why}"),
        None => format!("no result from bench/{RUST_PEERS}"),
    };
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
            let rust = s
                .rust
                .iter()
                .map(|&k| {
                    let fig = match (&peers_skipped, peers.get(k)) {
                        (Some(why), _) => Err(why.clone()),
                        (None, Some(PeerFigure::Skipped(why))) => Err(why.clone()),
                        (None, Some(fig)) => Ok(fig.clone()),
                        (None, None) => Err(rust_missing.clone()),
                    };
                    (k, fig)
                })
                .collect();
            Row {
                scenario: *s,
                ptools,
                baseline,
                peer,
                rust,
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
pub(crate) fn machine() -> Vec<String> {
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
pub(crate) fn commit() -> String {
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

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
