//! Tests of the bench report: the scenario table's consistency, the parsers and the
//! rendering of BENCHMARKS.md and the plot, on made-up figures (no bench runs here).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::collect::{Report, parse_peer_line};
use super::render::{fmt_rate, fmt_time, render_markdown};
use super::run::{filter, printed_figures, worker_rss_kib};
use super::*;

fn measured(median_ns: f64, elements: Option<f64>) -> Figure {
    Figure::Time(Measured {
        median_ns,
        elements,
        bytes: None,
        spread: Some(0.02),
    })
}

fn scenario(name: &str) -> Scenario {
    *SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .or_else(|| SCENARIOS.iter().find(|s| s.name.starts_with(name)))
        .expect("scenario in the table")
}

fn report() -> Report {
    let rows = vec![
        // 12 µs against 10 µs: ratio 1.2 under a 1.5 target; the peer takes 240 µs.
        Row {
            scenario: scenario("remotecall_fetch round trip"),
            ptools: measured(12_000.0, None),
            baseline: Some(measured(10_000.0, None)),
            peer: Some(Ok(PeerFigure::Seconds {
                median: 240e-6,
                items: 1.0,
            })),
            // procspawn takes 36 µs; ipc-channel's build failed.
            rust: vec![
                (
                    "rs_procspawn_round_trip",
                    Ok(PeerFigure::Seconds {
                        median: 36e-6,
                        items: 1.0,
                    }),
                ),
                (
                    "rs_ipc_channel_round_trip",
                    Err("bench/rust-peers: build failed".into()),
                ),
            ],
        },
        // 10^6 items in 250 ms: 4 M/s, below the 5 M/s target; the peer does 2 M/s.
        Row {
            scenario: scenario("pmap throughput"),
            ptools: measured(250e6, Some(1e6)),
            baseline: None,
            peer: Some(Ok(PeerFigure::Seconds {
                median: 0.5,
                items: 1e6,
            })),
            rust: vec![],
        },
        Row {
            scenario: scenario("pfork n = 8"),
            ptools: Figure::Missing("bench `pfork` of ptools-fork does not exist yet".into()),
            baseline: Some(Figure::Missing(
                "bench `pfork` of ptools-fork does not exist yet".into(),
            )),
            peer: Some(Err("numpy is not installed".into())),
            rust: vec![],
        },
        Row {
            scenario: scenario("worker resident memory"),
            ptools: Figure::Kib(4096.0),
            baseline: None,
            peer: Some(Ok(PeerFigure::Kib(12288.0))),
            rust: vec![],
        },
    ];
    let facts: BTreeMap<String, String> = [
        ("mode", "quick"),
        ("date", "2026-11-25 02:00 UTC"),
        ("duration", "321"),
        ("load_before", "1.0"),
        ("load_after", "2.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Report {
        rows,
        facts,
        machine: vec!["a test machine".into()],
    }
}

#[test]
fn table_is_consistent() {
    let mut ids = Vec::new();
    for s in SCENARIOS {
        assert!(!s.name.is_empty());
        if let Some(k) = s.peer {
            assert!(
                PEER_LABELS.iter().any(|(key, _)| *key == k),
                "peer {k} has no label"
            );
        }
        for k in s.rust {
            assert!(rust_peer(k).is_some(), "Rust peer {k} has no label");
            assert!(
                s.rust.iter().filter(|o| *o == k).nth(1).is_none(),
                "{k} twice"
            );
        }
        if let Source::Criterion { id, baseline } | Source::Printed { id, baseline } = s.source {
            // One id may be read against two baselines (the 16 MiB payload against the
            // raw socketpair and against two memcpys), never twice against the same one.
            assert!(!ids.contains(&(id, baseline)), "{id} twice");
            ids.push((id, baseline));
            assert_ne!(Some(id), baseline);
        }
        if let Target::Ratio(_) = s.target {
            assert!(
                matches!(
                    s.source,
                    Source::Criterion {
                        baseline: Some(_),
                        ..
                    } | Source::Printed {
                        baseline: Some(_),
                        ..
                    }
                ),
                "{}: a ratio target needs a baseline",
                s.name
            );
        }
    }
}

#[test]
fn peer_scripts_print_only_labelled_keys() {
    let dir = crate::root().join("bench").join("peers");
    for script in PEER_SCRIPTS {
        let text = std::fs::read_to_string(dir.join(script)).expect("peer script exists");
        // Every `report*("py_...")` / `skip("py_...")` key in the script has a label.
        for piece in text
            .split("(\"py_")
            .skip(1)
            .chain(text.split("(f\"py_").skip(1))
        {
            let key: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '{')
                .collect();
            let key = format!("py_{key}");
            let known = PEER_LABELS.iter().any(|(k, _)| {
                *k == key || (key.contains('{') && k.starts_with(key.split('{').next().unwrap()))
            });
            assert!(known, "{script}: key {key} has no label");
        }
    }
}

