//! The step-time plot: one stacked bar per step (device compute coloured by
//! program, idle in grey on top).

use std::fmt::Write as _;

use trace_device::DevicePlane;

use crate::svg::{self, escape, label, tick_step};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// More steps than this are drawn as bars of several consecutive steps.
const MAX_BARS: usize = 1200;
const PROGRAM_COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
];
const IDLE_COLOUR: &str = "#c7c7c7";

/// The step plot of a device plane, or `None` when the plane has no steps.
pub fn steps_svg(plane: &DevicePlane) -> Option<String> {
    let steps = &plane.steps;
    if steps.is_empty() {
        return None;
    }
    let mut programs: Vec<&str> = Vec::new();
    for step in steps {
        let name = step.program.as_deref().unwrap_or("(unknown)");
        if !programs.contains(&name) {
            programs.push(name);
        }
    }
    let per_bar = steps.len().div_ceil(MAX_BARS);
    // (compute ms, idle ms, program index) per bar: means over its steps.
    let bars: Vec<(f64, f64, usize)> = steps
        .chunks(per_bar)
        .map(|chunk| {
            let n = chunk.len() as f64;
            let compute = chunk.iter().map(|it| it.compute_ps as f64).sum::<f64>() / n / 1e9;
            let idle = chunk
                .iter()
                .map(|it| it.idle_ps().max(0) as f64)
                .sum::<f64>()
                / n
                / 1e9;
            let name = chunk[0].program.as_deref().unwrap_or("(unknown)");
            let program = programs.iter().position(|it| *it == name).unwrap_or(0);
            (compute, idle, program)
        })
        .collect();
    let max = bars
        .iter()
        .map(|(c, i, _)| c + i)
        .fold(0.0f64, f64::max)
        .max(1e-6);
    let tick = tick_step(max);
    let top = (max / tick).ceil() * tick;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bar_w = plot_w / bars.len() as f64;
    let y = |ms: f64| TOP + plot_h - ms / top * plot_h;

    let mut svg = String::new();
    svg::open(&mut svg, "steps", WIDTH, HEIGHT);
    let title = if per_bar > 1 {
        format!(
            "{}: step time per step (each bar: mean of {per_bar} steps)",
            plane.plane
        )
    } else {
        format!("{}: step time per step", plane.plane)
    };
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(&title)
    );
    let mut value = 0.0;
    while value <= top + tick * 1e-9 {
        let py = y(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            label(value)
        );
        value += tick;
    }
    for (idx, (compute, idle, program)) in bars.iter().enumerate() {
        let x = LEFT + idx as f64 * bar_w;
        let colour = PROGRAM_COLOURS[program % PROGRAM_COLOURS.len()];
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{colour}"/><rect x="{x:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{IDLE_COLOUR}"/>"#,
            y(*compute),
            bar_w,
            y(0.0) - y(*compute),
            y(compute + idle),
            bar_w,
            y(*compute) - y(compute + idle),
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        WIDTH - RIGHT,
        y(0.0),
        y(0.0)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">step (1 .. {})</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 28.0,
        steps.len()
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">ms</text>"#,
        TOP + plot_h / 2.0
    );
    let mut lx = LEFT;
    let ly = HEIGHT - 10.0;
    let legend = programs
        .iter()
        .enumerate()
        .map(|(idx, name)| {
            (
                format!("compute: {name}"),
                PROGRAM_COLOURS[idx % PROGRAM_COLOURS.len()],
            )
        })
        .chain([("idle".to_owned(), IDLE_COLOUR)]);
    for (label, colour) in legend {
        let _ = writeln!(
            svg,
            r#"<rect x="{lx:.1}" y="{}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{ly}">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            escape(&label)
        );
        lx += 24.0 + 7.0 * label.chars().count() as f64;
    }
    svg::close(&mut svg);
    Some(svg)
}
