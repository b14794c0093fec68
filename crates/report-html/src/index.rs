//! A sweep's `index.html`: the variants side by side and, when at least
//! two measured their workload, the load-latency curve.

use maud::html;
use report_plot::{Axis, Chart, Point, Scale, Series, xy_chart};
use session_report::format::{count, fixed};

use crate::page::{Align, DataTable, document, figure};

/// One variant of a sweep, as its run folder tells it.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepVariant {
    /// The variant's run folder, relative to the index (`variant-0`).
    pub folder: String,
    /// The workload numbers, when the variant ran one.
    pub workload: Option<VariantWorkload>,
    /// The heaviest operation of its report, when it has one.
    pub top_operation: Option<String>,
}

/// A variant's workload, from its run metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantWorkload {
    pub requests: u64,
    pub concurrency: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub throughput_rps: f64,
}

/// Renders `index.html` of a sweep.
pub fn render_index(variants: &[SweepVariant]) -> String {
    let title = format!("Sweep of {} variants", variants.len());
    let mut measured: Vec<(&SweepVariant, &VariantWorkload)> = variants
        .iter()
        .filter_map(|it| Some((it, it.workload.as_ref()?)))
        .collect();
    measured.sort_by(|a, b| (a.1.concurrency, &a.0.folder).cmp(&(b.1.concurrency, &b.0.folder)));
    let line = |name: &str, colour: &'static str, pick: fn(&VariantWorkload) -> f64| Series {
        name: name.to_owned(),
        colour,
        points: measured
            .iter()
            .map(|(variant, w)| Point {
                x: w.throughput_rps,
                y: pick(w),
                title: Some(format!(
                    "{}: concurrency {}, {} req/s, {name} {} ms",
                    variant.folder,
                    w.concurrency,
                    fixed(w.throughput_rps, 2),
                    fixed(pick(w), 1)
                )),
            })
            .collect(),
        line: true,
        radius: 4.0,
    };
    let curve = (measured.len() >= 2)
        .then(|| {
            xy_chart(
                &Chart {
                    title: "Load-latency curve: one point per variant, in order of concurrency"
                        .to_owned(),
                    x: Axis {
                        label: "throughput (successful requests/s)".to_owned(),
                        scale: Scale::Linear,
                    },
                    y: Axis {
                        label: "latency (ms)".to_owned(),
                        scale: Scale::Linear,
                    },
                    series: vec![
                        line("p50", "#4e79a7", |w| w.p50_ms),
                        line("p99", "#e15759", |w| w.p99_ms),
                    ],
                    marks: Vec::new(),
                },
                "load-latency",
            )
        })
        .flatten();
    let rows = variants
        .iter()
        .map(|it| {
            let w = it.workload.as_ref();
            let cell = |f: &dyn Fn(&VariantWorkload) -> String| w.map_or_else(String::new, f);
            vec![
                it.folder.clone(),
                cell(&|w| count(w.requests)),
                // An open-loop load without a cap records 0.
                cell(&|w| match w.concurrency {
                    0 => "no cap".to_owned(),
                    n => count(n),
                }),
                cell(&|w| count(w.errors)),
                cell(&|w| fixed(w.p50_ms, 1)),
                cell(&|w| fixed(w.p99_ms, 1)),
                cell(&|w| fixed(w.throughput_rps, 2)),
                it.top_operation.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let content = html! {
        section #variants {
            h2 { "Variants" }
            (DataTable {
                id: "variants",
                columns: &[
                    ("Variant", Align::Left),
                    ("Requests", Align::Right),
                    ("Concurrency", Align::Right),
                    ("Errors", Align::Right),
                    ("p50 ms", Align::Right),
                    ("p99 ms", Align::Right),
                    ("Throughput req/s", Align::Right),
                    ("Top operation", Align::Code),
                ],
                rows,
            })
            p { "Each variant's report: "
                @for (idx, it) in variants.iter().enumerate() {
                    @if idx > 0 { ", " }
                    a href={ (it.folder) "/report.html" } { (it.folder) }
                }
                "."
            }
            @if let Some(svg) = &curve {
                (figure(svg, Some("Throughput against latency: as load grows, a server that keeps up moves right; one that saturates moves up.")))
            }
            p.note { "Latency percentiles are nearest-rank over the successful requests of each variant; throughput is successful requests per second of workload wall time (docs/metrics.md)." }
        }
    };
    document(&title, html! { h1 { (title) } }, &[], content)
}
