//! The plot of BENCHMARKS.md, written as SVG by hand: one panel of times per iteration and
//! one of throughputs, each on a log scale, with a bar for ptools, its baseline and the
//! Python peer of every scenario.

use std::fmt::Write as _;

use super::render::{fmt_rate, fmt_time};
use super::{Figure, PeerFigure, Plot, Row, rate};

const WIDTH: f64 = 980.0;
const LABEL_W: f64 = 330.0;
const RIGHT_PAD: f64 = 110.0;
const BAR_H: f64 = 11.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 9.0;
const COLORS: [(&str, &str); 3] = [
    ("ptools", "#1f6fb4"),
    ("baseline (raw, same run)", "#9a9a9a"),
    ("Python peer", "#e8801a"),
];

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
            let bars = [
                Some(value(&r.ptools)),
                r.baseline.as_ref().map(value),
                Some(peer),
            ]
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i, v??)))
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
                esc(&fmt(*v))
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
        let lx = LABEL_W + i as f64 * 190.0;
        let _ = writeln!(
            body,
            r#"<rect x="{lx}" y="8" width="12" height="12" fill="{color}"/><text x="{}" y="18" font-size="12">{}</text>"#,
            lx + 16.0,
            esc(name)
        );
    }
    let mut top = 28.0;
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
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{top:.0}\" viewBox=\"0 0 {WIDTH} {top:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}
