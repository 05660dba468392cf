//! The plot of BENCHMARKS.md, written as SVG by hand: one panel of times per iteration and
//! one of throughputs, each on a log scale, with a bar for ptools, its baseline and the
//! Python and Rust peers of every scenario; then a log-log line chart per curve (payload
//! size, queue size).

use std::fmt::Write as _;

use super::render::{
    curve_rows, curve_rust_series, fmt_rate, fmt_time, peer_ns, rust_ns, shared_row,
};
use super::{Figure, PAYLOAD_CURVE, PeerFigure, Plot, QUEUE_CURVE, Row, rate};

const WIDTH: f64 = 980.0;
const LABEL_W: f64 = 330.0;
const RIGHT_PAD: f64 = 180.0;
const BAR_H: f64 = 11.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 9.0;
const COLORS: [(&str, &str); 6] = [
    ("ptools", "#1f6fb4"),
    ("baseline (raw, same run)", "#9a9a9a"),
    ("Python peer", "#e8801a"),
    ("procspawn", "#8e44ad"),
    ("ipc-channel bytes", "#2ca02c"),
    ("ipc-channel typed", "#17a2a2"),
];
/// The payload chart's `SharedSlice` line: a darker ptools blue.
const SHARED_COLOR: &str = "#0b3d6b";
/// Legend entries per line.
const LEGEND_PER_LINE: usize = 3;

/// The series (index into [`COLORS`]) of a Rust peer key.
fn rust_series(key: &str) -> usize {
    if key.starts_with("rs_procspawn") {
        3
    } else if key.starts_with("rs_ipc_channel_bytes") {
        4
    } else {
        5
    }
}

/// One scenario's bars: (series index, value) for each figure that exists.
type Group = (String, Vec<(usize, f64)>);

fn groups(rows: &[Row], plot: Plot) -> Vec<Group> {
    rows.iter()
        .filter(|r| r.scenario.plot == plot)
        .map(|r| {
            let value = |f: &Figure| match f {
                Figure::Time(m) if plot == Plot::Time => Some(m.median_ns),
                Figure::Time(m) => rate(m),
                _ => None,
            };
            let peer = match &r.peer {
                Some(Ok(PeerFigure::Seconds { median, items })) if *median > 0.0 => {
                    Some(if plot == Plot::Time {
                        median * 1e9
                    } else {
                        items / median
                    })
                }
                _ => None,
            };
            let rust = r.rust.iter().map(|(k, f)| {
                let v = match f {
                    Ok(p) => peer_ns(p).map(|ns| if plot == Plot::Time { ns } else { 1e9 / ns }),
                    Err(_) => None,
                };
                (rust_series(k), v)
            });
            let bars = [
                Some(value(&r.ptools)),
                r.baseline.as_ref().map(value),
                Some(peer),
            ]
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, v??)))
            .chain(rust.filter_map(|(i, v)| Some((i, v?))))
            .filter(|(_, v)| *v > 0.0)
            .collect();
            (r.scenario.name.to_owned(), bars)
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws one panel at `top`; returns its height.
fn panel(o: &mut String, top: f64, title: &str, gs: &[Group], plot: Plot) -> f64 {
    let values: Vec<f64> = gs
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, v)| *v))
        .collect();
    let _ = writeln!(
        o,
        r#"<text x="10" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        top + 16.0,
        esc(title)
    );
    let axis_top = top + 28.0;
    if values.is_empty() {
        let _ = writeln!(
            o,
            r#"<text x="{LABEL_W}" y="{:.1}" font-size="12">no figures measured</text>"#,
            axis_top + 14.0
        );
        return 50.0;
    }
    let lo = values
        .iter()
        .copied()
        .fold(f64::MAX, f64::min)
        .log10()
        .floor();
    let hi = values
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let x = |v: f64| LABEL_W + (v.log10() - lo) / (hi - lo) * plot_w;
    let fmt = |v: f64| {
        if plot == Plot::Time {
            fmt_time(v)
        } else {
            fmt_rate(v)
        }
    };

    let body: f64 = gs
        .iter()
        .map(|(_, b)| b.len().max(1) as f64 * (BAR_H + BAR_GAP) + GROUP_GAP)
        .sum();
    let bottom = axis_top + 6.0 + body;
    // Decade grid lines with their labels at the top.
    let mut d = lo;
    while d <= hi + 1e-9 {
        let gx = x(10f64.powf(d));
        let _ = writeln!(
            o,
            r##"<line x1="{gx:.1}" y1="{:.1}" x2="{gx:.1}" y2="{bottom:.1}" stroke="#dddddd"/><text x="{gx:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
            axis_top,
            axis_top - 3.0,
            esc(&fmt(10f64.powf(d)))
        );
        d += 1.0;
    }
    let mut y = axis_top + 6.0;
    for (name, bars) in gs {
        let h = bars.len().max(1) as f64 * (BAR_H + BAR_GAP);
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + h / 2.0 + 4.0,
            esc(name)
        );
        if bars.is_empty() {
            let _ = writeln!(
                o,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#a00">not measured</text>"##,
                LABEL_W + 4.0,
                y + BAR_H - 2.0
            );
        }
        for (i, (series, v)) in bars.iter().enumerate() {
            let by = y + i as f64 * (BAR_H + BAR_GAP);
            let w = (x(*v) - LABEL_W).max(1.0);
            let _ = writeln!(
                o,
                r##"<rect x="{LABEL_W}" y="{by:.1}" width="{w:.1}" height="{BAR_H}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#333">{}</text>"##,
                COLORS[*series].1,
                LABEL_W + w + 4.0,
                by + BAR_H - 2.0,
                esc(&if *series >= 3 {
                    format!("{}: {}", COLORS[*series].0, fmt(*v))
                } else {
                    fmt(*v)
                })
            );
        }
        y += h + GROUP_GAP;
    }
    let _ = writeln!(
        o,
        r##"<line x1="{LABEL_W}" y1="{axis_top:.1}" x2="{LABEL_W}" y2="{bottom:.1}" stroke="#333"/>"##
    );
    bottom - top + 10.0
}

