//! `report.md`: the seed session document's sections, filled from the
//! analysis and the run metadata.

use trace_analysis::{Analysis, OpKind, OpStats, is_wait, note_for};
use trace_model::{PS_PER_US, Phase, ps_to_ms};

use crate::format::{Table, bytes, cell, code, code_cell, count, fixed, ms, shell_word};
use crate::{RunMetadata, TraceFileInfo, WorkloadSummary};

/// Which file the numbers come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    ChromeJson,
    XPlane,
}

/// What the report says about JAX's 1,000,000-event cap on `trace.json.gz`.
#[derive(Clone, Debug, PartialEq)]
pub enum Truncation {
    /// The JSON is under the cap (or was not analysed).
    None,
    /// The JSON hit the cap, so the `xplane.pb` was analysed instead.
    /// `json_share` is the JSON's traced time over the XPlane's.
    XPlaneInstead { json_events: u64, json_share: f64 },
    /// The JSON hit the cap and there is no `xplane.pb`.
    Unrecoverable { json_events: u64 },
}

/// The whole session as Chrome trace JSON, written beside the report
/// because JAX's own JSON does not hold it: capped at 1,000,000 events, or
/// absent with only an `xplane.pb`.
#[derive(Clone, Debug, PartialEq)]
pub struct FullTrace {
    /// The file it was exported from, as shown in the report.
    pub source: String,
    /// The files, as linked from the report: one, or numbered chunks.
    pub files: Vec<String>,
    /// Events written, metadata (process and thread names) not counted.
    pub events: u64,
    /// At most this many events per file.
    pub chunk_events: u64,
    /// The client's requests it holds as the "Requests" process, when it
    /// holds them.
    pub requests: Option<RequestsOnTrace>,
}

/// The client's requests on the full trace, and how their clock was
/// placed on the trace's.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestsOnTrace {
    pub requests: u64,
    /// `same clock`, `profiler call round trips`, `start call round trip`
    /// or `assumed`.
    pub method: String,
    /// The client's clock minus the server's, in nanoseconds, when the
    /// server's times are known.
    pub offset_ns: Option<i64>,
    /// The placement is right to within plus or minus this.
    pub uncertainty_ns: u64,
    /// The alignment in words, one sentence.
    pub description: String,
    /// The slowest waits for a first token inside the profiler's window,
    /// slowest first, with what the server did during each.
    pub waits: Vec<RequestWait>,
}

/// What the server did while one request waited for its first token: the
/// operations with the most self time inside the wait, on the device
/// planes and on the host (docs/metrics.md).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestWait {
    /// The request's id (its place in send order).
    pub id: u64,
    pub slot: u32,
    pub ttft_ms: f64,
    pub device: Vec<WaitOp>,
    pub host: Vec<WaitOp>,
    /// Whether the trace has device planes at all.
    pub device_planes: bool,
}

/// One operation's self time inside a wait.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitOp {
    pub name: String,
    pub self_ms: f64,
    /// Its events that overlap the wait.
    pub count: u64,
}

/// py-spy results for the report, per sampled process.
#[derive(Clone, Debug, PartialEq)]
pub struct PySpySection {
    /// The py-spy file the numbers come from, as shown in the report.
    pub source: String,
    /// The flamegraph SVG, as a link relative to `report.md`.
    pub flamegraph: Option<String>,
    pub processes: Vec<PySpyProcess>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PySpyProcess {
    /// `pid 18887 sglang::scheduler`.
    pub label: String,
    /// `scheduler`, `detokenizer`, `HTTP server and tokenizer` or `other`.
    pub role: String,
    pub samples: u64,
    /// Samples whose leaf is a blocking call.
    pub wait_samples: u64,
    /// (function, samples), most first.
    pub top_own: Vec<(String, u64)>,
    pub top_total: Vec<(String, u64)>,
}

/// Everything one report is made of.
pub struct ReportInput<'a> {
    pub metadata: &'a RunMetadata,
    pub analysis: &'a Analysis,
    /// The analysed file, as shown in the report and in `summary.json`.
    pub source: String,
    pub format: TraceFormat,
    pub truncation: Truncation,
    /// Names of the XPlane planes, when an `xplane.pb` was read.
    pub planes: Vec<String>,
    pub files: Vec<TraceFileInfo>,
    /// The folder to give TensorBoard or xprof as `--logdir`.
    pub logdir: String,
    /// The file to open in Perfetto.
    pub perfetto_file: String,
    /// The whole session for Perfetto, when sglprof wrote it.
    pub full_trace: Option<FullTrace>,
    pub top_n: usize,
    pub pyspy: Option<PySpySection>,
    /// The device view, one entry per device plane (empty without any).
    pub devices: &'a [trace_device::DevicePlane],
    /// The step plot file of each device plane, as linked from the report
    /// (same order as `devices`; may be shorter).
    pub step_plots: Vec<String>,
    /// The serving metrics of the measured phase, when the run folder has
    /// per-request records.
    pub serving: Option<crate::ServingReport>,
    /// The latency distribution plot, as linked from the report.
    pub serving_plot: Option<String>,
}

