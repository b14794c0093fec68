//! Report generation as a library: given a JAX profile folder, a trace file
//! or an sglprof run folder, find the traces, choose the file to analyse
//! (the `xplane.pb` when the JSON hit JAX's event cap), read the py-spy
//! profile the run metadata names, and write `report.md` and `summary.json`
//! (with one section per host when the run holds several), with the whole
//! session as Chrome trace JSON beside them when JAX's own JSON does not
//! hold it ([`full_trace`]).
//!
//! This crate is the file-reading edge of the trace crates; rendering itself
//! is `session_report`'s pure functions. It spawns no process, does no
//! network IO, prints nothing (notes come back in [`Outcome`]) and knows no
//! command-line types. Outputs are published as one set ([`outputs`]): they
//! appear together or not at all, across crashes too, never replace an
//! input or a file sglprof did not write, and concurrent writers never mix
//! their files.

mod analyse;
pub mod compare_side;
mod discover;
pub mod export;
pub mod full_trace;
mod hosts;
pub mod outputs;
mod pyspy;
pub mod requests;
mod serving;
pub mod waits;

use std::fmt;
use std::path::{Path, PathBuf};

use session_report::{FullTrace, ReportInput, RunMetadata, TraceFileInfo, Truncation};

pub use analyse::{Chosen, analyse_json, analyse_xplane, choose, choose_with_cap, device_view};
pub use discover::list_files;
pub use outputs::{Destination, OutputSet, publish, settle};

/// Why a report could not be made. Each message is one lowercase line; the
/// cause, when there is one, is the error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A run's per-request records could not be read.
    #[error("{}: {detail}", .path.display())]
    Records { path: PathBuf, detail: String },
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    /// A request that cannot be carried out, in one line.
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: session_report::MetadataError,
    },
    #[error("{}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: trace_chrome::Error,
    },
    #[error("{}", .path.display())]
    XPlane {
        path: PathBuf,
        #[source]
        source: trace_xplane::Error,
    },
    #[error("{}", .path.display())]
    PySpy {
        path: PathBuf,
        #[source]
        source: trace_pyspy::Error,
    },
    /// An output path that would replace an input, a file sglprof did not
    /// write, or something among a JAX profile run's own files.
    #[error("{}: {why}", .path.display())]
    Refused {
        path: PathBuf,
        why: outputs::Refusal,
    },
    /// The folder's record of its outputs cannot be used.
    #[error("{}: not a record of sglprof's outputs ({detail}); remove it", .path.display())]
    Ledger { path: PathBuf, detail: String },
    /// The set was committed but a rename failed; the next command that
    /// writes or reads outputs in the folder completes it.
    #[error(
        "cannot move {} into place (the outputs of this folder are completed by the next sglprof command on it)",
        .path.display()
    )]
    Incomplete {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
    /// Run metadata named a py-spy file that is not a regular file inside
    /// the run folder (an absolute path, `..`, a symlink, a device).
    #[error("{}: run metadata names py-spy input {name:?}, which is not a regular file inside the run folder", .run.display())]
    PySpyOutside { run: PathBuf, name: String },
    #[error(
        "{}: no JAX traces found (expected plugins/profile/<run>/<host>.trace.json.gz or <host>.xplane.pb)",
        .0.display()
    )]
    NoTraces(PathBuf),
    #[error("{}: no run named {name} (found: {found})", .input.display())]
    NoRun {
        input: PathBuf,
        name: String,
        found: String,
    },
    #[error("{}: run {run} has no host named {name}", .input.display())]
    NoHost {
        input: PathBuf,
        run: String,
        name: String,
    },
}

/// Header fields given by the caller; each one set overrides the run
/// metadata file (or stands in for it when there is none).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub model: Option<String>,
    pub hardware: Option<String>,
    pub zone: Option<String>,
    /// The profiled endpoint, e.g. `/generate`.
    pub endpoint: Option<String>,
    pub jax_version: Option<String>,
    pub sglang_jax_version: Option<String>,
    /// `YYYY-MM-DD`; by default taken from the JAX run folder's name.
    pub date: Option<String>,
}