#[test]
fn the_payload_curve_names_rows_of_the_table() {
    for &(_, id) in PAYLOAD_CURVE.points {
        assert!(
            SCENARIOS
                .iter()
                .any(|s| matches!(s.source, Source::Criterion { id: i, .. } if i == id)),
            "{id} is not in the table"
        );
    }
}

#[test]
fn rust_peers_print_only_labelled_keys() {
    let main = crate::root().join("bench/rust-peers/src/main.rs");
    let text = std::fs::read_to_string(main).expect("bench/rust-peers/src/main.rs");
    let mut seen = 0;
    for piece in text.split("\"rs_").skip(1) {
        let key: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let key = format!("rs_{key}");
        assert!(
            rust_peer(&key).is_some(),
            "rust-peers: key {key} has no label"
        );
        seen += 1;
    }
    assert!(seen >= RUST_PEER_LABELS.len(), "found only {seen} keys");
    // Every label is printed, and every key the table asks for exists.
    for (k, _, _) in RUST_PEER_LABELS {
        assert!(
            text.contains(&format!("\"{k}")),
            "rust-peers never prints {k}"
        );
    }
}

#[test]
fn collects_rust_peers_and_their_absence() {
    let none = std::path::Path::new("/nonexistent/target");
    let row = |r: &Report, name: &str| {
        let s = scenario(name);
        r.rows
            .iter()
            .find(|row| row.scenario.name == s.name)
            .expect("row")
            .clone()
    };
    let extra: Vec<String> = [
        "peer\trs_procspawn_round_trip\tseconds\t3.5e-5\t1",
        "peer\trs_ipc_channel_round_trip\tskipped\tno child",
        "peer\trs_procspawn_pool2_throughput\tseconds\t0.2\t2000",
    ]
    .map(str::to_owned)
    .into();
    let r = collect::collect(none, &extra, None);
    let rt = row(&r, "remotecall_fetch round trip (u64)");
    assert_eq!(
        rt.rust,
        vec![
            (
                "rs_procspawn_round_trip",
                Ok(PeerFigure::Seconds {
                    median: 3.5e-5,
                    items: 1.0
                })
            ),
            ("rs_ipc_channel_round_trip", Err("no child".to_owned())),
        ]
    );
    let payload = row(&r, "remotecall_fetch round trip, Vec<u8> of 1 MiB");
    assert_eq!(payload.rust.len(), 3);
    assert!(
        payload
            .rust
            .iter()
            .all(|(_, f)| f == &Err("no result from bench/rust-peers".to_owned())),
        "{:?}",
        payload.rust
    );

    // The crate failed as a whole: every Rust peer says why, and the report says it once.
    let extra = vec!["peer\trust-peers\tskipped\tbuild failed with exit status: 101".to_owned()];
    let r = collect::collect(none, &extra, None);
    let why = "bench/rust-peers: build failed with exit status: 101";
    assert!(
        r.rows
            .iter()
            .flat_map(|row| &row.rust)
            .all(|(_, f)| f.as_ref().err().map(String::as_str) == Some(why))
    );
    let md = render_markdown(&r);
    assert!(
        md.contains("- peer script rust-peers: build failed"),
        "{md}"
    );
    assert_eq!(
        md.matches(why).count(),
        1,
        "one line for all the keys: {md}"
    );
    assert!(
        md.contains("| procspawn: - (see below)<br>ipc-channel: - (see below) |"),
        "{md}"
    );
}

