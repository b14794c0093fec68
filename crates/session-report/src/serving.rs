//! The serving side of a session: what load was sent (`ServingMetadata`,
//! kept in the run metadata) and what it measured (`ServingReport`,
//! computed from `inputs/requests.jsonl` by `serving-workload`), rendered
//! as the report's "Serving Metrics" section, the `serving` object of
//! `summary.json` and the latency distribution SVG.
//!
//! Both types are plain data: the Markdown here and any other rendering
//! (the HTML report) start from the same values.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::format::{Table, cell, count, fixed};

/// How the serving load of a session was made and sent. Written by the
/// session driver into the run metadata; every field is what the flags
/// said, so a report can be made again from the run folder alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingMetadata {
    /// `/generate` or `/v1/score`.
    pub endpoint: String,
    /// The dataset in words: `random (input 128, output 32, range ratio 0.5)`.
    pub dataset: String,
    pub seed: u64,
    /// Requests per second of the arrival process; `None` is `inf` (every
    /// request is due at once, the closed loop when a cap is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// The shape of the gamma-distributed gaps (1 is a Poisson process).
    pub burstiness: f64,
    /// Requests in flight at most; `None` when uncapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// Whether `/generate` answers were streamed (TTFT and ITL need it).
    pub stream: bool,
    /// Percentiles reported besides the median, e.g. `[90, 99]`.
    pub percentiles: Vec<f64>,
    /// Service-level objectives for goodput, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// `false` for a `--no-trace` session: the JAX profiler did not run.
    pub traced: bool,
    /// When the profiler ran: from the answer of `/start_profile` to the
    /// call of `/stop_profile`, in nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_window: Option<Window>,
    /// The round trips of `/start_profile` and `/stop_profile` on the
    /// client's clock, to place the server's trace on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiler_calls: Option<ProfilerCalls>,
    /// Whether the client and the server read the same wall clock (the
    /// server ran on the client's machine); `None` in run folders written
    /// before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_clock: Option<bool>,
    /// Requests sent before the measured phase (not measured).
    pub warmup_requests: u64,
    /// The per-request records, relative to the run folder.
    pub records: String,
}

/// Service-level objectives in milliseconds; a request meets them when
/// each one given holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
}

/// When the profiler calls were sent and when their answers arrived, on
/// the client's clock: the server started (stopped) its trace somewhere
/// inside each window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilerCalls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Window>,
}

/// A span of wall-clock time, nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Summary statistics of one latency, in milliseconds. `median` and the
/// percentiles interpolate linearly between the two nearest ranks (NumPy's
/// default, which `bench_serving` uses); `std` is the population standard
/// deviation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    pub count: u64,
    pub mean: f64,
    pub std: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// `(p, value)` for each reported percentile.
    pub percentiles: Vec<(f64, f64)>,
}

/// Requests that met every objective of the SLO.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goodput {
    pub slo: Slo,
    pub good: u64,
    /// `good` over every request of the measured phase (failed ones never
    /// meet an objective).
    pub share: f64,
    /// `good` per second of the measured phase.
    pub requests_per_s: f64,
}

/// Which requests of the measured phase overlapped the traced window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlap {
    pub count: u64,
    /// Inclusive ranges of request ids, in order.
    pub ranges: Vec<(u64, u64)>,
}

/// One request, for the plots: where it started in the phase and how long
/// it took.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestPoint {
    pub id: u64,
    /// Seconds from the start of the measured phase to the send.
    pub start_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
    pub ok: bool,
}

/// The serving metrics of the measured phase, with `bench_serving`'s
/// definitions (see `docs/metrics.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingReport {
    pub load: ServingMetadata,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// From the first request's due time to the last answer's end.
    pub duration_s: f64,
    /// Σ of the dataset's prompt lengths over completed requests.
    pub total_input_tokens: u64,
    /// Σ of the server's `completion_tokens` over completed requests.
    pub total_output_tokens: u64,
    /// Σ of the server's `prompt_tokens` over completed requests.
    pub server_prompt_tokens: u64,
    /// Σ of the server's `cached_tokens` over completed requests.
    pub cached_tokens: u64,
    /// `cached_tokens / server_prompt_tokens`, when the server counted any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_hit_rate: Option<f64>,
    pub request_throughput: f64,
    pub input_throughput: f64,
    pub output_throughput: f64,
    pub total_throughput: f64,
    /// Σ E2E over the duration: the mean number of requests in flight.
    pub mean_concurrency: f64,
    /// The most requests in flight at one instant.
    pub peak_concurrency: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Distribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<Distribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<Distribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<Distribution>,
    /// The server's own `meta_info.e2e_latency`, for the same requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_e2e_ms: Option<Distribution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
    /// `None` for an untraced session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    /// Every request of the measured phase, in id order (not written to
    /// `summary.json`).
    #[serde(default, skip_serializing)]
    pub points: Vec<RequestPoint>,
}