/// The whole SVG document.
pub(crate) fn render(rows: &[Row]) -> String {
    let mut body = String::new();
    // Legend.
    for (i, (name, color)) in COLORS.iter().enumerate() {
        let lx = LABEL_W + (i % LEGEND_PER_LINE) as f64 * 190.0;
        let ly = 8.0 + (i / LEGEND_PER_LINE) as f64 * 18.0;
        let _ = writeln!(
            body,
            r#"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            lx + 16.0,
            ly + 10.0,
            esc(name)
        );
    }
    let mut top = 10.0 + COLORS.len().div_ceil(LEGEND_PER_LINE) as f64 * 18.0;
    top += panel(
        &mut body,
        top,
        "Time per iteration, log scale (shorter is better)",
        &groups(rows, Plot::Time),
        Plot::Time,
    );
    top += panel(
        &mut body,
        top,
        "Throughput, items per second, log scale (longer is better)",
        &groups(rows, Plot::Rate),
        Plot::Rate,
    );
    top += line_chart(
        &mut body,
        top,
        &format!("{}, log-log (lower is better)", PAYLOAD_CURVE.title),
        &payload_series(rows),
        |x| {
            let kib = x / 1024.0;
            if x < 1024.0 {
                format!("{x:.0} B")
            } else if kib < 1024.0 {
                format!("{kib:.0} KiB")
            } else {
                format!("{:.0} MiB", kib / 1024.0)
            }
        },
    );
    top += line_chart(
        &mut body,
        top,
        &format!("{}, log-log (flat is best)", QUEUE_CURVE.title),
        &queue_series(rows),
        |x| format!("10^{}", x.log10().round()),
    );
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{top:.0}\" viewBox=\"0 0 {WIDTH} {top:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

/// One line of a curve chart: its name, color and points (x, nanoseconds).
pub(crate) type Series = (String, &'static str, Vec<(f64, f64)>);

/// The payload curve's lines: ptools, the raw echo, each Rust peer, the Python peer.
pub(crate) fn payload_series(rows: &[Row]) -> Vec<Series> {
    let points = curve_rows(rows, &PAYLOAD_CURVE);
    let time = |f: Option<&Figure>| match f {
        Some(Figure::Time(m)) if m.median_ns > 0.0 => Some(m.median_ns),
        _ => None,
    };
    let line = |i: usize, name: &str, get: &dyn Fn(&Row) -> Option<f64>| -> Series {
        let pts = points
            .iter()
            .filter_map(|(x, _, row)| Some((*x, get(row)?)))
            .collect();
        (name.to_owned(), COLORS[i].1, pts)
    };
    let mut out = vec![
        line(0, "ptools", &|r| time(Some(&r.ptools))),
        line(1, "raw socketpair", &|r| time(r.baseline.as_ref())),
    ];
    let shared: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|(x, _, _)| Some((*x, time(Some(&shared_row(rows, *x)?.ptools))?)))
        .collect();
    out.insert(1, ("ptools, SharedSlice".to_owned(), SHARED_COLOR, shared));
    for base in curve_rust_series(&points) {
        let name = super::rust_peer_name(base);
        out.push(line(rust_series(base), name, &|r| rust_ns(r, base)));
    }
    out.push(line(2, "Python", &|r| match &r.peer {
        Some(Ok(p)) => peer_ns(p),
        _ => None,
    }));
    out.retain(|(_, _, pts)| !pts.is_empty());
    out
}

/// The queue-size curve's line: ptools' cost per task.
pub(crate) fn queue_series(rows: &[Row]) -> Vec<Series> {
    let pts: Vec<(f64, f64)> = curve_rows(rows, &QUEUE_CURVE)
        .iter()
        .filter_map(|(x, _, row)| match &row.ptools {
            Figure::Time(m) if m.median_ns > 0.0 => {
                Some((*x, m.median_ns / m.elements.unwrap_or(*x)))
            }
            _ => None,
        })
        .collect();
    if pts.is_empty() {
        Vec::new()
    } else {
        vec![("ptools, per task".to_owned(), COLORS[0].1, pts)]
    }
}

/// Decades from the floor of the smallest value's log to the ceiling of the largest's.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = lo.log10().floor();
    (lo, hi.log10().ceil().max(lo + 1.0))
}

