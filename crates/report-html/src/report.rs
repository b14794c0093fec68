//! `report.html`: the session report as a page, from the same
//! [`ReportInput`] as `report.md`, in the seed report's order.

use maud::{Markup, html};
use profile_compare::Latencies;
use session_report::format::{bytes, count, fixed, ms, percent, workload_cells};
use session_report::{
    DEVICE_DEFINITIONS, METRIC_DEFINITIONS, ReportInput, Span, TraceFormat, WorkloadSummary,
    file_purpose, observation_spans, summary_spans,
};
use trace_analysis::OpKind;
use trace_device::{DevicePlane, step_stats};
use trace_model::Ps;

use crate::page::{Align, DataTable, card, copy_block, document, facts, figure, inline_md};
use crate::serving::{latency_figures, serving_section};

/// The flamegraph of one sampled process.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessFlame {
    /// `scheduler pid 18887`.
    pub label: String,
    /// Stacks, frames root first, with their sample counts.
    pub stacks: Vec<(Vec<String>, u64)>,
}

/// What the page shows beyond the Markdown report's input.
pub struct ReportPage<'a> {
    pub report: &'a ReportInput<'a>,
    /// The per-request latencies of the profiled workload
    /// (`inputs/latencies.json`), when the run has them.
    pub latencies: Option<&'a Latencies>,
    /// The serving CDF's SVG (`session_report::serving_plot`), when the
    /// report has serving metrics.
    pub serving_plot: Option<&'a str>,
    /// One flamegraph per sampled process, when py-spy ran.
    pub flamegraphs: &'a [ProcessFlame],
}

fn ps_ms(ps: Ps) -> String {
    ms(i128::from(ps))
}

/// A rate or ratio with three or four significant digits: `123,457`,
/// `1,235`, `12.3`, `1.23` (a page of 100,000 ops stays under 10 MB).
fn rate(value: Option<f64>) -> String {
    match value {
        Some(it) if it.abs() >= 100.0 => fixed(it, 0),
        Some(it) if it.abs() >= 10.0 => fixed(it, 1),
        Some(it) => fixed(it, 2),
        None => "n/a".to_owned(),
    }
}

fn spans(spans: &[Span]) -> Markup {
    html! {
        @for span in spans {
            @match span {
                Span::Text(text) => (text),
                Span::Code(text) => code { (text) },
                Span::Strong(text) => strong { (text) },
            }
        }
    }
}

/// An id for an element from free text: `/device:TPU:0` -> `device-tpu-0`.
pub(crate) fn slug(text: &str) -> String {
    let mut res = String::new();
    for c in trace_model::shown_name(text).chars() {
        if c.is_ascii_alphanumeric() {
            res.push(c.to_ascii_lowercase());
        } else if !res.ends_with('-') {
            res.push('-');
        }
    }
    res.trim_matches('-').to_owned()
}