#[test]
fn filter_selects_exactly_the_table_ids() {
    let f = filter("ptools-workerset", "round_trip");
    assert_eq!(
        f,
        "^(round_trip/remotecall_fetch_u64|round_trip/raw_socketpair_u64|round_trip/remotecall_fetch_u64_socket|round_trip/two_callers_u64|round_trip/two_callers_u64_socket|round_trip/remotecall_fetch_tcp_u64|round_trip/raw_tcp_u64)$"
    );
    let f = filter("ptools-fork", "pfork");
    assert!(f.contains("pfork/ptools/32|pfork/raw/32"), "{f}");
    assert_eq!(f.matches("pfork/raw/2|").count(), 1, "{f}");
}

#[test]
fn parses_bench_and_peer_lines() {
    assert_eq!(
        worker_rss_kib("worker 2 (pid 77) resident memory: Some(5312) KiB"),
        Some(5312)
    );
    assert_eq!(worker_rss_kib("worker 2 resident memory: None KiB"), None);
    assert_eq!(
        parse_peer_line("py_pool_map_default\tseconds\t0.5\t1000000"),
        Some((
            "py_pool_map_default".into(),
            PeerFigure::Seconds {
                median: 0.5,
                items: 1e6
            }
        ))
    );
    assert_eq!(
        parse_peer_line("py_worker_rss\tkib\t13164"),
        Some(("py_worker_rss".into(), PeerFigure::Kib(13164.0)))
    );
    assert_eq!(
        parse_peer_line("py_numpy_fill256_2proc\tskipped\tnumpy is not installed"),
        Some((
            "py_numpy_fill256_2proc".into(),
            PeerFigure::Skipped("numpy is not installed".into())
        ))
    );
    assert_eq!(parse_peer_line("workers.py: 9.2 s"), None);
}

#[test]
fn reads_the_interleaved_pfork_lines() {
    let line = "n= 8  raw p10     1200 p50     1500   ptools p10     1300 p50     1650   ratio p10 1.08 p50 1.10";
    assert_eq!(
        printed_figures("pfork_interleaved", line),
        [
            ("pfork_interleaved/raw/8".to_owned(), 1.5e6),
            ("pfork_interleaved/ptools/8".to_owned(), 1.65e6)
        ]
    );
    let line =
        "n=32  raw p10     1 p50     2   ptools p10     3 p50     4   ratio p10 3.00 p50 2.00";
    assert_eq!(printed_figures("pfork_interleaved", line).len(), 2);
    assert!(printed_figures("pfork_interleaved", "pfork interleaved, 300 rounds").is_empty());
    assert!(printed_figures("pfork", line).is_empty());
}

#[test]
fn reads_the_interleaved_stasks_lines() {
    let f = |l: &str| printed_figures("interleaved", l);
    assert_eq!(
        f("  stasks/2                             median   512.5 ms   min   480.0 ms   1.20x raw"),
        [("fill256_interleaved/stasks/2".to_owned(), 512.5e6)]
    );
    assert_eq!(
        f("  python shared_memory+numpy+Pool(2)   median   290.0 ms   min   280.1 ms   0.70x raw"),
        [("fill256_interleaved/python".to_owned(), 290.0e6)]
    );
    assert!(f("  python shared_memory+numpy+Pool(2)   skipped").is_empty());
    assert!(f("interleaved, 15 rounds (256 MiB: create, fill, checksum, release):").is_empty());
}

