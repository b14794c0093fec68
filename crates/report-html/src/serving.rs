//! Latency pictures: the distribution of request latency and the latency
//! of each request in the order sent, and the Serving Metrics section
//! (time to first token, inter-token latency, end-to-end latency, and
//! latency over the session's time) when the workload recorded them.

use maud::{Markup, html};
use profile_compare::Latencies;
use report_plot::{Axis, Chart, Mark, Point, Scale, Series, histogram, xy_chart};
use session_report::WorkloadSummary;
use session_report::format::{count, fixed};

use crate::page::{Align, DataTable, figure};

/// One served request, as the serving workload records it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedRequest {
    /// When the request was sent, seconds after the first one.
    pub start_s: f64,
    /// Time to the first token, ms (`None` when no token came).
    pub ttft_ms: Option<f64>,
    /// Gaps between consecutive tokens, ms.
    pub itl_ms: Vec<f64>,
    /// From sending to the last byte of the answer, ms.
    pub e2e_ms: f64,
    pub output_tokens: u64,
    /// Whether the request failed.
    pub error: bool,
}

/// The requests of a serving workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Serving {
    pub requests: Vec<ServedRequest>,
}

/// The nearest-rank percentile `p` (0..=100) of sorted values.
fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut res: Vec<f64> = values.filter(|it| it.is_finite()).collect();
    res.sort_by(f64::total_cmp);
    res
}

fn marks(values: &[f64]) -> Vec<Mark> {
    [(50.0, "p50"), (99.0, "p99")]
        .into_iter()
        .filter_map(|(p, name)| {
            let x = nearest_rank(values, p)?;
            Some(Mark {
                x,
                label: format!("{name} {} ms", fixed(x, 1)),
            })
        })
        .collect()
}

/// The latency histogram and the latency of each request in send order,
/// per part of a mix, from `inputs/latencies.json`.
pub(crate) fn latency_figures(latencies: &Latencies, workload: &WorkloadSummary) -> Markup {
    let all = sorted(latencies.all.iter().copied());
    let hist = histogram(
        &format!("Request latency of {} requests", all.len()),
        "latency (ms)",
        &all,
        &marks(&all),
    );
    const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
    let series: Vec<Series> = if latencies.parts.is_empty() {
        vec![Series {
            name: workload.endpoint.clone(),
            colour: COLOURS[0],
            points: latencies
                .all
                .iter()
                .enumerate()
                .map(|(idx, y)| Point {
                    x: (idx + 1) as f64,
                    y: *y,
                    title: Some(format!("request {}: {} ms", idx + 1, fixed(*y, 2))),
                })
                .collect(),
            line: true,
            radius: 3.0,
        }]
    } else {
        // A mix sends its parts one after the other.
        let mut offset = 0;
        latencies
            .parts
            .iter()
            .enumerate()
            .map(|(part_idx, (name, values))| {
                let points = values
                    .iter()
                    .enumerate()
                    .map(|(idx, y)| Point {
                        x: (offset + idx + 1) as f64,
                        y: *y,
                        title: Some(format!("{name} {}: {} ms", idx + 1, fixed(*y, 2))),
                    })
                    .collect();
                offset += values.len();
                Series {
                    name: name.clone(),
                    colour: COLOURS[part_idx % COLOURS.len()],
                    points,
                    line: false,
                    radius: 4.0,
                }
            })
            .collect()
    };
    let order = xy_chart(
        &Chart {
            title: "Latency of each request, in the order sent".to_owned(),
            x: Axis {
                label: "request".to_owned(),
                scale: Scale::Linear,
            },
            y: Axis {
                label: "latency (ms)".to_owned(),
                scale: Scale::Linear,
            },
            series,
            marks: Vec::new(),
        },
        "latency",
    );
    html! {
        @if let Some(svg) = hist { (figure(&svg, Some("Successful requests by latency; the dashed lines are the nearest-rank p50 and p99."))) }
        @if let Some(svg) = order { (figure(&svg, None)) }
    }
}