/// Renders `report.html`.
pub fn render_report(page: &ReportPage<'_>) -> String {
    let input = page.report;
    let meta = input.metadata;
    let date = meta.date.as_deref().unwrap_or("unknown date");
    let endpoint = match meta.endpoint.as_deref() {
        Some("/generate") => "Generate Endpoint".to_owned(),
        Some("/v1/score") => "Score Endpoint".to_owned(),
        Some(other) => format!("{other} Endpoint"),
        None => "JAX Profile".to_owned(),
    };
    let title = format!("Profiling Session: {date} {endpoint}");
    let unknown = |it: &Option<String>| it.clone().unwrap_or_else(|| "unknown".to_owned());
    let header = html! {
        h1 { (title) }
        (facts(&[
            ("Date", unknown(&meta.date)),
            ("Model", unknown(&meta.model)),
            ("Hardware", unknown(&meta.hardware)),
            ("Zone", unknown(&meta.zone)),
            ("Endpoint", unknown(&meta.endpoint)),
            ("JAX Version", unknown(&meta.jax_version)),
            ("sglang-jax Version", unknown(&meta.sglang_jax_version)),
        ]))
    };
    let mut toc = vec![("summary", "Summary")];
    if input.serving.is_some() {
        toc.push(("serving", "Serving"));
    } else if meta.workload.is_some() {
        toc.push(("workload", "Workload"));
    }
    toc.push(("operations", "Operations"));
    if !input.devices.is_empty() {
        toc.push(("devices", "Devices"));
    }
    let waits = input
        .full_trace
        .as_ref()
        .and_then(|it| it.requests.as_ref())
        .filter(|it| !it.waits.is_empty());
    if waits.is_some() {
        toc.push(("waits", "Slowest waits"));
    }
    if input.pyspy.is_some() {
        toc.push(("pyspy", "py-spy"));
    }
    toc.extend([("observations", "Observations"), ("files", "Trace files")]);
    if !meta.reproduction.is_empty() {
        toc.push(("reproduction", "Reproduction"));
    }
    toc.push(("definitions", "Definitions"));
    let content = html! {
        (summary(input))
        @if let Some(serving) = &input.serving {
            (serving_section(serving, page.serving_plot))
        } @else if let Some(workload) = &meta.workload {
            (workload_section(workload, page.latencies))
        }
        (operations(input))
        @if !input.devices.is_empty() {
            section #devices {
                h2 { "Device Activity" }
                p.note { "Device time is taken from the device clock when the events carry it, else from the trace's timestamps." }
                @for plane in input.devices { (device(plane)) }
            }
        }
        @if let Some(requests) = waits { (waits_section(requests)) }
        @if let Some(pyspy) = &input.pyspy { (pyspy_section(pyspy, page.flamegraphs)) }
        section #observations {
            h2 { "Observations" }
            ol { @for item in observation_spans(input) { li { (spans(&item)) } } }
        }
        (files(input))
        @if !meta.reproduction.is_empty() {
            section #reproduction {
                h2 { "Reproduction" }
                p { "The one command line that runs this session again:" }
                (copy_block("reproduction-lines", &meta.reproduction.join("\n")))
            }
        }
        @if !meta.cost.is_empty() {
            section #cost {
                h2 { "Cost Summary" }
                (DataTable {
                    id: "cost-table",
                    columns: &[("Resource", Align::Left), ("Duration", Align::Left), ("Cost", Align::Right)],
                    rows: meta.cost.iter().map(|row| vec![
                        row.resource.clone(),
                        row.duration.clone(),
                        format!("${}{}", fixed(row.cost_usd, 3), row.unit),
                    ]).collect(),
                })
                @if let Some(source) = &meta.cost_source { p.note { "Prices: " (source) "." } }
            }
        }
        section #definitions {
            h2 { "Definitions" }
            ul { @for line in METRIC_DEFINITIONS { li { (inline_md(line)) } } }
            @if !input.devices.is_empty() {
                ul { @for line in DEVICE_DEFINITIONS { li { (inline_md(line)) } } }
            }
            p.note { "The same numbers, as Markdown: " a href="report.md" { "report.md" } "; for machines: " a href="summary.json" { "summary.json" } "." }
        }
    };
    document(&title, header, &toc, content)
}

fn summary(input: &ReportInput<'_>) -> Markup {
    let analysis = input.analysis;
    let busy: Ps = input.devices.iter().map(|it| it.busy_ps).sum();
    let window: Ps = input.devices.iter().map(|it| it.window_ps).sum();
    let workload = input.metadata.workload.as_ref();
    html! {
        section #summary {
            h2 { "Executive Summary" }
            div.cards {
                (card(&count(analysis.total_events), "events"))
                (card(&format!("{} ms", ms(analysis.traced_time_ps() as i128)), "traced time"))
                (card(&count(analysis.unique_operations() as u64), "unique operations"))
                @if let Some(workload) = workload {
                    (card(&format!("{} ms", fixed(workload.latency_ms.p50, 2)), "request latency p50"))
                    (card(&format!("{} ms", fixed(workload.latency_ms.p99, 2)), "request latency p99"))
                    (card(&fixed(workload.throughput_rps, 2), "requests/s"))
                }
                @if !input.devices.is_empty() {
                    (card(&percent(window - busy, window), "device idle"))
                }
            }
            p { (spans(&summary_spans(input))) }
        }
    }
}