#[test]
fn formats_dates_and_quantities() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_564_800 + 2 * 3600 + 5 * 60);
    assert_eq!(utc_date(t), "2026-11-25 02:05 UTC");
    assert_eq!(utc_date(SystemTime::UNIX_EPOCH), "1970-01-01 00:00 UTC");
    assert_eq!(fmt_time(11_234.0), "11.2 µs");
    assert_eq!(fmt_time(740_000.0), "740 µs");
    assert_eq!(fmt_time(2.5e9), "2.50 s");
    assert_eq!(fmt_rate(5_300_000.0), "5.30 M/s");
    assert_eq!(fmt_rate(25_000.0), "25.0 k/s");
}

#[test]
fn renders_the_table() {
    let md = render_markdown(&report());
    let line = |start: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {start}")))
            .unwrap_or_else(|| panic!("no row {start} in\n{md}"))
            .to_owned()
    };
    let rt = line("remotecall_fetch round trip");
    assert!(rt.contains("| 12.0 µs ±2% |"), "{rt}");
    assert!(
        rt.contains("10.0 µs ±2%<br>`round_trip/raw_socketpair_u64`"),
        "{rt}"
    );
    assert!(rt.contains("| 1.20× | ≤ 0.5× | **no** |"), "{rt}");
    assert!(rt.contains("| 20.0× faster |"), "{rt}");

    let pmap = line("pmap throughput");
    assert!(pmap.contains("4.00 M/s (250 ms per 1M ±2%)"), "{pmap}");
    assert!(pmap.contains("| ≥ 40.0 M/s | **no** |"), "{pmap}");
    assert!(pmap.contains("2.00 M/s (500 ms per 1M)"), "{pmap}");
    assert!(pmap.contains("| 2.0× faster |"), "{pmap}");

    let pfork = line("pfork n = 8<br>");
    assert!(pfork.contains("| not measured (see below) |"), "{pfork}");
    assert!(pfork.contains("| - | ≤ 1.3× | - |"), "{pfork}");

    assert!(
        rt.contains("| procspawn: 36.0 µs (3.0× faster)<br>ipc-channel: - (see below) |"),
        "{rt}"
    );
    assert!(pmap.ends_with("| 2.0× faster | - |"), "{pmap}");

    let rss = line("worker resident memory");
    assert!(rss.contains("| 4.00 MiB |"), "{rss}");
    assert!(rss.contains("| 3.0× smaller |"), "{rss}");

    assert!(md.contains("`cargo xtask bench --quick --peers` on 2026-11-25 02:00 UTC"));
    assert!(
        md.contains("![ptools against its baselines and the Python peers](docs/benchmarks.svg)")
    );
    assert!(md.contains("## Re-run"));
    // Round trip (1.20× against a target of 0.5×) and pmap missed, pfork not measured;
    // the memory row has no target.
    assert!(
        md.contains("0 of 3 targets met in this run (1 not judged"),
        "{md}"
    );
    let not = md.split("## Not measured").nth(1).expect("section");
    assert!(
        not.contains("- pfork n = 8: bench `pfork` of ptools-fork does not exist yet"),
        "{not}"
    );
    assert!(not.contains("numpy is not installed"), "{not}");
    assert!(
        not.contains("- Rust peers `rs_ipc_channel_round_trip`: bench/rust-peers: build failed"),
        "{not}"
    );
    // The fixture has no curve rows: the sections say so instead of an empty table.
    assert_eq!(
        md.matches("No figures for this curve in this run.").count(),
        2
    );
    assert_eq!(
        not.matches("- pfork n = 8: bench").count(),
        1,
        "one line for ptools and baseline alike: {not}"
    );
    assert_eq!(
        md.matches("\n| ").count(),
        1 + report().rows.len(),
        "one table row per scenario"
    );
}

