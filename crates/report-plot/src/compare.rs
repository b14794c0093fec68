//! The compare chart: a horizontal bar per operation, the change in its
//! median duration, left for faster and right for slower.

use std::fmt::Write as _;

use crate::svg::{self, escape, shorten};

/// How a bar is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Slower,
    Faster,
    /// Neither flagged slower nor faster.
    Same,
}

/// One bar of the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeBar {
    pub name: String,
    /// Candidate median / baseline median - 1.
    pub change: f64,
    pub kind: Change,
    /// The verdict as a word, for the bar's tooltip.
    pub verdict: String,
}

/// The chart of `bars`, top to bottom, scaled so that the largest change
/// (or the threshold, when larger) fills half the width. `None` without
/// bars.
pub fn change_chart(bars: &[ChangeBar], threshold: f64) -> Option<String> {
    if bars.is_empty() {
        return None;
    }
    let max = bars
        .iter()
        .map(|it| it.change.abs())
        .filter(|it| it.is_finite())
        .fold(threshold, f64::max)
        .max(1e-9);
    let (label_w, half, row_h, top) = (300.0, 220.0, 22.0, 30.0);
    let width = label_w + 2.0 * half + 80.0;
    let height = top + row_h * bars.len() as f64 + 20.0;
    let axis = label_w + half;
    let mut out = String::new();
    svg::open(&mut out, "compare", width, height);
    let _ = writeln!(
        out,
        r#"<text x="{axis}" y="16" text-anchor="middle">Change in median duration (threshold ±{:.1}%)</text>"#,
        threshold * 100.0
    );
    for (i, bar) in bars.iter().enumerate() {
        let change = if bar.change.is_finite() {
            bar.change
        } else {
            0.0
        };
        let y = top + row_h * i as f64;
        let len = change.abs() / max * half;
        let x = if change >= 0.0 { axis } else { axis - len };
        let color = match bar.kind {
            Change::Slower => "#c0392b",
            Change::Faster => "#27ae60",
            Change::Same => "#95a5a6",
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + 14.0,
            escape(&shorten(&bar.name, 45))
        );
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{}" width="{len:.1}" height="{}" fill="{color}"><title>{}: {:+.1}% ({})</title></rect>"#,
            y + 3.0,
            row_h - 6.0,
            escape(&bar.name),
            change * 100.0,
            escape(&bar.verdict)
        );
        let tx = if change >= 0.0 {
            axis + len + 4.0
        } else {
            axis - len - 4.0
        };
        let anchor = if change >= 0.0 { "start" } else { "end" };
        let _ = writeln!(
            out,
            r#"<text x="{tx:.1}" y="{}" text-anchor="{anchor}">{:+.1}%</text>"#,
            y + 14.0,
            change * 100.0
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{axis}" y1="{}" x2="{axis}" y2="{}" stroke="#333"/>"##,
        top - 4.0,
        height - 16.0
    );
    svg::close(&mut out);
    Some(out)
}