/// Renders `report.md`.
pub fn render_markdown(input: &ReportInput<'_>) -> String {
    let mut out = String::new();
    header(input, &mut out);
    if let Some(serving) = input.serving.as_ref().filter(|it| !it.load.traced) {
        // A session without the profiler has no trace to describe.
        crate::serving::render_serving(serving, input.serving_plot.as_deref(), &mut out);
        reproduction(input.metadata, &mut out);
        cost(input.metadata, &mut out);
        return out;
    }
    executive_summary(input, &mut out);
    if let Some(serving) = &input.serving {
        crate::serving::render_serving(serving, input.serving_plot.as_deref(), &mut out);
    }
    trace_files(input, &mut out);
    analysis_results(input, &mut out);
    crate::device::section(input, &mut out);
    waits_section(input, &mut out);
    // The serving section covers the workload when there is one.
    if let (None, Some(workload)) = (&input.serving, &input.metadata.workload) {
        workload_section(workload, &mut out);
    }
    if let Some(pyspy) = &input.pyspy {
        pyspy_section(pyspy, &mut out);
    }
    observations(input, &mut out);
    definitions(&mut out);
    how_to_view(input, &mut out);
    reproduction(input.metadata, &mut out);
    cost(input.metadata, &mut out);
    out
}

fn or_unknown(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "unknown".to_owned(), cell)
}

fn endpoint_title(endpoint: Option<&str>) -> String {
    match endpoint {
        Some("/generate") => "Generate Endpoint".to_owned(),
        Some("/v1/score") => "Score Endpoint".to_owned(),
        Some(other) => format!("{other} Endpoint"),
        None => "JAX Profile".to_owned(),
    }
}

fn header(input: &ReportInput<'_>, out: &mut String) {
    let meta = input.metadata;
    let date = meta.date.as_deref().unwrap_or("unknown date");
    out.push_str(&format!(
        "# Profiling Session: {date} {}\n\n",
        endpoint_title(meta.endpoint.as_deref())
    ));
    let mut table = Table::new(&["", ""]);
    let rows = [
        ("Date", &meta.date),
        ("Model", &meta.model),
        ("Hardware", &meta.hardware),
        ("Zone", &meta.zone),
        ("Endpoint", &meta.endpoint),
        ("JAX Version", &meta.jax_version),
        ("sglang-jax Version", &meta.sglang_jax_version),
    ];
    for (key, value) in rows {
        table.row(vec![format!("**{key}**"), or_unknown(value)]);
    }
    table.render(out);
    out.push('\n');
}

/// XLA operations by self time, heaviest first.
fn xla_ops(analysis: &Analysis) -> Vec<&OpStats> {
    let mut res: Vec<&OpStats> = analysis
        .ops
        .iter()
        .filter(|it| matches!(it.kind, OpKind::Xla { .. }))
        .collect();
    res.sort_by(|a, b| b.self_ps.cmp(&a.self_ps).then_with(|| a.name.cmp(&b.name)));
    res
}

fn wait_ops(analysis: &Analysis) -> Vec<&OpStats> {
    let mut res: Vec<&OpStats> = analysis.ops.iter().filter(|it| is_wait(&it.name)).collect();
    res.sort_by(|a, b| b.self_ps.cmp(&a.self_ps).then_with(|| a.name.cmp(&b.name)));
    res
}

/// The operation that stands for one model execution: the heaviest one
/// whose name contains `run_model` (`jit_jitted_run_model`,
/// `PjitFunction(run_model)`, ...).
fn model_op(analysis: &Analysis) -> Option<&OpStats> {
    analysis.ops.iter().find(|it| it.name.contains("run_model"))
}

/// A piece of running text: plain words, a name shown as code, or a
/// strong lead-in. The Markdown and the HTML report render the same spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    Text(String),
    Code(String),
    Strong(String),
}

/// Builds a list of [`Span`]s.
#[derive(Default)]
struct Spans(Vec<Span>);

impl Spans {
    fn text(&mut self, text: impl Into<String>) -> &mut Self {
        self.0.push(Span::Text(text.into()));
        self
    }

    fn code(&mut self, text: impl Into<String>) -> &mut Self {
        self.0.push(Span::Code(text.into()));
        self
    }

    fn strong(&mut self, text: impl Into<String>) -> &mut Self {
        self.0.push(Span::Strong(text.into()));
        self
    }
}

/// Spans as Markdown: code through [`code`], strong text in `**`.
pub fn spans_markdown(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|it| match it {
            Span::Text(text) => text.clone(),
            Span::Code(text) => code(text),
            Span::Strong(text) => format!("**{text}**"),
        })
        .collect()
}

