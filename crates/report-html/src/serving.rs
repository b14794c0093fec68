//! Latency pictures: the distribution of request latency and the latency
//! of each request in the order sent, and the Serving Metrics section
//! (the numbers of `report.md`'s section, the TTFT and E2E distributions
//! and latency over the session's time) when the workload recorded them.

use maud::{Markup, html};
use profile_compare::Latencies;
use report_plot::{Axis, Chart, Mark, Point, Scale, Series, histogram, xy_chart};
use session_report::format::fixed;
use session_report::{Distribution, RequestPoint, ServingReport, WorkloadSummary};

use crate::page::{Align, DataTable, figure};

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

/// The p50 and p99 of a distribution as marks, as the tables give them.
fn dist_marks(dist: &Distribution) -> Vec<Mark> {
    let mut res = vec![Mark {
        x: dist.median,
        label: format!("p50 {} ms", fixed(dist.median, 1)),
    }];
    if let Some((_, v)) = dist.percentiles.iter().find(|(p, _)| *p == 99.0) {
        res.push(Mark {
            x: *v,
            label: format!("p99 {} ms", fixed(*v, 1)),
        });
    }
    res
}

/// `## Serving Metrics`: the same text and cells as `report.md`'s section
/// (`session_report::serving_section`), the TTFT and end-to-end latency
/// histograms, the cumulative distribution and latency over the session.
pub fn serving_section(report: &ServingReport, cdf: Option<&str>) -> Markup {
    let section = session_report::serving_section(report);
    let ok: Vec<_> = report.points.iter().filter(|it| it.ok).collect();
    let ttft = sorted(ok.iter().filter_map(|it| it.ttft_ms));
    let e2e = sorted(ok.iter().filter_map(|it| it.e2e_ms));
    // One point per request, or for a long run the fastest and the
    // slowest of each run of consecutive requests.
    let scatter = |name: &str, colour: &'static str, pick: fn(&RequestPoint) -> Option<f64>| {
        let values: Vec<f64> = ok.iter().map(|it| pick(it).unwrap_or(f64::NAN)).collect();
        Series {
            name: name.to_owned(),
            colour,
            points: report_plot::envelope(&values, report_plot::MAX_POINTS)
                .into_iter()
                .map(|i| Point {
                    x: ok[i].start_s,
                    y: values[i],
                    title: Some(format!("request {}", ok[i].id)),
                })
                .collect(),
            line: false,
            radius: 3.0,
        }
    };
    let thinned = ok.len() > report_plot::MAX_POINTS;
    let over_time = xy_chart(
        &Chart {
            title: if thinned {
                "Latency over the session (the fastest and slowest of each run of consecutive requests)".to_owned()
            } else {
                "Latency over the session".to_owned()
            },
            x: Axis {
                label: "request sent (s into the measured phase)".to_owned(),
                scale: Scale::Linear,
            },
            y: Axis {
                label: "latency (ms)".to_owned(),
                scale: Scale::Linear,
            },
            series: vec![
                scatter("end-to-end", "#4e79a7", |it| it.e2e_ms),
                scatter("time to first token", "#f28e2b", |it| it.ttft_ms),
            ],
            marks: Vec::new(),
        },
        "latency",
    );
    let headers: Vec<(&str, Align)> = section
        .latency_headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), if i == 0 { Align::Left } else { Align::Right }))
        .collect();
    let histograms = [
        ("Time to first token", &ttft, &report.ttft_ms),
        ("End-to-end latency", &e2e, &report.e2e_ms),
    ];
    html! {
        section #serving {
            h2 { "Serving Metrics" }
            p { @for line in &section.intro { (line) " " } }
            (DataTable {
                id: "serving-metrics",
                columns: &[("Metric", Align::Left), ("Value", Align::Right)],
                rows: section.metrics.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect(),
            })
            (DataTable {
                id: "serving-table",
                columns: &headers,
                rows: section.latency_rows.clone(),
            })
            @for note in &section.notes { p.note { (note) } }
            @if let Some(svg) = cdf { (figure(svg, Some("The share of completed requests at or under each latency; the dashed lines are the medians."))) }
            @for (name, values, dist) in histograms {
                @if let Some(dist) = dist {
                    @if let Some(svg) = histogram(&format!("{name} ({} requests)", values.len()), "ms", values, &dist_marks(dist)) {
                        (figure(&svg, None))
                    }
                }
            }
            @if let Some(svg) = over_time { (figure(&svg, Some("Each completed request at the time it was sent."))) }
            p.note { "The numbers are bench_serving's (see Definitions): percentiles interpolate between the two nearest ranks, ITL pools every gap between chunks, each split evenly over the tokens its chunk added." }
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