/// What to analyse and where to write.
#[derive(Clone, Debug)]
pub struct Request {
    /// A JAX `output_dir`, a `plugins/profile/<run>/` folder, a trace file,
    /// or an sglprof run folder (its `inputs/run_metadata.json` is used).
    pub input: PathBuf,
    /// Where `report.md` and `summary.json` go.
    pub out_dir: PathBuf,
    /// Rows of the top-operations tables.
    pub top_n: usize,
    /// The `plugins/profile/<run>` to analyse [default: the latest].
    pub run: Option<String>,
    /// The host to analyse [default: the first].
    pub host: Option<String>,
    /// Analyse the `xplane.pb` even when the JSON is complete.
    pub prefer_xplane: bool,
    pub overrides: Overrides,
    /// Write the whole session beside the report when JAX's JSON does not
    /// hold it (see [`full_trace`]).
    pub full_trace: bool,
    /// Events per file of the full trace
    /// [`full_trace::FULL_TRACE_CHUNK_EVENTS`].
    pub full_trace_chunk_events: u64,
    /// The number of complete events that marks a JSON as cut short
    /// ([`trace_analysis::JSON_EVENT_CAP`], JAX's).
    pub json_event_cap: u64,
}

impl Request {
    /// The defaults a session driver uses: everything from the run folder,
    /// outputs written beside it.
    pub fn for_run_folder(run_dir: &Path) -> Request {
        Request {
            input: run_dir.to_path_buf(),
            out_dir: run_dir.to_path_buf(),
            top_n: 15,
            run: None,
            host: None,
            prefer_xplane: false,
            overrides: Overrides::default(),
            full_trace: true,
            full_trace_chunk_events: full_trace::FULL_TRACE_CHUNK_EVENTS,
            json_event_cap: trace_analysis::JSON_EVENT_CAP,
        }
    }

    /// The folder the outputs go to when the caller has no preference: the
    /// input folder, or the folder of an input file; for an input inside a
    /// JAX profile run, the folder that holds its `plugins/` (see
    /// [`outputs::default_dir`]).
    pub fn default_out_dir(input: &Path) -> PathBuf {
        outputs::default_dir(input)
    }
}

/// Something the caller may want to tell the user; the report was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Several JAX runs were found; the latest was analysed.
    SeveralRuns { count: usize, chosen: String },
    /// The run has several hosts; the first was analysed.
    SeveralHosts {
        run: String,
        count: usize,
        chosen: String,
    },
    /// The JSON holds exactly JAX's export cap of events and there is no
    /// `xplane.pb` to fall back on.
    Truncated { source: PathBuf, json_events: u64 },
}

impl Note {
    /// `true` for a note the user should treat as a warning.
    pub fn is_warning(&self) -> bool {
        matches!(self, Note::Truncated { .. })
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::SeveralRuns { count, chosen } => write!(
                f,
                "{count} runs found, analysing the latest, {chosen} (choose with --run)"
            ),
            Note::SeveralHosts { run, count, chosen } => write!(
                f,
                "run {run} has {count} hosts, analysing {chosen} (choose with --host)"
            ),
            Note::Truncated {
                source,
                json_events,
            } => write!(
                f,
                "{} holds {json_events} complete events, JAX's export cap, and there is no xplane.pb: the report covers only the start of the session",
                source.display()
            ),
        }
    }
}

/// What [`generate`] did.
#[derive(Debug)]
pub struct Outcome {
    /// The full trace's files, the step plots, `summary.json`,
    /// `report.html`, the flamegraph and `report.md`, each when written,
    /// in that order.
    pub written: Vec<PathBuf>,
    pub notes: Vec<Note>,
}

