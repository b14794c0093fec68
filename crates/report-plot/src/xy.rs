//! Points and lines on two axes, linear or logarithmic: the roofline, the
//! latency of each request, the load-latency curve of a sweep.

use std::fmt::Write as _;

use crate::svg::{self, escape, label};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 70.0;

/// How an axis maps values to positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// From 0 (or the smallest value, when negative) to a round top.
    Linear,
    /// Whole decades holding every positive value; others are not drawn.
    Log,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
}

/// One point; `title` is its tooltip.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub title: Option<String>,
}

/// Points of one colour, joined by a line when `line` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub points: Vec<Point>,
    pub line: bool,
    /// Radius of the points; 0 draws none.
    pub radius: f64,
}

/// A labelled vertical line at `x`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
}

/// Maps values of one axis onto `[from, to]` pixels.
struct Map {
    scale: Scale,
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    ticks: Vec<f64>,
}

impl Map {
    fn new(scale: Scale, values: &[f64], from: f64, to: f64) -> Map {
        match scale {
            Scale::Linear => {
                let min = values.iter().copied().fold(0.0f64, f64::min);
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let (top, step) = svg::linear_top(max.max(min + 1e-9));
                let lo = if min < 0.0 {
                    (min / step).floor() * step
                } else {
                    0.0
                };
                let n = ((top - lo) / step).round() as usize;
                let ticks = (0..=n).map(|i| lo + step * i as f64).collect();
                Map {
                    scale,
                    lo,
                    hi: top,
                    from,
                    to,
                    ticks,
                }
            }
            Scale::Log => {
                let (lo, hi) = svg::decades(values.iter().copied());
                let ticks = (lo..=hi).map(|it| 10f64.powi(it)).collect();
                Map {
                    scale,
                    lo: f64::from(lo),
                    hi: f64::from(hi),
                    from,
                    to,
                    ticks,
                }
            }
        }
    }

    /// The position of `value`, or `None` when a log axis cannot show it.
    fn at(&self, value: f64) -> Option<f64> {
        let v = match self.scale {
            Scale::Linear => value,
            Scale::Log if value > 0.0 => value.log10(),
            Scale::Log => return None,
        };
        value
            .is_finite()
            .then(|| self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from))
    }

    fn contains(&self, value: f64) -> bool {
        self.at(value).is_some_and(|p| {
            let (a, b) = (self.from.min(self.to), self.from.max(self.to));
            p >= a - 0.5 && p <= b + 0.5
        })
    }
}

/// The chart as SVG; `class` names it for the page (`roofline`,
/// `latency`, ...). `None` when no series has a point the axes can show.
pub fn xy_chart(chart: &Chart, class: &str) -> Option<String> {
    let xs: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|it| it.points.iter().map(|p| p.x))
        .chain(chart.marks.iter().map(|it| it.x))
        .filter(|it| it.is_finite())
        .collect();
    let ys: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|it| it.points.iter().map(|p| p.y))
        .filter(|it| it.is_finite())
        .collect();
    let x = Map::new(chart.x.scale, &xs, LEFT, WIDTH - RIGHT);
    let y = Map::new(chart.y.scale, &ys, HEIGHT - BOTTOM, TOP);
    let drawable = chart
        .series
        .iter()
        .flat_map(|it| &it.points)
        .any(|p| x.contains(p.x) && y.contains(p.y));
    if !drawable {
        return None;
    }
    let mut out = String::new();
    svg::open(&mut out, class, WIDTH, HEIGHT);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(&chart.title)
    );
    for tick in &y.ticks {
        let Some(py) = y.at(*tick) else { continue };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            label(*tick)
        );
    }
    for tick in &x.ticks {
        let Some(px) = x.at(*tick) else { continue };
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#eeeeee"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 16.0,
            label(*tick)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        HEIGHT - BOTTOM + 34.0,
        escape(&chart.x.label)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
        escape(&chart.y.label)
    );
    for mark in &chart.marks {
        let Some(px) = x.at(mark.x).filter(|_| x.contains(mark.x)) else {
            continue;
        };
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" fill="#333">{}</text>"##,
            HEIGHT - BOTTOM,
            px + 4.0,
            TOP + 14.0,
            escape(&mark.label)
        );
    }
    for series in &chart.series {
        let _ = writeln!(out, r#"<g class="series" fill="{}">"#, series.colour);
        let placed: Vec<(f64, f64, &Point)> = series
            .points
            .iter()
            .filter(|p| x.contains(p.x) && y.contains(p.y))
            .filter_map(|p| Some((x.at(p.x)?, y.at(p.y)?, p)))
            .collect();
        if series.line && placed.len() > 1 {
            let path: Vec<String> = placed
                .iter()
                .map(|(px, py, _)| format!("{px:.1},{py:.1}"))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                path.join(" "),
                series.colour
            );
        }
        if series.radius > 0.0 {
            for (px, py, point) in &placed {
                match &point.title {
                    Some(title) => {
                        let _ = writeln!(
                            out,
                            r#"<circle cx="{px:.1}" cy="{py:.1}" r="{}"><title>{}</title></circle>"#,
                            series.radius,
                            escape(title)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            r#"<circle cx="{px:.1}" cy="{py:.1}" r="{}"/>"#,
                            series.radius
                        );
                    }
                }
            }
        }
        out.push_str("</g>\n");
    }
    let mut lx = LEFT;
    let ly = HEIGHT - 12.0;
    for series in &chart.series {
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{ly}">{}</text>"#,
            ly - 9.0,
            series.colour,
            lx + 14.0,
            escape(&series.name)
        );
        lx += 24.0 + 7.0 * series.name.chars().count() as f64;
    }
    svg::close(&mut out);
    Some(out)
}