#[test]
fn renders_the_plot() {
    let svg = svg::render(&report().rows);
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
    // Round trip: ptools, baseline, peer, procspawn; pmap: ptools, peer; plus the legend's
    // six.
    assert_eq!(svg.matches("<rect x=").count(), 4 + 2 + 6, "{svg}");
    assert!(svg.contains(">procspawn: 36.0 µs<"), "{svg}");
    // No curve rows: both charts say so.
    assert_eq!(svg.matches(">no figures measured<").count(), 2, "{svg}");
    assert!(svg.contains("remotecall_fetch round trip"));
    assert!(svg.contains(">not measured<"), "the pfork row says so");
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
}

/// Rows of the two curves: the payload sizes with ptools, the raw echo and the Rust peers
/// (procspawn missing at 16 MiB), and the queue sizes with a cost per task that doubles
/// from 10^4 to 10^6.
fn curve_report() -> Report {
    let mut r = report();
    r.rows.clear();
    for (i, &(x, id)) in PAYLOAD_CURVE.points.iter().enumerate() {
        let s = *SCENARIOS
            .iter()
            .find(|s| matches!(s.source, Source::Criterion { id: i, .. } if i == id))
            .expect("payload row");
        let ns = 10_000.0 + x;
        let secs = |ns: f64| {
            Ok(PeerFigure::Seconds {
                median: ns * 1e-9,
                items: 1.0,
            })
        };
        let rust = s
            .rust
            .iter()
            .map(|&k| {
                let fig = if k.starts_with("rs_procspawn") && i == 4 {
                    Err("killed after 600 s".to_owned())
                } else if k.starts_with("rs_procspawn") {
                    secs(4.0 * ns)
                } else {
                    secs(2.0 * ns)
                };
                (k, fig)
            })
            .collect();
        // The 16 MiB row has a Python peer: 3 times ptools.
        let peer = s.peer.map(|_| secs(3.0 * ns));
        r.rows.push(Row {
            scenario: s,
            ptools: measured(ns, None),
            baseline: Some(measured(ns / 1.25, None)),
            peer,
            rust,
        });
    }
    // The SharedSlice echo at every size but 1 KiB: 3 µs plus a quarter of a ns per byte.
    for &(x, id) in PAYLOAD_SHARED.iter().filter(|&&(x, _)| x != 1024.0) {
        let s = *SCENARIOS
            .iter()
            .find(|s| matches!(s.source, Source::Criterion { id: i, .. } if i == id))
            .expect("SharedSlice row");
        r.rows.push(Row {
            scenario: s,
            ptools: measured(3_000.0 + x / 4.0, None),
            baseline: Some(measured(1_000.0, None)),
            peer: None,
            rust: vec![],
        });
    }
    for &(x, id) in QUEUE_CURVE.points {
        // The table's row if it has one (the queue's size-curve bench adds them), else one
        // made here; the raw baseline's name is made up.
        let s = SCENARIOS
            .iter()
            .find(|s| matches!(s.source, Source::Criterion { id: i, .. } if i == id))
            .copied()
            .unwrap_or_else(|| crit(id, Q, id, None, Reported, None, Plot::None));
        // 2 µs per task at 10^4, 3 µs at 10^5, 4 µs at 10^6; the bench declares its
        // elements at 10^4 and 10^5 only (the count falls back to n).
        let per = 2_000.0 + (x.log10() - 4.0) * 1_000.0;
        let elements = (x < 1e6).then_some(x);
        r.rows.push(Row {
            scenario: s,
            ptools: measured(per * x, elements),
            baseline: Some(measured(per * x / 2.0, None)),
            peer: None,
            rust: vec![],
        });
    }
    r
}