fn workload_section(workload: &WorkloadSummary, latencies: Option<&Latencies>) -> Markup {
    let columns = [
        ("Part", Align::Left),
        ("Requests", Align::Right),
        ("Concurrency", Align::Right),
        ("Errors", Align::Right),
        ("Mean (ms)", Align::Right),
        ("p50 (ms)", Align::Right),
        ("p90 (ms)", Align::Right),
        ("p99 (ms)", Align::Right),
        ("Max (ms)", Align::Right),
        ("Throughput (req/s)", Align::Right),
    ];
    let row = |part: &WorkloadSummary, label: &str| {
        let mut cells = vec![label.to_owned()];
        cells.extend(workload_cells(part));
        cells
    };
    let mut rows: Vec<Vec<String>> = workload
        .parts
        .iter()
        .map(|part| row(part, &part.description))
        .collect();
    rows.push(row(workload, "all"));
    html! {
        section #workload {
            h2 { "Workload Latency" }
            p { (workload.description.trim_end_matches('.')) "." }
            (DataTable { id: "workload-table", columns: &columns, rows })
            @if let Some(tokens) = workload.output_tokens_per_s {
                p { "Generated tokens per second: " (fixed(tokens, 1)) "." }
            }
            @if let Some(latencies) = latencies {
                (latency_figures(latencies, workload))
            }
            p.note {
                "Latency is measured by the client from sending a request to reading its whole answer; percentiles use the nearest-rank method; throughput is successful requests over the "
                (fixed(workload.wall_s, 2)) " s wall time of the workload."
            }
        }
    }
}

fn kind(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Xla { device: true } => "XLA (device)",
        OpKind::Xla { device: false } => "XLA",
        OpKind::XlaModule => "XLA module",
        OpKind::Runtime => "runtime",
        OpKind::Python => "Python",
        OpKind::Other => "other",
    }
}

fn operations(input: &ReportInput<'_>) -> Markup {
    let analysis = input.analysis;
    let exact = analysis.self_time_exact;
    // With a device view, device ops have their own tables, per device.
    let apart = !input.devices.is_empty();
    let rows = analysis
        .ops
        .iter()
        .filter(|op| !(apart && op.kind == OpKind::Xla { device: true }))
        .map(|op| {
            vec![
                trace_model::shown_name(op.display_name()).into_owned(),
                kind(op.kind).to_owned(),
                ms(op.total_ps),
                count(op.count),
                fixed(op.avg_ps() / 1e9, 2),
                ms(op.max_ps as i128),
                if exact {
                    ms(op.self_ps)
                } else {
                    "n/a".to_owned()
                },
            ]
        })
        .collect();
    let format = match input.format {
        TraceFormat::ChromeJson => "Chrome trace JSON",
        TraceFormat::XPlane => "XPlane",
    };
    html! {
        section #operations {
            h2 { "Trace Analysis Results" }
            p { "Analysed file: " code { (input.source) } " (" (format) "). Every operation of the trace, heaviest total time first; click a column to sort, type to filter." }
            @if apart {
                h3 { "Host Operations" }
                p.note { "Operations of the host threads and XLA modules; each device's operations are in its own table under Device Activity." }
            } @else {
                h3 { "Host and XLA Operations" }
            }
            (DataTable {
                id: "ops-table",
                columns: &[
                    ("Operation", Align::Code),
                    ("Kind", Align::Left),
                    ("Total (ms)", Align::Right),
                    ("Count", Align::Right),
                    ("Avg (ms)", Align::Right),
                    ("Max (ms)", Align::Right),
                    ("Self (ms)", Align::Right),
                ],
                rows,
            })
            @if !exact {
                p.note { "Self time is not shown: the trace's threads were not in time order and it was analysed in one streaming pass." }
            }
        }
    }
}

