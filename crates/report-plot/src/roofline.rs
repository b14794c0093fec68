//! The roofline of a device plane: each op's operational intensity (FLOP
//! per byte accessed) against its throughput (GFLOP/s of self time), on
//! log axes, under the plane's roofs when its peaks are known.

use trace_device::DevicePlane;

use crate::xy::{Axis, Chart, Mark, Point, Scale, Series, xy_chart};

/// At most this many ops (the heaviest by self time) are drawn, so that a
/// plane with 100,000 ops stays a picture of a few hundred kilobytes.
pub const ROOFLINE_OPS: usize = 2000;

/// The ops the roofline can place: those with FLOPs, bytes and self time,
/// heaviest self time first, at most [`ROOFLINE_OPS`]. Each is (name,
/// intensity, GFLOP/s).
pub fn roofline_points(plane: &DevicePlane) -> Vec<(&str, f64, f64)> {
    plane
        .ops
        .iter()
        .filter_map(|op| {
            let intensity = op.intensity()?;
            let gflops = op.gflops_per_s()?;
            (intensity > 0.0 && gflops > 0.0).then_some((op.name.as_str(), intensity, gflops))
        })
        .take(ROOFLINE_OPS)
        .collect()
}

/// The roofline SVG, or `None` when no op has both FLOPs and bytes.
pub fn roofline_svg(plane: &DevicePlane) -> Option<String> {
    let points = roofline_points(plane);
    if points.is_empty() {
        return None;
    }
    let ridge = plane.peaks.ridge_point();
    let (mut memory, mut compute) = (Vec::new(), Vec::new());
    for (name, intensity, gflops) in &points {
        let point = Point {
            x: *intensity,
            y: *gflops,
            title: Some(format!(
                "{name}: {intensity:.2} FLOP/byte, {gflops:.1} GFLOP/s"
            )),
        };
        match ridge {
            Some(ridge) if *intensity >= ridge => compute.push(point),
            _ => memory.push(point),
        }
    }
    let mut series = Vec::new();
    let mut marks = Vec::new();
    if let (Some(ridge), Some(tflops), Some(gbytes)) = (
        ridge,
        plane.peaks.tflops_per_s,
        plane.peaks.hbm_gbytes_per_s,
    ) {
        // The roof: bandwidth x intensity up to the ridge, then the peak.
        let lo = points
            .iter()
            .map(|it| it.1)
            .fold(ridge / 10.0, f64::min)
            .max(ridge * 1e-6);
        let hi = points.iter().map(|it| it.1).fold(ridge * 10.0, f64::max);
        let roof = |x: f64| Point {
            x,
            y: (gbytes * x).min(tflops * 1e3),
            title: None,
        };
        series.push(Series {
            name: format!("roof: {gbytes:.0} GB/s HBM, {tflops:.1} TFLOP/s"),
            colour: "#333333",
            points: vec![roof(lo), roof(ridge), roof(hi)],
            line: true,
            radius: 0.0,
        });
        marks.push(Mark {
            x: ridge,
            label: format!("ridge point {ridge:.1} FLOP/byte"),
        });
    }
    let bounded = ridge.is_some();
    series.push(Series {
        name: if bounded {
            "memory-bound ops".to_owned()
        } else {
            "ops (no peaks known)".to_owned()
        },
        colour: "#1f77b4",
        points: memory,
        line: false,
        radius: 3.0,
    });
    if bounded {
        series.push(Series {
            name: "compute-bound ops".to_owned(),
            colour: "#d62728",
            points: compute,
            line: false,
            radius: 3.0,
        });
    }
    let shown = if points.len() == ROOFLINE_OPS {
        format!(" (the {ROOFLINE_OPS} heaviest ops)")
    } else {
        String::new()
    };
    xy_chart(
        &Chart {
            title: format!("{}: roofline{shown}", plane.plane),
            x: Axis {
                label: "operational intensity (FLOP/byte)".to_owned(),
                scale: Scale::Log,
            },
            y: Axis {
                label: "GFLOP/s".to_owned(),
                scale: Scale::Log,
            },
            series,
            marks,
        },
        "roofline",
    )
}