#[test]
fn renders_the_curves() {
    let md = render_markdown(&curve_report());
    let section = |title: &str| {
        let start = md.find(&format!("## {title}")).expect(title);
        let rest = &md[start..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        rest[..end].to_owned()
    };
    let payload = section(PAYLOAD_CURVE.title);
    assert!(
        payload.contains(
            "| size | ptools | ptools, SharedSlice | raw socketpair | ratio | ipc-channel bytes | ipc-channel typed | procspawn | Python |\n"
        ),
        "a Python column, since the 16 MiB row has a Python peer: {payload}"
    );
    assert!(
        payload.contains(
            "| 8 B | 10.0 µs | 3.00 µs | 8.01 µs | 1.25× | 20.0 µs | 20.0 µs | 40.0 µs | - |"
        ),
        "{payload}"
    );
    assert!(
        payload.contains("| 1 KiB | 11.0 µs | - | 8.82 µs |"),
        "no SharedSlice figure at 1 KiB: {payload}"
    );
    assert!(
        payload.contains(
            "| 16 MiB | 16.8 ms | 4.20 ms | 13.4 ms | 1.25× | 33.6 ms | 33.6 ms | - | 50.4 ms |"
        ),
        "{payload}"
    );
    assert_eq!(payload.matches("\n| ").count(), 1 + 5, "{payload}");

    let queue = section(QUEUE_CURVE.title);
    assert!(
        queue.contains("| 10^4 | 20.0 ms | 2.00 µs | 1.00× | 2.00× |"),
        "{queue}"
    );
    assert!(
        queue.contains("| 10^5 | 300 ms | 3.00 µs | 1.50× | 2.00× |"),
        "{queue}"
    );
    assert!(
        queue.contains("| 10^6 | 4.00 s | 4.00 µs | 2.00× | 2.00× |"),
        "{queue}"
    );

    let not = md.split("## Not measured").nth(1).expect("section");
    assert!(
        not.contains("- Rust peers `rs_procspawn_vec_u8/16MiB`: killed after 600 s"),
        "{not}"
    );
}

#[test]
fn plots_the_curves() {
    let rows = curve_report().rows;
    let payload = svg::payload_series(&rows);
    let names: Vec<&str> = payload.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ptools",
            "ptools, SharedSlice",
            "raw socketpair",
            "ipc-channel bytes",
            "ipc-channel typed",
            "procspawn",
            "Python"
        ]
    );
    assert_eq!(payload[0].2.len(), 5);
    assert_eq!(payload[1].2.len(), 4, "SharedSlice has no 1 KiB point");
    assert_eq!(payload[1].2[0], (8.0, 3_002.0));
    assert_eq!(payload[5].2.len(), 4, "procspawn has no 16 MiB point");
    assert_eq!(payload[6].2.len(), 1, "Python has the 16 MiB point only");
    let queue = svg::queue_series(&rows);
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].2, [(1e4, 2_000.0), (1e5, 3_000.0), (1e6, 4_000.0)]);

    let svg = svg::render(&rows);
    // One line per series: seven for the payload (Python's of one point), one for the queue.
    assert_eq!(svg.matches("<polyline ").count(), 8, "{svg}");
    assert_eq!(
        svg.matches("<circle ").count(),
        5 + 4 + 5 + 5 + 5 + 4 + 1 + 3,
        "{svg}"
    );
    for label in ["8 B", "1 KiB", "64 KiB", "1 MiB", "16 MiB", "10^4", "10^6"] {
        assert!(svg.contains(&format!(">{label}</text>")), "{label}: {svg}");
    }
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    // Only the throughput bars are empty: the curves' rows have no rates.
    assert_eq!(svg.matches(">no figures measured<").count(), 1, "{svg}");
}

#[test]
#[ignore = "builds and runs bench/rust-peers (a minute or more on a cold build)"]
fn runs_the_rust_peers() {
    let lines = run::run_rust_peers(true, Duration::from_secs(300));
    let keys: Vec<String> = lines
        .iter()
        .filter_map(|l| parse_peer_line(l))
        .map(|(k, fig)| {
            assert!(matches!(fig, PeerFigure::Seconds { .. }), "{k}: {fig:?}");
            k
        })
        .collect();
    for s in SCENARIOS {
        for k in s.rust {
            assert!(keys.iter().any(|key| key == k), "no {k} in {lines:?}");
        }
    }
}