fn device(plane: &DevicePlane) -> Markup {
    let id = slug(&plane.plane);
    let peaks = &plane.peaks;
    let stats = step_stats(&plane.steps);
    let steps_svg = report_plot::steps_svg(plane);
    let roofline = report_plot::roofline_svg(plane);
    let op_rows = plane
        .ops
        .iter()
        .map(|op| {
            vec![
                trace_model::shown_name(&op.name).into_owned(),
                if op.category.is_empty() {
                    "(none)".to_owned()
                } else {
                    op.category.clone()
                },
                count(op.count),
                ps_ms(op.self_ps),
                if op.total_ps == op.self_ps {
                    String::new()
                } else {
                    ps_ms(op.total_ps)
                },
                rate(op.gflops_per_s()),
                rate(op.gbytes_per_s()),
                rate(op.intensity()),
                op.bound(peaks).unwrap_or("n/a").to_owned(),
            ]
        })
        .collect();
    let ms_ps = |ps: Ps| fixed(ps as f64 / 1e9, 3);
    html! {
        section.device #(id) {
            h3 { code { (trace_model::shown_name(&plane.plane)) } }
            div.cards {
                (card(&format!("{} ms", ps_ms(plane.window_ps)), "window"))
                (card(&format!("{} ms", ps_ms(plane.busy_ps)), "busy"))
                (card(&percent(plane.idle_ps(), plane.window_ps), "idle"))
                @if let Some(stats) = &stats {
                    (card(&format!("{} ms", ms_ps(stats.p50_ps)), "step p50"))
                }
                @if let Some(ridge) = peaks.ridge_point() {
                    (card(&format!("{} FLOP/byte", fixed(ridge, 1)), "ridge point"))
                }
            }
            @if let Some(kind) = &peaks.device_type { p { "Device type: " (kind) "." } }
            @if let Some(stats) = stats {
                h4 { "Step Time" }
                (DataTable {
                    id: &format!("{id}-steps"),
                    columns: &[("Steps", Align::Right), ("Mean (ms)", Align::Right), ("p50 (ms)", Align::Right), ("p90 (ms)", Align::Right), ("Min (ms)", Align::Right), ("Max (ms)", Align::Right), ("Stdev (ms)", Align::Right)],
                    rows: vec![vec![
                        count(stats.count as u64),
                        fixed(stats.mean_ps / 1e9, 3),
                        ms_ps(stats.p50_ps),
                        ms_ps(stats.p90_ps),
                        ms_ps(stats.min_ps),
                        ms_ps(stats.max_ps),
                        fixed(stats.stdev_ps / 1e9, 3),
                    ]],
                })
                @if let Some(svg) = &steps_svg {
                    (figure(svg, Some(if plane.steps_from_line {
                        "Each bar is a step of the device's Steps line: compute (the self time of its ops) coloured by program, idle in grey."
                    } else {
                        "The device has no Steps line: each bar is an XLA module execution, from its start to the next one's."
                    })))
                }
            }
            @if plane.idle.gaps > 0 {
                h4 { "Why Was the Device Idle" }
                p { (count(plane.idle.gaps)) " gaps between program executions, " (ps_ms(plane.idle.gap_ps)) " ms in all. For each host thread, the innermost host event running during the gaps:" }
                (DataTable {
                    id: &format!("{id}-idle"),
                    columns: &[("Host thread", Align::Left), ("Function", Align::Code), ("Overlap (ms)", Align::Right), ("Share of gaps", Align::Right), ("Gaps", Align::Right)],
                    rows: plane.idle.rows.iter().map(|row| vec![
                        trace_model::shown_name(&row.thread).into_owned(),
                        trace_model::shown_name(&row.function).into_owned(),
                        ps_ms(row.overlap_ps),
                        percent(row.overlap_ps, plane.idle.gap_ps),
                        count(row.gaps),
                    ]).collect(),
                })
            }
            @if !plane.categories.is_empty() {
                h4 { "HLO Categories" }
                (DataTable {
                    id: &format!("{id}-categories"),
                    columns: &[("Category", Align::Left), ("Ops run", Align::Right), ("Self (ms)", Align::Right), ("Share of busy", Align::Right)],
                    rows: plane.categories.iter().map(|it| vec![
                        if it.name.is_empty() { "(none)".to_owned() } else { trace_model::shown_name(&it.name).into_owned() },
                        count(it.count),
                        ps_ms(it.self_ps),
                        percent(it.self_ps, plane.busy_ps),
                    ]).collect(),
                })
            }
            h4 { "Roofline" }
            @if let Some(svg) = &roofline {
                (figure(svg, Some("Each point is an op: its FLOPs per byte accessed against its FLOPs per second of self time. Left of the ridge point the HBM bandwidth bounds an op, right of it the peak FLOP/s.")))
            } @else {
                p.note { "No op of this device carries both FLOP and byte counts, so there is no roofline." }
            }
            @if !plane.ops.is_empty() {
                h4 { "Device Operations" }
                (DataTable {
                    id: &format!("{id}-ops"),
                    columns: &[
                        ("Operation", Align::Code),
                        ("Category", Align::Left),
                        ("Count", Align::Right),
                        ("Self (ms)", Align::Right),
                        ("Total (ms)", Align::Right),
                        ("GFLOP/s", Align::Right),
                        ("GB/s", Align::Right),
                        ("FLOP/byte", Align::Right),
                        ("Bound", Align::Left),
                    ],
                    rows: op_rows,
                })
                p.note { "Total is shown only where it differs from self time (ops that hold others, such as while loops). Program ids and every number unrounded are in summary.json." }
            }
        }
    }
}