/// The file the latency distribution plot is written to, beside the report.
pub const SERVING_PLOT: &str = "serving-latency.svg";

fn percentile_label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("P{}", p as u64)
    } else {
        format!("P{p}")
    }
}

fn ms_cell(value: f64) -> String {
    fixed(value, 2)
}

/// `0-12, 14, 20-63`.
fn ranges_text(ranges: &[(u64, u64)]) -> String {
    ranges
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate_text(rate: Option<f64>) -> String {
    match rate {
        None => "inf".to_owned(),
        Some(rate) => fixed(rate, 2),
    }
}

/// The "Serving Metrics" section as text and cells, the same for every
/// renderer (`report.md` here, `report.html` in `report-html`): the load in
/// a sentence, the throughput table in the order of `bench_serving`'s result
/// block, the latency table, and the notes under them.
#[derive(Clone, Debug, PartialEq)]
pub struct ServingSection {
    /// The paragraph above the tables.
    pub intro: Vec<String>,
    /// `(metric, value)` rows.
    pub metrics: Vec<(String, String)>,
    pub latency_headers: Vec<String>,
    pub latency_rows: Vec<Vec<String>>,
    /// Sentences under the tables.
    pub notes: Vec<String>,
}

/// The section's content for `report`.
pub fn serving_section(report: &ServingReport) -> ServingSection {
    let load = &report.load;
    let intro = vec![
        format!(
            "{} requests to `{}` from the dataset {} (seed {}), request rate {} per second{}, max concurrency {}; {}, {}.",
            count(report.requests),
            load.endpoint,
            cell(&load.dataset),
            load.seed,
            rate_text(load.request_rate),
            if load.request_rate.is_some() && load.burstiness != 1.0 {
                format!(" (burstiness {})", fixed(load.burstiness, 2))
            } else {
                String::new()
            },
            load.max_concurrency
                .map_or_else(|| "not set".to_owned(), |c| c.to_string()),
            if load.stream {
                "streamed"
            } else {
                "not streamed"
            },
            if load.traced {
                "traced by the JAX profiler"
            } else {
                "without the JAX profiler (`--no-trace`)"
            },
        ),
        format!(
            "{} warmup request(s) ran before, outside the measured phase; every request is recorded in `{}`.",
            count(load.warmup_requests),
            load.records
        ),
    ];
    let mut metrics = Vec::new();
    let mut row = |name: &str, value: String| metrics.push((name.to_owned(), value));
    row("Successful requests", count(report.completed));
    row("Failed requests", count(report.failed));
    row("Benchmark duration (s)", fixed(report.duration_s, 2));
    row("Total input tokens", count(report.total_input_tokens));
    row("Total generated tokens", count(report.total_output_tokens));
    row(
        "Request throughput (req/s)",
        fixed(report.request_throughput, 2),
    );
    row(
        "Input token throughput (tok/s)",
        fixed(report.input_throughput, 2),
    );
    row(
        "Output token throughput (tok/s)",
        fixed(report.output_throughput, 2),
    );
    row(
        "Total token throughput (tok/s)",
        fixed(report.total_throughput, 2),
    );
    row("Concurrency (mean)", fixed(report.mean_concurrency, 2));
    row("Concurrency (peak)", count(report.peak_concurrency));
    row("Prompt tokens (server)", count(report.server_prompt_tokens));
    row("Cached tokens (server)", count(report.cached_tokens));
    row(
        "Cache hit rate",
        report.cache_hit_rate.map_or_else(
            || "n/a".to_owned(),
            |r| format!("{} %", fixed(r * 100.0, 1)),
        ),
    );
    if let Some(good) = &report.goodput {
        row(
            "Goodput (req/s)",
            format!(
                "{} ({} of requests met {})",
                fixed(good.requests_per_s, 2),
                format_args!("{} %", fixed(good.share * 100.0, 1)),
                slo_text(&good.slo)
            ),
        );
    }
    let mut latency_headers: Vec<String> = ["Latency (ms)", "Count", "Mean", "Std", "Median"]
        .iter()
        .map(|it| (*it).to_owned())
        .collect();
    latency_headers.extend(load.percentiles.iter().map(|p| percentile_label(*p)));
    latency_headers.push("Max".to_owned());
    let mut latency_rows = Vec::new();
    let rows = [
        ("TTFT", &report.ttft_ms),
        ("ITL", &report.itl_ms),
        ("TPOT", &report.tpot_ms),
        ("E2E", &report.e2e_ms),
        ("E2E (server)", &report.server_e2e_ms),
    ];
    for (name, dist) in rows {
        let Some(dist) = dist else { continue };
        let mut cells = vec![
            name.to_owned(),
            count(dist.count),
            ms_cell(dist.mean),
            ms_cell(dist.std),
            ms_cell(dist.median),
        ];
        for p in &load.percentiles {
            let value = dist
                .percentiles
                .iter()
                .find(|(q, _)| q == p)
                .map_or_else(|| "n/a".to_owned(), |(_, v)| ms_cell(*v));
            cells.push(value);
        }
        cells.push(ms_cell(dist.max));
        latency_rows.push(cells);
    }
    let mut notes = Vec::new();
    if report.ttft_ms.is_none() {
        notes.push(
            "TTFT, ITL and TPOT need streamed answers (`--stream`); this load was not streamed."
                .to_owned(),
        );
    }
    if let Some(first) = &report.first_error {
        notes.push(format!("First error: {}", cell(first)));
    }
    match (&report.overlap, load.traced) {
        (Some(overlap), _) => notes.push(format!(
            "Requests that overlapped the traced window: {} of {} ({}).",
            count(overlap.count),
            count(report.requests),
            if overlap.ranges.is_empty() {
                "none".to_owned()
            } else {
                format!("ids {}", ranges_text(&overlap.ranges))
            }
        )),
        (None, true) => notes.push("The traced window was not recorded.".to_owned()),
        (None, false) => {}
    }
    ServingSection {
        intro,
        metrics,
        latency_headers,
        latency_rows,
        notes,
    }
}

/// Renders the "Serving Metrics" section of `report.md`.
pub fn render_serving(report: &ServingReport, plot: Option<&str>, out: &mut String) {
    let section = serving_section(report);
    out.push_str("## Serving Metrics\n\n");
    for line in &section.intro {
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    let mut table = Table::new(&["Metric", "Value"]);
    for (name, value) in section.metrics {
        table.row(vec![name, value]);
    }
    table.render(out);
    out.push('\n');
    let headers: Vec<&str> = section.latency_headers.iter().map(String::as_str).collect();
    let mut table = Table::new(&headers);
    for row in section.latency_rows {
        table.row(row);
    }
    table.render(out);
    for note in &section.notes {
        let _ = writeln!(out, "\n{note}");
    }
    if let Some(plot) = plot {
        let _ = writeln!(
            out,
            "\n![Cumulative distribution of TTFT and E2E latency]({plot})"
        );
    }
    out.push('\n');
}

fn slo_text(slo: &Slo) -> String {
    let mut parts = Vec::new();
    if let Some(ms) = slo.ttft_ms {
        parts.push(format!("TTFT ≤ {} ms", fixed(ms, 0)));
    }
    if let Some(ms) = slo.tpot_ms {
        parts.push(format!("TPOT ≤ {} ms", fixed(ms, 0)));
    }
    if let Some(ms) = slo.e2e_ms {
        parts.push(format!("E2E ≤ {} ms", fixed(ms, 0)));
    }
    parts.join(", ")
}

/// The latency distributions as cumulative curves: for each latency in
/// milliseconds (x), the share of completed requests that took at most
/// that long (y, in %); one curve for TTFT (when streamed) and one for
/// E2E. Drawn by `report-plot`, like every picture of the reports. A
/// curve of more than [`report_plot::MAX_POINTS`] requests draws that many
/// evenly spaced ranks, its first and last included. `None` when no
/// request completed.
pub fn serving_plot(report: &ServingReport) -> Option<String> {
    let sorted = |pick: fn(&RequestPoint) -> Option<f64>| {
        let mut values: Vec<f64> = report
            .points
            .iter()
            .filter(|p| p.ok)
            .filter_map(pick)
            .filter(|v| v.is_finite())
            .collect();
        values.sort_by(f64::total_cmp);
        values
    };
    let e2e = sorted(|p| p.e2e_ms);
    if e2e.is_empty() {
        return None;
    }
    let ttft = sorted(|p| p.ttft_ms);
    // A step at each value: the share rises by 1/n at each request.
    let cdf = |name: &str, colour: &'static str, values: &[f64]| {
        let n = values.len() as f64;
        // A long run draws evenly spaced ranks, not every request.
        let points = report_plot::curve_ranks(values.len(), report_plot::MAX_POINTS)
            .into_iter()
            .map(|i| (i, &values[i]))
            .map(|(i, ms)| report_plot::Point {
                x: *ms,
                y: (i + 1) as f64 / n * 100.0,
                title: Some(format!(
                    "{name} {} ms: {} of {}",
                    fixed(*ms, 1),
                    i + 1,
                    values.len()
                )),
            })
            .collect();
        report_plot::Series {
            name: name.to_owned(),
            colour,
            points,
            line: true,
            radius: 0.0,
        }
    };
    let mut series = Vec::new();
    let mut marks = Vec::new();
    if !ttft.is_empty() {
        series.push(cdf("TTFT", "#1f77b4", &ttft));
        marks.push(report_plot::Mark {
            x: median_of(&ttft),
            label: "TTFT p50".to_owned(),
        });
    }
    series.push(cdf("E2E", "#d62728", &e2e));
    marks.push(report_plot::Mark {
        x: median_of(&e2e),
        label: "E2E p50".to_owned(),
    });
    report_plot::xy_chart(
        &report_plot::Chart {
            title: format!(
                "Latency distribution of the {} completed requests",
                e2e.len()
            ),
            x: report_plot::Axis {
                label: "latency (ms)".to_owned(),
                scale: report_plot::Scale::Linear,
            },
            y: report_plot::Axis {
                label: "requests at or under (%)".to_owned(),
                scale: report_plot::Scale::Linear,
            },
            series,
            marks,
        },
        "serving-latency",
    )
}

/// The median of sorted values, interpolated between the middle two.
fn median_of(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The file name of a sweep's load-latency curve, beside its `index.md`.
pub const LOAD_LATENCY_PLOT: &str = "load-latency.svg";

/// One variant of a sweep on the load-latency curve: its measured request
/// throughput and its TTFT and TPOT medians and 99th percentiles (`None`
/// when the variant has no such value).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPoint {
    pub variant: String,
    pub request_throughput: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
}

impl LoadPoint {
    /// The point of a variant whose report has the serving metrics.
    pub fn of(variant: &str, report: &ServingReport) -> LoadPoint {
        let p99 = |d: &Option<Distribution>| {
            d.as_ref().and_then(|d| {
                d.percentiles
                    .iter()
                    .find(|(p, _)| (*p - 99.0).abs() < 1e-9)
                    .map(|(_, v)| *v)
            })
        };
        LoadPoint {
            variant: variant.to_owned(),
            request_throughput: report.request_throughput,
            ttft_p50_ms: report.ttft_ms.as_ref().map(|d| d.median),
            ttft_p99_ms: p99(&report.ttft_ms),
            tpot_p50_ms: report.tpot_ms.as_ref().map(|d| d.median),
            tpot_p99_ms: p99(&report.tpot_ms),
        }
    }
}

/// The load-latency curve of a sweep: request throughput (x) against
/// TTFT and TPOT at p50 and p99 (y, logarithmic, so that both fit), one
/// point per variant, joined in the sweep's order. `None` with fewer than
/// two variants that have a latency.
pub fn load_latency_plot(points: &[LoadPoint]) -> Option<String> {
    let series = |name: &str, colour: &'static str, pick: fn(&LoadPoint) -> Option<f64>| {
        report_plot::Series {
            name: name.to_owned(),
            colour,
            points: points
                .iter()
                .filter_map(|p| {
                    let y = pick(p).filter(|v| v.is_finite() && *v > 0.0)?;
                    Some(report_plot::Point {
                        x: p.request_throughput,
                        y,
                        title: Some(format!(
                            "{}: {} req/s, {name} {} ms",
                            p.variant,
                            fixed(p.request_throughput, 2),
                            fixed(y, 1)
                        )),
                    })
                })
                .collect(),
            line: true,
            radius: 4.0,
        }
    };
    let series: Vec<report_plot::Series> = [
        series("TTFT p50", "#1f77b4", |p| p.ttft_p50_ms),
        series("TTFT p99", "#aec7e8", |p| p.ttft_p99_ms),
        series("TPOT p50", "#d62728", |p| p.tpot_p50_ms),
        series("TPOT p99", "#ff9896", |p| p.tpot_p99_ms),
    ]
    .into_iter()
    .filter(|s| !s.points.is_empty())
    .collect();
    if series.iter().all(|s| s.points.len() < 2) {
        return None;
    }
    report_plot::xy_chart(
        &report_plot::Chart {
            title: "Load-latency curve: one point per variant, in the sweep's order".to_owned(),
            x: report_plot::Axis {
                label: "request throughput (completed requests/s)".to_owned(),
                scale: report_plot::Scale::Linear,
            },
            y: report_plot::Axis {
                label: "latency (ms)".to_owned(),
                scale: report_plot::Scale::Log,
            },
            series,
            marks: Vec::new(),
        },
        "load-latency",
    )
}