/// Analyses the traces `request` names and writes `report.md` and
/// `summary.json` into its output folder, both or neither.
pub fn generate(request: &Request) -> Result<Outcome, Error> {
    let input = &request.input;
    if std::fs::symlink_metadata(input).is_err() {
        return Err(Error::NotFound(input.clone()));
    }
    let mut metadata = load_metadata(input, &request.overrides)?;
    let files = if input.is_file() {
        vec![input.clone()]
    } else {
        list_files(input)?
    };
    let runs = trace_model::locate(&files);
    let mut notes = Vec::new();
    if runs.is_empty()
        && let Some(load) = metadata.serving.as_ref().filter(|it| !it.traced)
    {
        // The untraced report needs only the metrics, counted as the
        // records are read: a run of many requests is never held.
        let report = serving::report(input, load)?;
        return untraced(request, &metadata, &report);
    }
    let requests = serving::load_requests(input, &metadata)?;
    let serving = requests
        .as_ref()
        .map(|it| serving_workload::metrics::serving_report(&it.records, &it.serving));
    let (run, host) = discover::pick(
        &runs,
        request.run.as_deref(),
        request.host.as_deref(),
        input,
        &mut notes,
    )?;
    if metadata.date.is_none() {
        metadata.date = discover::date_from_run(&run.run);
    }

    let chosen = choose_with_cap(host, request.prefer_xplane, request.json_event_cap)?;
    let (pyspy, flamegraph, flames) = match pyspy::load(input, &metadata, request.top_n)? {
        Some(loaded) => (Some(loaded.section), loaded.flamegraph, loaded.flames),
        None => (None, None, Vec::new()),
    };
    let latencies = load_latencies(input)?;

    let out_dir = &request.out_dir;
    let mut files: Vec<TraceFileInfo> = Vec::new();
    let mut read: Vec<PathBuf> = Vec::new();
    for path in [&host.trace_json, &host.xplane].into_iter().flatten() {
        files.push(file_info(path, out_dir)?);
        read.push(path.clone());
    }
    for path in pyspy::named_files(input, &metadata)? {
        files.push(file_info(&path, out_dir)?);
        read.push(path);
    }
    read.push(input.join("inputs/run_metadata.json"));
    if input.is_file() {
        read.push(input.clone());
    }
    let mut set = OutputSet::begin(Destination {
        dir: out_dir,
        inputs: &read,
        files_named: false,
    })?;
    // The fixed names are checked before the long work.
    for name in ["report.md", "summary.json"] {
        set.claim(name)?;
    }
    let logdir = discover::logdir(run);
    let perfetto = host
        .trace_json
        .as_ref()
        .or(host.xplane.as_ref())
        .unwrap_or(&chosen.source);
    // JAX's JSON cut short (the XPlane was analysed instead) or absent.
    let json_short =
        host.trace_json.is_none() || matches!(chosen.truncation, Truncation::XPlaneInstead { .. });
    // The full trace is also what puts the client's requests on the
    // server's timeline, which JAX's own JSON cannot show.
    let source = match (&host.xplane, &host.trace_json) {
        (Some(xplane), _) if json_short || requests.is_some() => Some(xplane),
        (None, Some(json)) if requests.is_some() => Some(json),
        _ => None,
    };
    let full = match source {
        Some(source) if request.full_trace => Some((
            source,
            full_trace::export(
                source,
                &mut set,
                request.full_trace_chunk_events,
                requests.as_ref(),
            )?,
        )),
        _ => None,
    };

    let plots: Vec<(String, String)> = chosen
        .devices
        .iter()
        .filter_map(|plane| {
            let svg = session_report::step_plot(plane)?;
            Some((session_report::plot_file_name(&plane.plane), svg))
        })
        .collect();
    let serving_svg = serving.as_ref().and_then(session_report::serving_plot);
    let report_input = ReportInput {
        metadata: &metadata,
        analysis: &chosen.analysis,
        source: shown(&chosen.source, out_dir),
        format: chosen.format,
        truncation: chosen.truncation.clone(),
        planes: chosen.planes.clone(),
        files,
        logdir: shown(logdir, out_dir),
        perfetto_file: shown(perfetto, out_dir),
        full_trace: full.as_ref().map(|(source, written)| FullTrace {
            source: shown(source, out_dir),
            files: written.files.iter().map(|it| shown(it, out_dir)).collect(),
            events: written.events,
            chunk_events: request.full_trace_chunk_events,
            requests: written
                .requests
                .clone()
                .map(|it| session_report::RequestsOnTrace {
                    requests: it.added.requests,
                    method: it.added.placement.method.as_str().to_owned(),
                    offset_ns: it.added.placement.offset_ns,
                    uncertainty_ns: it.added.placement.uncertainty_ns,
                    description: it.added.placement.describe(),
                    waits: it.waits,
                }),
        }),
        top_n: request.top_n,
        pyspy,
        devices: &chosen.devices,
        step_plots: plots.iter().map(|(name, _)| name.clone()).collect(),
        serving_plot: serving_svg
            .as_ref()
            .map(|_| session_report::SERVING_PLOT.to_owned()),
        serving,
    };
    let mut markdown = session_report::render_markdown(&report_input);
    let hosts = hosts::summarise(
        &run.hosts,
        (&host.host, &chosen),
        request.prefer_xplane,
        out_dir,
    )?;
    if !hosts.is_empty() {
        markdown = hosts::insert(&markdown, &hosts::render(&hosts));
    }
    let summary = session_report::render_summary_json(&report_input);
    let page = report_html::render_report(&report_html::ReportPage {
        report: &report_input,
        latencies: latencies.as_ref(),
        serving_plot: serving_svg.as_deref(),
        flamegraphs: &flames,
    });
    if let Truncation::Unrecoverable { json_events } = chosen.truncation {
        notes.push(Note::Truncated {
            source: chosen.source.clone(),
            json_events,
        });
    }
    // report.md last: a report.md a person can open is never older than
    // the files it describes.
    for (name, svg) in &plots {
        set.add(name, svg.as_bytes())?;
    }
    if let Some(svg) = &serving_svg {
        set.add(session_report::SERVING_PLOT, svg.as_bytes())?;
    }
    set.add("summary.json", summary.as_bytes())?;
    set.add("report.html", page.as_bytes())?;
    if let Some(svg) = &flamegraph {
        set.add(pyspy::FLAMEGRAPH, svg.as_bytes())?;
    }
    set.add("report.md", markdown.as_bytes())?;
    // A new full trace replaces every chunk of an older one.
    let replaces_full_trace = full.is_some();
    let stale = |name: &str| replaces_full_trace && full_trace::is_full_trace_name(name);
    let written = set.publish(&stale)?;
    Ok(Outcome { written, notes })
}