/// The slowest waits for a first token and the operations with the most
/// self time inside each, one row per operation (as report.md's section,
/// with every listed operation).
fn waits_section(requests: &session_report::RequestsOnTrace) -> Markup {
    let rows = requests
        .waits
        .iter()
        .flat_map(|wait| {
            [("device", &wait.device), ("host", &wait.host)]
                .into_iter()
                .flat_map(move |(side, ops)| {
                    ops.iter().map(move |op| {
                        vec![
                            wait.id.to_string(),
                            wait.slot.to_string(),
                            fixed(wait.ttft_ms, 3),
                            side.to_owned(),
                            op.name.clone(),
                            fixed(op.self_ms, 3),
                            count(op.count),
                        ]
                    })
                })
        })
        .collect();
    html! {
        section #waits {
            h2 { "While the Slowest Requests Waited" }
            p {
                "The " (requests.waits.len()) " requests with the longest time to first token whose whole wait lies inside the profiler's window, and the operations with the most self time inside each wait: each event that overlaps the wait counts only its part inside it, minus the parts of the events nested in it there. The waits are placed on the trace as its Requests process is: " (requests.description) "."
            }
            (DataTable {
                id: "waits-table",
                columns: &[
                    ("Request", Align::Right),
                    ("Slot", Align::Right),
                    ("TTFT (ms)", Align::Right),
                    ("Side", Align::Left),
                    ("Operation", Align::Code),
                    ("Self in the wait (ms)", Align::Right),
                    ("Events", Align::Right),
                ],
                rows,
            })
        }
    }
}