/// `## Serving Metrics`: TTFT, ITL and end-to-end latency distributions and
/// latency over the session's time.
pub fn serving_section(serving: &Serving) -> Markup {
    let ok: Vec<&ServedRequest> = serving.requests.iter().filter(|it| !it.error).collect();
    let ttft = sorted(ok.iter().filter_map(|it| it.ttft_ms));
    let itl = sorted(ok.iter().flat_map(|it| it.itl_ms.iter().copied()));
    let e2e = sorted(ok.iter().map(|it| it.e2e_ms));
    let stat_row = |name: &str, values: &[f64]| {
        let pct = |p| nearest_rank(values, p).map_or_else(|| "n/a".to_owned(), |v| fixed(v, 2));
        let mean = if values.is_empty() {
            "n/a".to_owned()
        } else {
            fixed(values.iter().sum::<f64>() / values.len() as f64, 2)
        };
        vec![
            name.to_owned(),
            count(values.len() as u64),
            mean,
            pct(50.0),
            pct(90.0),
            pct(99.0),
            values
                .last()
                .map_or_else(|| "n/a".to_owned(), |v| fixed(*v, 2)),
        ]
    };
    let over_time = xy_chart(
        &Chart {
            title: "Latency over the session".to_owned(),
            x: Axis {
                label: "request sent (s after the first)".to_owned(),
                scale: Scale::Linear,
            },
            y: Axis {
                label: "latency (ms)".to_owned(),
                scale: Scale::Linear,
            },
            series: vec![
                Series {
                    name: "end-to-end".to_owned(),
                    colour: "#4e79a7",
                    points: ok
                        .iter()
                        .map(|it| Point {
                            x: it.start_s,
                            y: it.e2e_ms,
                            title: None,
                        })
                        .collect(),
                    line: false,
                    radius: 3.0,
                },
                Series {
                    name: "time to first token".to_owned(),
                    colour: "#f28e2b",
                    points: ok
                        .iter()
                        .filter_map(|it| {
                            Some(Point {
                                x: it.start_s,
                                y: it.ttft_ms?,
                                title: None,
                            })
                        })
                        .collect(),
                    line: false,
                    radius: 3.0,
                },
            ],
            marks: Vec::new(),
        },
        "latency",
    );
    let errors = serving.requests.len() - ok.len();
    html! {
        section #serving {
            h2 { "Serving Metrics" }
            p { (count(serving.requests.len() as u64)) " requests, " (count(errors as u64)) " failed." }
            (DataTable {
                id: "serving-table",
                columns: &[("Metric", Align::Left), ("Samples", Align::Right), ("Mean (ms)", Align::Right), ("p50 (ms)", Align::Right), ("p90 (ms)", Align::Right), ("p99 (ms)", Align::Right), ("Max (ms)", Align::Right)],
                rows: vec![
                    stat_row("Time to first token (TTFT)", &ttft),
                    stat_row("Inter-token latency (ITL)", &itl),
                    stat_row("End-to-end latency (E2E)", &e2e),
                ],
            })
            @for (name, values) in [("Time to first token", &ttft), ("Inter-token latency", &itl), ("End-to-end latency", &e2e)] {
                @if let Some(svg) = histogram(&format!("{name} ({} samples)", values.len()), "ms", values, &marks(values)) {
                    (figure(&svg, None))
                }
            }
            @if let Some(svg) = over_time { (figure(&svg, Some("Each request at the time it was sent."))) }
            p.note { "Percentiles use the nearest-rank method over the successful requests; ITL pools the gaps between consecutive tokens of every request." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = sorted([5.0, 1.0, 3.0, 2.0, 4.0].into_iter());
        assert_eq!(nearest_rank(&values, 50.0), Some(3.0));
        assert_eq!(nearest_rank(&values, 99.0), Some(5.0));
        assert_eq!(nearest_rank(&values, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[], 50.0), None);
    }
}