/// The Executive Summary paragraph.
pub fn summary_spans(input: &ReportInput<'_>) -> Vec<Span> {
    let analysis = input.analysis;
    let mut text = Spans::default();
    text.text(format!(
        "sglprof analysed {} events covering {} ms of traced time",
        count(analysis.total_events),
        ms(analysis.traced_time_ps() as i128)
    ));
    for (idx, (_, name)) in analysis.processes.iter().enumerate() {
        text.text(if idx == 0 { " in " } else { ", " }).code(name);
    }
    text.text(" from ").code(&input.source).text(".");
    if let Some(top) = analysis.ops.first() {
        text.text(" The heaviest operation by total time is ")
            .code(top.display_name())
            .text(format!(
                " ({} ms over {} calls).",
                ms(top.total_ps),
                count(top.count)
            ));
    }
    let xla = xla_ops(analysis);
    if let Some(dominant) = xla.first() {
        let xla_self: i128 = xla.iter().map(|it| it.self_ps).sum();
        text.text(format!(
            " XLA operations account for {} ms of self time; the dominant one is ",
            ms(xla_self)
        ))
        .code(dominant.display_name())
        .text(format!(" ({} ms self).", ms(dominant.self_ps)));
    } else {
        text.text(" The trace holds no XLA operations.");
    }
    let waits: i128 = wait_ops(analysis).iter().map(|it| it.self_ps).sum();
    if waits > 0 {
        text.text(format!(
            " Threads spent {} ms blocked in queues, waits and locks.",
            ms(waits)
        ));
    }
    if let Some(workload) = &input.metadata.workload {
        text.text(format!(" The workload sent {} ", count(workload.requests)))
            .code(&workload.endpoint)
            .text(format!(
                " requests at concurrency {}: p50 {} ms, p99 {} ms, {} requests/s, {} errors.",
                workload.concurrency,
                fixed(workload.latency_ms.p50, 2),
                fixed(workload.latency_ms.p99, 2),
                fixed(workload.throughput_rps, 2),
                count(workload.errors)
            ));
    }
    match &input.truncation {
        Truncation::None => {}
        Truncation::XPlaneInstead { json_share, .. } => {
            text.text(" The ")
                .code("trace.json.gz")
                .text(format!(
                    " hit JAX's 1,000,000-event cap and covers only {}% of the session, so these numbers come from the ",
                    fixed(json_share * 100.0, 1)
                ))
                .code("xplane.pb")
                .text(".");
        }
        Truncation::Unrecoverable { .. } => {
            text.text(" ")
                .strong("Warning:")
                .text(" the ")
                .code("trace.json.gz")
                .text(" hit JAX's 1,000,000-event cap and no ")
                .code("xplane.pb")
                .text(" was found, so these numbers cover only the start of the session.");
        }
    }
    text.0
}

fn executive_summary(input: &ReportInput<'_>, out: &mut String) {
    out.push_str("## Executive Summary\n\n");
    out.push_str(&spans_markdown(&summary_spans(input)));
    out.push_str("\n\n");
}

/// What a trace file is for, as the Trace Files table says.
pub fn file_purpose(path: &str) -> &'static str {
    if path.ends_with(".trace.json.gz") {
        "Perfetto trace (compressed)"
    } else if path.ends_with(".trace.json") {
        "Perfetto trace (decompressed)"
    } else if path.ends_with(".xplane.pb") {
        "TensorBoard/xprof XPlane format"
    } else if path.ends_with(".speedscope.json") {
        "py-spy profile (speedscope)"
    } else if path.ends_with(".raw.txt") {
        "py-spy profile (collapsed stacks)"
    } else {
        "other artifact"
    }
}

fn trace_files(input: &ReportInput<'_>, out: &mut String) {
    out.push_str("## Trace Files\n\n");
    if let Some(url) = &input.metadata.archive_url {
        out.push_str(&format!(
            "The run is archived in Google Cloud Storage:\n\n```bash\ncargo xtask artifacts download {}\n```\n\n",
            shell_word(url)
        ));
    }
    let mut table = Table::new(&["File", "Size", "Purpose"]);
    for file in &input.files {
        table.row(vec![
            code_cell(&file.path),
            bytes(file.size_bytes),
            file_purpose(&file.path).to_owned(),
        ]);
    }
    table.render(out);
    out.push('\n');
}