fn pyspy_section(pyspy: &session_report::PySpySection, flames: &[ProcessFlame]) -> Markup {
    let all: u64 = pyspy.processes.iter().map(|it| it.samples).sum();
    let share = |n: u64, of: u64| {
        if of == 0 {
            "0.0".to_owned()
        } else {
            fixed(n as f64 * 100.0 / of as f64, 1)
        }
    };
    html! {
        section #pyspy {
            h2 { "Python Profile (py-spy)" }
            p { "From " code { (pyspy.source) } ". Own samples have the function at the top of the stack; total samples have it anywhere in the stack." }
            (DataTable {
                id: "pyspy-processes",
                columns: &[("Process", Align::Left), ("Role", Align::Left), ("Samples", Align::Right), ("Share of samples %", Align::Right), ("Waiting %", Align::Right)],
                rows: pyspy.processes.iter().map(|it| vec![
                    it.label.clone(),
                    it.role.clone(),
                    count(it.samples),
                    share(it.samples, all),
                    share(it.wait_samples, it.samples),
                ]).collect(),
            })
            @for flame in flames {
                @let title = format!("py-spy: {}", flame.label);
                @let stacks: Vec<(Vec<&str>, u64)> = flame.stacks.iter().map(|(frames, n)| (frames.iter().map(String::as_str).collect(), *n)).collect();
                @if let Some(svg) = report_plot::flamegraph_svg(&title, &stacks) {
                    h3 { (flame.label) }
                    div.flame {
                        button.reset.js-only type="button" hidden { "Reset zoom" }
                        (figure(&svg, Some("Root at the top; a box's width is its share of the process's samples. Click a box to zoom into it. Boxes under 0.1 % of the samples are left out.")))
                    }
                }
            }
            @for (idx, process) in pyspy.processes.iter().enumerate() {
                details {
                    summary { (process.role) ": " (process.label) " (" (count(process.samples)) " samples): top functions" }
                    (DataTable {
                        id: &format!("pyspy-process-{idx}"),
                        columns: &[("Function (own)", Align::Code), ("Own samples", Align::Right), ("Function (total)", Align::Code), ("Total samples", Align::Right)],
                        rows: (0..process.top_own.len().max(process.top_total.len())).map(|idx| {
                            let own = process.top_own.get(idx);
                            let total = process.top_total.get(idx);
                            vec![
                                own.map_or(String::new(), |it| it.0.clone()),
                                own.map_or(String::new(), |it| count(it.1)),
                                total.map_or(String::new(), |it| it.0.clone()),
                                total.map_or(String::new(), |it| count(it.1)),
                            ]
                        }).collect(),
                    })
                }
            }
        }
    }
}

fn files(input: &ReportInput<'_>) -> Markup {
    let mut links: Vec<(String, String, &str)> = input
        .files
        .iter()
        .map(|it| {
            (
                it.path.clone(),
                bytes(it.size_bytes),
                file_purpose(&it.path),
            )
        })
        .collect();
    if let Some(full) = &input.full_trace {
        for file in &full.files {
            links.push((
                file.clone(),
                String::new(),
                "the whole session for Perfetto",
            ));
        }
    }
    for plot in &input.step_plots {
        links.push((plot.clone(), String::new(), "step plot (SVG)"));
    }
    html! {
        section #files {
            h2 { "Trace Files" }
            @if let Some(url) = &input.metadata.archive_url {
                p { "The run is archived in Google Cloud Storage:" }
                (copy_block("archive-download", &format!("cargo xtask artifacts download {url}")))
            }
            table.data {
                thead { tr { th { "File" } th { "Size" } th { "Purpose" } } }
                tbody {
                    @for (path, size, purpose) in &links {
                        tr { td { a href=(path) { code { (path) } } } td { (size) } td { (purpose) } }
                    }
                }
            }
            p {
                "Open " code { (input.perfetto_file) } " in Perfetto (https://ui.perfetto.dev, drag and drop), or run "
                code { "xprof --logdir=" (input.logdir) } " for TensorBoard's profile tools."
            }
        }
    }
}