/// The report of a session run without the JAX profiler: the serving
/// metrics and what the run metadata says, no trace sections.
fn untraced(
    request: &Request,
    metadata: &RunMetadata,
    serving: &session_report::ServingReport,
) -> Result<Outcome, Error> {
    let out_dir = &request.out_dir;
    let inputs = [request.input.join("inputs/run_metadata.json")];
    let mut set = OutputSet::begin(Destination {
        dir: out_dir,
        inputs: &inputs,
        files_named: false,
    })?;
    let analysis = trace_analysis::Analyzer::new().finish();
    let svg = session_report::serving_plot(serving);
    let report_input = ReportInput {
        metadata,
        analysis: &analysis,
        source: String::new(),
        format: session_report::TraceFormat::ChromeJson,
        truncation: Truncation::None,
        planes: Vec::new(),
        files: Vec::new(),
        logdir: String::new(),
        perfetto_file: String::new(),
        full_trace: None,
        top_n: request.top_n,
        pyspy: None,
        devices: &[],
        step_plots: Vec::new(),
        serving: Some(serving.clone()),
        serving_plot: svg
            .as_ref()
            .map(|_| session_report::SERVING_PLOT.to_owned()),
    };
    let markdown = session_report::render_markdown(&report_input);
    let summary = session_report::render_summary_json(&report_input);
    let page = report_html::render_report(&report_html::ReportPage {
        report: &report_input,
        latencies: None,
        serving_plot: svg.as_deref(),
        flamegraphs: &[],
    });
    if let Some(svg) = &svg {
        set.add(session_report::SERVING_PLOT, svg.as_bytes())?;
    }
    set.add("summary.json", summary.as_bytes())?;
    set.add("report.html", page.as_bytes())?;
    set.add("report.md", markdown.as_bytes())?;
    let written = set.publish(&|_| false)?;
    Ok(Outcome {
        written,
        notes: Vec::new(),
    })
}

/// The per-request latencies of a run folder (`inputs/latencies.json`),
/// when it has them.
fn load_latencies(input: &Path) -> Result<Option<profile_compare::Latencies>, Error> {
    let path = input.join("inputs/latencies.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Read {
        path: path.clone(),
        source: source.into(),
    })?;
    Ok(profile_compare::Latencies::from_json(&doc))
}

pub(crate) fn load_metadata(input: &Path, flags: &Overrides) -> Result<RunMetadata, Error> {
    let path = input.join("inputs/run_metadata.json");
    let mut meta = if path.is_file() {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        RunMetadata::from_json(&text).map_err(|source| Error::Metadata { path, source })?
    } else {
        RunMetadata::new()
    };
    let set = |slot: &mut Option<String>, flag: &Option<String>| {
        if flag.is_some() {
            slot.clone_from(flag);
        }
    };
    set(&mut meta.model, &flags.model);
    set(&mut meta.hardware, &flags.hardware);
    set(&mut meta.zone, &flags.zone);
    set(&mut meta.endpoint, &flags.endpoint);
    set(&mut meta.jax_version, &flags.jax_version);
    set(&mut meta.sglang_jax_version, &flags.sglang_jax_version);
    set(&mut meta.date, &flags.date);
    Ok(meta)
}

fn file_info(path: &Path, out_dir: &Path) -> Result<TraceFileInfo, Error> {
    let size = std::fs::metadata(path)
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    Ok(TraceFileInfo {
        path: shown(path, out_dir),
        size_bytes: size,
    })
}

/// A path as the report shows it: relative to the report's folder when it
/// lies inside it, otherwise as given.
fn shown(path: &Path, out_dir: &Path) -> String {
    let text = path
        .strip_prefix(out_dir)
        .unwrap_or(path)
        .display()
        .to_string();
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod full_trace_tests;
#[cfg(test)]
mod tests;