fn phases_text(analysis: &Analysis) -> String {
    analysis
        .phases
        .iter()
        .map(|it| {
            let label = match it.phase {
                Phase::Missing => "(none)".to_owned(),
                phase => format!("{} ({})", it.label(), phase.description()),
            };
            format!("{label}: {}", count(it.count))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn op_row(op: &OpStats, bold: bool, self_exact: bool) -> Vec<String> {
    let self_cell = if self_exact {
        ms(op.self_ps)
    } else {
        "n/a".to_owned()
    };
    let cells = vec![
        cell(op.display_name()),
        ms(op.total_ps),
        count(op.count),
        fixed(op.avg_ps() / 1e9, 2),
        ms(op.max_ps as i128),
        self_cell,
    ];
    if bold {
        cells.into_iter().map(|it| format!("**{it}**")).collect()
    } else {
        cells
    }
}

fn analysis_results(input: &ReportInput<'_>, out: &mut String) {
    let analysis = input.analysis;
    out.push_str("## Trace Analysis Results\n\n");
    let format = match input.format {
        TraceFormat::ChromeJson => "Chrome trace JSON",
        TraceFormat::XPlane => "XPlane",
    };
    out.push_str(&format!(
        "Analysed file: {} ({format}).\n\n",
        code(&input.source)
    ));
    match &input.truncation {
        Truncation::None => {}
        Truncation::XPlaneInstead { json_events, json_share } => out.push_str(&format!(
            "> **Note:** the `trace.json.gz` holds {} complete events, JAX's export cap, and covers only {}% of the traced time of the `xplane.pb`. The numbers below come from the `xplane.pb`, which holds the whole session.\n\n",
            count(*json_events),
            fixed(json_share * 100.0, 1)
        )),
        Truncation::Unrecoverable { json_events } => out.push_str(&format!(
            "> **Warning:** the `trace.json.gz` holds {} complete events, JAX's export cap, and no `xplane.pb` was found. JAX keeps the earliest events, so the numbers below cover only the start of the session.\n\n",
            count(*json_events)
        )),
    }
    if !input.planes.is_empty() {
        let device = input.planes.iter().any(|it| it.starts_with("/device:"));
        out.push_str(&format!(
            "XPlane planes: {}.{}\n\n",
            input
                .planes
                .iter()
                .map(|it| code(it))
                .collect::<Vec<_>>()
                .join(", "),
            if device {
                ""
            } else {
                " There is no device plane: no accelerator activity was traced."
            }
        ));
    }

    out.push_str("### Overview\n\n");
    let mut table = Table::new(&["Metric", "Value"]);
    table.row(vec![
        "Total events".to_owned(),
        count(analysis.total_events),
    ]);
    table.row(vec![
        "Unique operations".to_owned(),
        count(analysis.unique_operations() as u64),
    ]);
    table.row(vec![
        "Total traced time".to_owned(),
        format!("{} ms", ms(analysis.traced_time_ps() as i128)),
    ]);
    table.row(vec!["Event phases".to_owned(), phases_text(analysis)]);
    if analysis.unmatched_begin + analysis.unmatched_end + analysis.invalid_events > 0 {
        table.row(vec![
            "Events left out".to_owned(),
            format!(
                "{} unclosed B, {} unmatched E, {} without valid time",
                count(analysis.unmatched_begin),
                count(analysis.unmatched_end),
                count(analysis.invalid_events)
            ),
        ]);
    }
    table.render(out);
    out.push('\n');

    out.push_str("### Top Operations by Total Time\n\n");
    let mut table = Table::new(&[
        "Operation",
        "Total (ms)",
        "Count",
        "Avg (ms)",
        "Max (ms)",
        "Self (ms)",
    ]);
    let heaviest_xla = analysis
        .ops
        .iter()
        .position(|it| matches!(it.kind, OpKind::Xla { .. }));
    let shown = input.top_n.min(analysis.ops.len());
    for (idx, op) in analysis.ops.iter().take(shown).enumerate() {
        table.row(op_row(
            op,
            Some(idx) == heaviest_xla,
            analysis.self_time_exact,
        ));
    }
    if let Some(idx) = heaviest_xla.filter(|&idx| idx >= shown) {
        table.row(op_row(&analysis.ops[idx], true, analysis.self_time_exact));
    }
    table.render(out);
    out.push_str(
        "\nThe heaviest XLA operation is in bold (added as a last row when it is not in the top list).\n\n",
    );
    if !analysis.self_time_exact {
        out.push_str("Self time is not shown: the trace's threads were not in time order and it was analysed in one streaming pass.\n\n");
    }

    if crate::device::operations(input, out) {
        return;
    }
    out.push_str("### TPU/XLA Operations\n\n");
    let accel: Vec<&OpStats> = analysis.accelerator_ops().take(input.top_n).collect();
    let n_accel = analysis.accelerator_ops().count();
    if n_accel == 0 {
        out.push_str("No XLA operations or PjRt/TPU runtime events were traced.\n\n");
    } else if accel.is_empty() {
        out.push_str(&format!(
            "{} XLA operations or PjRt/TPU runtime events were traced; none is listed (`--top 0`).\n\n",
            count(n_accel as u64)
        ));
    } else {
        let dominant = xla_ops(analysis).first().map(|it| it.name.clone());
        let mut table = Table::new(&["Operation", "Total (ms)", "Count", "Notes"]);
        for op in accel {
            let mut note = note_for(&op.name, op.kind).unwrap_or("").to_owned();
            if let OpKind::Xla { device: true } = op.kind {
                note.push_str(", on device");
            }
            if dominant.as_deref() == Some(op.name.as_str()) {
                note.push_str(", dominant XLA operation by self time");
            }
            table.row(vec![
                cell(op.display_name()),
                ms(op.total_ps),
                count(op.count),
                note,
            ]);
        }
        table.render(out);
        out.push('\n');
    }
}

fn workload_section(workload: &WorkloadSummary, out: &mut String) {
    out.push_str("### Workload Latency\n\n");
    out.push_str(&format!(
        "{}.\n\n",
        workload.description.trim_end_matches('.')
    ));
    let mut table = Table::new(&[
        "Requests",
        "Concurrency",
        "Errors",
        "Mean (ms)",
        "p50 (ms)",
        "p90 (ms)",
        "p99 (ms)",
        "Max (ms)",
        "Throughput (req/s)",
    ]);
    let add = |part: &WorkloadSummary, label: Option<&str>| {
        let mut cells = Vec::new();
        if let Some(label) = label {
            cells.push(cell(label));
        }
        cells.extend(crate::format::workload_cells(part));
        cells
    };
    if workload.parts.is_empty() {
        table.row(add(workload, None));
        table.render(out);
    } else {
        let mut table = Table::new(&[
            "Part",
            "Requests",
            "Concurrency",
            "Errors",
            "Mean (ms)",
            "p50 (ms)",
            "p90 (ms)",
            "p99 (ms)",
            "Max (ms)",
            "Throughput (req/s)",
        ]);
        for part in &workload.parts {
            table.row(add(part, Some(&part.description)));
        }
        table.row(add(workload, Some("all")));
        table.render(out);
    }
    if let Some(tokens) = workload.output_tokens_per_s {
        out.push_str(&format!(
            "\nGenerated tokens per second: {}.\n",
            fixed(tokens, 1)
        ));
    }
    out.push_str(&format!(
        "\nLatency is measured by the client from sending a request to reading its whole answer; percentiles use the nearest-rank method; throughput is successful requests over the {} s wall time of the workload.\n\n",
        fixed(workload.wall_s, 2)
    ));
}

pub(crate) fn pyspy_section(pyspy: &PySpySection, out: &mut String) {
    out.push_str("### Python Profile (py-spy)\n\n");
    out.push_str(&format!(
        "From {}. *Own* samples have the function at the top of the stack; *total* samples have it anywhere in the stack (each sample counted once per function).\n\n",
        code(&pyspy.source)
    ));
    if let Some(link) = &pyspy.flamegraph {
        out.push_str(&format!("Flamegraph: [{link}]({link})\n\n"));
    }
    let all: u64 = pyspy.processes.iter().map(|it| it.samples).sum();
    let share = |n: u64, of: u64| {
        if of == 0 {
            "0.0".to_owned()
        } else {
            fixed(n as f64 * 100.0 / of as f64, 1)
        }
    };
    let mut overview = Table::new(&[
        "Process",
        "Role",
        "Samples",
        "Share of samples %",
        "Waiting %",
    ]);
    for process in &pyspy.processes {
        overview.row(vec![
            cell(&process.label),
            cell(&process.role),
            count(process.samples),
            share(process.samples, all),
            share(process.wait_samples, process.samples),
        ]);
    }
    overview.render(out);
    out.push_str("\n*Share of samples*: the process's samples over all samples. *Waiting*: its samples whose innermost frame is a blocking call (socket receive, poll, select, sleep, wait, lock acquire, queue get, an idle event loop) over its samples.\n\n");
    for process in &pyspy.processes {
        out.push_str(&format!(
            "#### {}: {} ({} samples)\n\n",
            cell(&process.role),
            cell(&process.label),
            count(process.samples)
        ));
        let mut table = Table::new(&[
            "Function",
            "Own samples",
            "Own %",
            "Function ",
            "Total samples",
            "Total %",
        ]);
        let pct = |n: u64| {
            if process.samples == 0 {
                "0.0".to_owned()
            } else {
                fixed(n as f64 * 100.0 / process.samples as f64, 1)
            }
        };
        let rows = process.top_own.len().max(process.top_total.len());
        for idx in 0..rows {
            let own = process.top_own.get(idx);
            let total = process.top_total.get(idx);
            table.row(vec![
                own.map_or(String::new(), |it| cell(&it.0)),
                own.map_or(String::new(), |it| count(it.1)),
                own.map_or(String::new(), |it| pct(it.1)),
                total.map_or(String::new(), |it| cell(&it.0)),
                total.map_or(String::new(), |it| count(it.1)),
                total.map_or(String::new(), |it| pct(it.1)),
            ]);
        }
        table.render(out);
        out.push('\n');
    }
}

/// The numbered Observations, one list of spans each.
pub fn observation_spans(input: &ReportInput<'_>) -> Vec<Vec<Span>> {
    let analysis = input.analysis;
    let mut items: Vec<Vec<Span>> = Vec::new();

    let waits = wait_ops(analysis);
    let wait_self: i128 = waits.iter().map(|it| it.self_ps).sum();
    if wait_self > 0 {
        let calls: u64 = waits.iter().map(|it| it.count).sum();
        let mut item = Spans::default();
        item.strong("Waiting in queues and locks").text(format!(
            ": {} ms of self time in {} blocking calls, summed over all threads (the traced window is {} ms). Largest: ",
            ms(wait_self),
            count(calls),
            ms(analysis.traced_time_ps() as i128),
        ));
        for (idx, it) in waits.iter().take(3).enumerate() {
            if idx > 0 {
                item.text(", ");
            }
            item.code(it.display_name())
                .text(format!(" {} ms", ms(it.self_ps)));
        }
        item.text(". Self time is used so that nested waits (a queue ")
            .code("get")
            .text(" inside which a lock is acquired) are counted once.");
        items.push(item.0);
    }

    if let Some(model) = model_op(analysis) {
        let mut item = Spans::default();
        item.strong("Model execution")
            .text(": ")
            .code(model.display_name())
            .text(format!(
                " ran {} times for {} ms in total, {} ms per call on average (max {} ms).",
                count(model.count),
                ms(model.total_ps),
                fixed(model.avg_ps() / 1e9, 2),
                ms(model.max_ps as i128)
            ));
        items.push(item.0);
    }

    let xla = xla_ops(analysis);
    if let Some(dominant) = xla.first() {
        let xla_self: i128 = xla.iter().map(|it| it.self_ps).sum();
        let share = if xla_self > 0 {
            dominant.self_ps as f64 / xla_self as f64
        } else {
            0.0
        };
        let mut item = Spans::default();
        item.strong("Dominant XLA operation")
            .text(": ")
            .code(dominant.display_name())
            .text(format!(
                " ({}) took {} ms of self time over {} calls, {}% of the self time of all {} XLA operations.",
                note_for(&dominant.name, dominant.kind).unwrap_or("XLA operation"),
                ms(dominant.self_ps),
                count(dominant.count),
                fixed(share * 100.0, 1),
                count(xla.len() as u64)
            ));
        items.push(item.0);
    }

    let allocs: Vec<&OpStats> = analysis
        .ops
        .iter()
        .filter(|it| note_for(&it.name, it.kind) == Some("memory allocation"))
        .collect();
    let mut item = Spans::default();
    item.strong("Memory allocation");
    if allocs.is_empty() {
        item.text(": no allocator events were traced.");
    } else {
        let n: u64 = allocs.iter().map(|it| it.count).sum();
        let total: i128 = allocs.iter().map(|it| it.total_ps).sum();
        item.text(format!(
            ": {} allocation events took {} ms in total, {} µs each on average.",
            count(n),
            ms(total),
            fixed(total as f64 / n as f64 / PS_PER_US as f64, 2)
        ));
    }
    items.push(item.0);

    let compiles: Vec<&OpStats> = analysis
        .ops
        .iter()
        .filter(|it| note_for(&it.name, it.kind) == Some("compilation"))
        .collect();
    if let Some(top) = compiles.first() {
        let mut item = Spans::default();
        item.strong("Compilation during the profile")
            .text(": ")
            .code(top.display_name())
            .text(format!(
                " ran {} times ({} ms). XLA compiled new shapes inside the traced window; warm up with the same request shapes before profiling to keep compilation out of the numbers.",
                count(top.count),
                ms(top.total_ps)
            ));
        items.push(item.0);
    }

    if let Truncation::Unrecoverable { .. } = input.truncation {
        let mut item = Spans::default();
        item.strong("Truncated trace")
            .text(": the numbers cover only the start of the session; keep the ")
            .code("xplane.pb")
            .text(" next to the ")
            .code("trace.json.gz")
            .text(" to analyse all of it.");
        items.push(item.0);
    }
    items
}

fn observations(input: &ReportInput<'_>, out: &mut String) {
    out.push_str("### Observations\n\n");
    for (idx, item) in observation_spans(input).iter().enumerate() {
        out.push_str(&format!("{}. {}\n\n", idx + 1, spans_markdown(item)));
    }
}

/// The definitions under the section, in inline Markdown (`**`, backticks).
pub const METRIC_DEFINITIONS: [&str; 8] = [
    "**Total events**: every entry of the trace, whatever its phase, including entries without a phase (JAX writes an empty `{}` last). For an `xplane.pb`: one event per XEvent plus one metadata event per plane and per line.",
    "**Operation**: a complete event (`X`), or a `B`/`E` pair matched on the same thread; operations are grouped by exact name. Display names drop the Python tracer's leading `$`.",
    "**Unique operations**: the number of distinct operation names.",
    "**Total traced time**: the latest end minus the earliest start over all events that have a timestamp (metadata events have none).",
    "**Total / Count / Avg / Max**: the sum, number, mean (total over count) and largest of an operation's durations.",
    "**Self**: the sum over an operation's events of its duration minus the durations of its direct children, the operations on the same thread that lie entirely within it.",
    "**XLA operation**: an operation whose events carry an `hlo_op` or `hlo_module` argument, or run on a `/device:` plane other than its `XLA Modules` and `Steps` lines. **XLA module**: an event of a device's `XLA Modules` line, one whole program execution; modules are listed but never count as the heaviest or dominant XLA operation. **Runtime event**: a `Class::method` name whose class contains Tpu, PjRt, Thunk, Compiler, Allocator, Executable or Client.",
    "**Blocked time**: the self time of Python functions named `wait`, `acquire`, `sleep` or `join`, of `queue.py` `get`, and of `select`/`poll` in the `select` and `selectors` modules.",
];

fn definitions(out: &mut String) {
    out.push_str("### Metric Definitions\n\n");
    for line in METRIC_DEFINITIONS {
        out.push_str(&format!("- {line}\n"));
    }
    out.push('\n');
}

/// "While the Slowest Requests Waited": the top operations by self time
/// inside each of the slowest waits for a first token.
fn waits_section(input: &ReportInput<'_>, out: &mut String) {
    let Some(requests) = input
        .full_trace
        .as_ref()
        .and_then(|it| it.requests.as_ref())
        .filter(|it| !it.waits.is_empty())
    else {
        return;
    };
    let device = requests.waits.iter().any(|w| w.device_planes);
    out.push_str(
        "## While the Slowest Requests Waited

",
    );
    out.push_str(&format!(
        "The {} requests with the longest time to first token whose whole wait (from being sent to the first token) lies inside the profiler's window, and the operations with the most self time inside each wait: each event that overlaps the wait counts only its part inside it, minus the parts of the events nested in it there (docs/metrics.md). The waits are placed on the trace as its \"Requests\" process is: {}.\n\n",
        requests.waits.len(),
        requests.description
    ));
    let ops = |ops: &[crate::WaitOp]| {
        if ops.is_empty() {
            return "nothing traced".to_owned();
        }
        ops.iter()
            .take(3)
            .map(|op| format!("{} {:.3}", code_cell(&op.name), op.self_ms))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if device {
        out.push_str("| Request | Slot | TTFT ms | Device: most self time (ms) | Host: most self time (ms) |\n|---:|---:|---:|---|---|\n");
    } else {
        out.push_str(
            "| Request | Slot | TTFT ms | Host: most self time (ms) |\n|---:|---:|---:|---|\n",
        );
    }
    for wait in &requests.waits {
        out.push_str(&format!(
            "| {} | {} | {:.3} |",
            wait.id, wait.slot, wait.ttft_ms
        ));
        if device {
            out.push_str(&format!(" {} |", ops(&wait.device)));
        }
        out.push_str(&format!(" {} |\n", ops(&wait.host)));
    }
    out.push('\n');
}

fn how_to_view(input: &ReportInput<'_>, out: &mut String) {
    out.push_str("## How to View Traces\n\n");
    out.push_str("### Perfetto (Recommended)\n\n");
    let xplane = input.perfetto_file.ends_with(".xplane.pb");
    let steps = |file: &str| {
        format!(
            "1. Open https://ui.perfetto.dev\n2. Drag and drop {file}\n3. Keyboard shortcuts:\n   - `W/S`: Zoom in/out\n   - `A/D`: Pan left/right\n   - `F`: Fit to view\n\n"
        )
    };
    // `cargo xtask trace` needs the xplane.pb: the JSON alone is no more
    // than what Perfetto already reads.
    let trace_source = match (&input.full_trace, &input.truncation) {
        (Some(full), _) => Some(full.source.as_str()),
        (None, _) if xplane => Some(input.perfetto_file.as_str()),
        (None, Truncation::XPlaneInstead { .. }) => Some(input.source.as_str()),
        (None, _) => None,
    };
    match &input.full_trace {
        Some(full) => {
            let why = if xplane {
                "This run has no Chrome trace JSON, only the `xplane.pb`, which Perfetto cannot open"
            } else if matches!(input.truncation, Truncation::None) && full.requests.is_some() {
                "JAX's `trace.json.gz` does not show the client's requests"
            } else {
                "JAX's `trace.json.gz` stops at 1,000,000 events and holds only the start of this session"
            };
            let events = count(full.events);
            match full.files.as_slice() {
                [one] => out.push_str(&format!(
                    "{why}, so sglprof wrote the whole session ({events} events) from {} as {}:\n\n{}",
                    code(&full.source),
                    code(one),
                    steps(&code(one))
                )),
                many => {
                    let first = many.first().map(String::as_str).unwrap_or_default();
                    let last = many.last().map(String::as_str).unwrap_or_default();
                    out.push_str(&format!(
                        "{why}, so sglprof wrote the whole session ({events} events) from {} as {} files of at most {} events each, {} to {}, each with every process and thread name. Perfetto's UI opens one at a time:\n\n{}",
                        code(&full.source),
                        many.len(),
                        count(full.chunk_events),
                        code(first),
                        code(last),
                        steps(&format!("one of them ({} is the start of the session)", code(first)))
                    ));
                }
            }
        }
        None if xplane => out.push_str(&format!(
            "Perfetto cannot open {}: it reads Chrome trace JSON (`.trace.json.gz`), which this run does not have. Convert it with `cargo xtask trace` (below), or use TensorBoard or xprof.\n\n",
            code(&input.perfetto_file)
        )),
        None => {
            out.push_str(&steps(&code(&input.perfetto_file)));
            match input.truncation {
                Truncation::None => {}
                Truncation::XPlaneInstead { .. } => out.push_str(
                    "This file stops at JAX's 1,000,000-event cap and holds only the start of the session; `cargo xtask trace` (below) writes the whole session from the `xplane.pb`.\n\n",
                ),
                Truncation::Unrecoverable { .. } => out.push_str(
                    "This file stops at JAX's 1,000,000-event cap and holds only the start of the session; without the `xplane.pb` the rest is lost.\n\n",
                ),
            }
        }
    }
    if let Some(requests) = input
        .full_trace
        .as_ref()
        .and_then(|it| it.requests.as_ref())
    {
        out.push_str(&format!(
            "Its \"Requests\" process shows the client's {} requests on the server's timeline, one track per concurrency slot, each request split at its first token (`to first token`, then `decode`); {}.\n\n",
            count(requests.requests),
            requests.description
        ));
    }
    if let Some(source) = trace_source {
        out.push_str(&format!(
            "A window of the session, or chunks that Perfetto's UI opens comfortably when a session has more than 1,000,000 events:\n\n```bash\ncargo xtask trace {0} --out window.json.gz --from-ms 1000 --to-ms 2000\ncargo xtask trace {0} --out trace.json.gz --split-events 1000000\n```\n\n",
            shell_word(source)
        ));
    }
    out.push_str("### TensorBoard / xprof\n\n");
    out.push_str(&format!(
        "```bash\npip install tensorboard xprof\ntensorboard --logdir {} --port 6006\n# Open http://localhost:6006 > Profile tab\n# or, without TensorBoard:\nxprof --logdir={} --port=8791\n```\n\n",
        shell_word(&input.logdir),
        shell_word(&input.logdir)
    ));
    if let Some(url) = &input.metadata.archive_url {
        out.push_str(&format!(
            "### Download from GCS\n\n```bash\ncargo xtask artifacts download {}\n```\n\n",
            shell_word(url)
        ));
    }
}

fn reproduction(meta: &RunMetadata, out: &mut String) {
    if meta.reproduction.is_empty() && meta.profile.is_none() {
        return;
    }
    out.push_str("## Reproduction\n\n");
    if let Some(profile) = &meta.profile {
        let mut parts = Vec::new();
        if let Some(n) = profile.num_steps {
            parts.push(format!("num_steps {n}"));
        }
        if let Some(n) = profile.host_tracer_level {
            parts.push(format!("host_tracer_level {n}"));
        }
        if let Some(n) = profile.python_tracer_level {
            parts.push(format!("python_tracer_level {n}"));
        }
        if parts.is_empty() {
            parts.push("server defaults".to_owned());
        }
        out.push_str(&format!("Profiler settings: {}.\n\n", parts.join(", ")));
        let level = match profile.python_tracer_level {
            Some(0) => None,
            Some(n) => Some(format!("python_tracer_level {n}")),
            None => Some("the server's default python_tracer_level, 1".to_owned()),
        };
        if let Some(level) = level {
            out.push_str(&format!(
                "The Python tracer was on ({level}): it records every Python call, which inflates host time \
                 (upstream measured decode time per token go from 43 ms to 130 ms with it); \
                 read host timings with `--python-tracer-level 0` on a server that honours it.\n\n"
            ));
        }
    }
    if !meta.reproduction.is_empty() {
        out.push_str("```bash\n");
        for line in &meta.reproduction {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("```\n\n");
    }
}

fn cost(meta: &RunMetadata, out: &mut String) {
    if meta.cost.is_empty() {
        return;
    }
    out.push_str("## Cost Summary\n\n");
    let mut table = Table::new(&["Resource", "Duration", "Cost"]);
    let mut total = 0.0;
    for row in &meta.cost {
        total += row.cost_usd;
        table.row(vec![
            cell(&row.resource),
            cell(&row.duration),
            format!("${}{}", fixed(row.cost_usd, 3), row.unit),
        ]);
    }
    table.render(out);
    if let Some(source) = &meta.cost_source {
        out.push_str(&format!("\nPrices: {source}.\n"));
    }
    let _ = total;
    out.push('\n');
}

/// The traced time in milliseconds, for `summary.json`.
pub(crate) fn traced_ms(analysis: &Analysis) -> f64 {
    ps_to_ms(analysis.traced_time_ps() as i128)
}
