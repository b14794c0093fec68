//! A distribution as a histogram: equal-width bins between the smallest
//! and the largest value, with labelled vertical lines (percentiles).

use std::fmt::Write as _;

use crate::svg::{self, escape, label};
use crate::xy::Mark;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Bins for `n` values: about √n, between 5 and 40.
fn bin_count(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(5, 40)
}

/// Counts per bin and the bins' lower edge and width.
pub fn bins(values: &[f64]) -> (Vec<u64>, f64, f64) {
    let finite: Vec<f64> = values.iter().copied().filter(|it| it.is_finite()).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if finite.is_empty() {
        return (Vec::new(), 0.0, 1.0);
    }
    let n = bin_count(finite.len());
    let width = if hi > lo { (hi - lo) / n as f64 } else { 1.0 };
    let mut counts = vec![0u64; n];
    for value in finite {
        let idx = (((value - lo) / width) as usize).min(n - 1);
        counts[idx] += 1;
    }
    (counts, lo, width)
}

/// The histogram of `values` (its unit in `x_label`), or `None` without a
/// finite value.
pub fn histogram(title: &str, x_label: &str, values: &[f64], marks: &[Mark]) -> Option<String> {
    let (counts, lo, width) = bins(values);
    if counts.is_empty() {
        return None;
    }
    let hi = lo + width * counts.len() as f64;
    let max = counts.iter().copied().max().unwrap_or(1) as f64;
    let (top, step) = svg::linear_top(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + (v - lo) / (hi - lo) * plot_w;
    let y = |n: f64| TOP + plot_h - n / top * plot_h;
    let mut out = String::new();
    svg::open(&mut out, "histogram", WIDTH, HEIGHT);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    let mut tick = 0.0;
    while tick <= top + step * 1e-9 {
        let py = y(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            label(tick)
        );
        tick += step;
    }
    let bar_w = plot_w / counts.len() as f64;
    for (idx, n) in counts.iter().enumerate() {
        let from = lo + width * idx as f64;
        let _ = writeln!(
            out,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="#4e79a7"><title>{} to {}: {n}</title></rect>"##,
            LEFT + bar_w * idx as f64 + 0.5,
            y(*n as f64),
            (bar_w - 1.0).max(0.5),
            y(0.0) - y(*n as f64),
            label(from),
            label(from + width)
        );
    }
    for idx in 0..=4 {
        let v = lo + (hi - lo) * idx as f64 / 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(v),
            HEIGHT - BOTTOM + 16.0,
            label(v)
        );
    }
    for (idx, mark) in marks
        .iter()
        .filter(|it| it.x >= lo && it.x <= hi)
        .enumerate()
    {
        // On the side of the line with more room, one row per mark so that
        // close marks do not overlap, with a white halo over the bars.
        let right_half = x(mark.x) > LEFT + plot_w / 2.0;
        let (tx, anchor) = if right_half {
            (x(mark.x) - 4.0, "end")
        } else {
            (x(mark.x) + 4.0, "start")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{TOP}" y2="{1}" stroke="#c0392b" stroke-dasharray="4 3"/><text x="{2:.1}" y="{3}" text-anchor="{anchor}" fill="#c0392b" stroke="white" stroke-width="3" paint-order="stroke">{4}</text>"##,
            x(mark.x),
            y(0.0),
            tx,
            TOP + 12.0 + 14.0 * idx as f64,
            escape(&mark.label)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle">count</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0,
        escape(x_label),
        TOP + plot_h / 2.0
    );
    svg::close(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_one_bin() {
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let (counts, lo, width) = bins(&values);
        assert_eq!(counts.len(), 10);
        assert_eq!(counts.iter().sum::<u64>(), 100);
        assert_eq!((lo, width), (0.0, 9.9));
        let (same, _, _) = bins(&[3.0, 3.0, f64::NAN]);
        assert_eq!(same.iter().sum::<u64>(), 2);
        assert!(histogram("t", "ms", &[], &[]).is_none());
    }
}
