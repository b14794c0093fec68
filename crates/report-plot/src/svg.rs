//! What every picture shares: escaping, the document frame, round ticks on
//! linear and logarithmic axes, and short tick labels.

use std::fmt::Write as _;

/// Text for an SVG text node or attribute value, shown as written.
pub fn escape(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => res.push_str("&amp;"),
            '<' => res.push_str("&lt;"),
            '>' => res.push_str("&gt;"),
            '"' => res.push_str("&quot;"),
            c if c.is_control() => res.push(' '),
            c => res.push(c),
        }
    }
    res
}

/// `name` cut to `max` characters, with an ellipsis when it was longer.
pub fn shorten(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_owned()
    } else {
        let head: String = name.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

/// Opens a document of `width` x `height` with a white background. `class`
/// names the kind of picture, so that a page can style or find it.
pub fn open(out: &mut String, class: &str, width: f64, height: f64) {
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot {class}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
}

pub fn close(out: &mut String) {
    out.push_str("</svg>\n");
}

/// A round tick step giving about five ticks up to `max`.
pub fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|it| it * magnitude)
        .find(|it| *it >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: plain up to 10,000, then with `k`, `M`, `G`, `T`; small
/// numbers keep their significant digits.
pub fn label(value: f64) -> String {
    let abs = value.abs();
    if abs == 0.0 {
        return "0".to_owned();
    }
    for (unit, size) in [("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if abs >= size * 10.0 {
            return format!("{}{unit}", trim(value / size));
        }
    }
    trim(value)
}

/// A number with at most three significant digits after the point and no
/// trailing zeros: `0.05`, `1.5`, `120`.
fn trim(value: f64) -> String {
    let decimals = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 1.0 {
        2
    } else {
        (-value.abs().log10().floor()) as usize + 2
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A linear axis from 0 to a round top: (top, step).
pub fn linear_top(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = tick_step(max);
    ((max / step).ceil() * step, step)
}

/// The decades `10^lo ..= 10^hi` that hold every value of `values` (all
/// positive), at least one decade wide.
pub fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for value in values.filter(|it| it.is_finite() && *it > 0.0) {
        lo = lo.min(value);
        hi = hi.max(value);
    }
    if !lo.is_finite() {
        return (0, 1);
    }
    let lo = lo.log10().floor() as i32;
    let hi = (hi.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        assert_eq!(label(0.0), "0");
        assert_eq!(label(0.05), "0.05");
        assert_eq!(label(1.5), "1.5");
        assert_eq!(label(120.0), "120");
        assert_eq!(label(5000.0), "5000");
        assert_eq!(label(20_000.0), "20k");
        assert_eq!(label(3e9 * 10.0), "30G");
        assert_eq!(escape("a<b & \"c\"\n"), "a&lt;b &amp; &quot;c&quot; ");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(linear_top(9.0), (10.0, 2.0));
        assert_eq!(decades([0.5, 20.0].into_iter()), (-1, 2));
        assert_eq!(decades(std::iter::empty()), (0, 1));
    }
}