const CHART_H: f64 = 220.0;
const CHART_LEFT: f64 = 90.0;
const CHART_RIGHT: f64 = WIDTH - 230.0;

/// Draws a log-log line chart at `top` (y: time); returns its height.
fn line_chart(
    o: &mut String,
    top: f64,
    title: &str,
    series: &[Series],
    x_label: impl Fn(f64) -> String,
) -> f64 {
    let _ = writeln!(
        o,
        r#"<text x="10" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        top + 16.0,
        esc(title)
    );
    let ys = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y));
    if ys.clone().next().is_none() {
        let _ = writeln!(
            o,
            r#"<text x="{CHART_LEFT}" y="{:.1}" font-size="12">no figures measured</text>"#,
            top + 42.0
        );
        return 56.0;
    }
    let (ylo, yhi) = decades(ys);
    // x: the data's own range, a third of a decade wider on each side.
    let (xlo, xhi) = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(x, _)| x.log10()))
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (xlo, xhi) = (xlo - 0.3, xhi.max(xlo + 0.1) + 0.3);
    let (ptop, pbottom) = (top + 30.0, top + 30.0 + CHART_H);
    let x = |v: f64| CHART_LEFT + (v.log10() - xlo) / (xhi - xlo) * (CHART_RIGHT - CHART_LEFT);
    let y = |v: f64| pbottom - (v.log10() - ylo) / (yhi - ylo) * CHART_H;
    // Horizontal decade lines with time labels.
    let mut d = ylo;
    while d <= yhi + 1e-9 {
        let gy = y(10f64.powf(d));
        let _ = writeln!(
            o,
            r##"<line x1="{CHART_LEFT}" y1="{gy:.1}" x2="{CHART_RIGHT}" y2="{gy:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            CHART_LEFT - 5.0,
            gy + 3.0,
            esc(&fmt_time(10f64.powf(d)))
        );
        d += 1.0;
    }
    // Vertical lines at every x of the data, labelled.
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(x, _)| *x))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for xv in xs {
        let gx = x(xv);
        let _ = writeln!(
            o,
            r##"<line x1="{gx:.1}" y1="{ptop:.1}" x2="{gx:.1}" y2="{pbottom:.1}" stroke="#eeeeee"/><text x="{gx:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
            pbottom + 13.0,
            esc(&x_label(xv))
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{CHART_LEFT}" y="{ptop:.1}" width="{:.1}" height="{CHART_H}" fill="none" stroke="#333"/>"##,
        CHART_RIGHT - CHART_LEFT
    );
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|(xv, yv)| format!("{:.1},{:.1}", x(*xv), y(*yv)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (xv, yv) in pts {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {}</title></circle>"#,
                x(*xv),
                y(*yv),
                esc(name),
                esc(&fmt_time(*yv))
            );
        }
        // The series' legend, right of the chart.
        let ly = ptop + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            CHART_RIGHT + 15.0,
            CHART_RIGHT + 35.0,
            CHART_RIGHT + 40.0,
            ly + 4.0,
            esc(name)
        );
    }
    CHART_H + 56.0
}
