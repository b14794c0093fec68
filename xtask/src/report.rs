//! `cargo xtask report`: analyse a JAX profile folder (or an sglprof run
//! folder) and write `report.md` and `summary.json`.
//!
//! This module is the IO edge of the trace crates: it finds the files, reads
//! them, picks which one to analyse (the `xplane.pb` when the JSON hit JAX's
//! event cap) and writes the two outputs atomically, only once everything
//! has been read successfully.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, format_err};
use session_report::{
    PySpyProcess, PySpySection, ReportInput, RunMetadata, TraceFileInfo, TraceFormat, Truncation,
};
use trace_analysis::{Analysis, Analyzer, JSON_EVENT_CAP};
use trace_model::{HostTraces, Phase, TraceRun, locate};

#[derive(clap::Args)]
pub struct Args {
    /// A JAX `output_dir`, a `plugins/profile/<run>/` folder, a trace file, or
    /// an sglprof run folder (its `inputs/run_metadata.json` is used).
    pub dir: PathBuf,
    /// Where to write report.md and summary.json [default: the input folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rows of the top-operations tables.
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    /// The `plugins/profile/<run>` to analyse when there are several
    /// [default: the latest].
    #[arg(long)]
    pub run: Option<String>,
    /// The host to analyse when a run has several [default: the first].
    #[arg(long)]
    pub host: Option<String>,
    /// Analyse the xplane.pb even when the JSON is complete.
    #[arg(long)]
    pub prefer_xplane: bool,
    #[command(flatten)]
    pub meta: MetaFlags,
}

/// Metadata for the report header when there is no run metadata file; a
/// flag also overrides the file.
#[derive(clap::Args, Default)]
pub struct MetaFlags {
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub hardware: Option<String>,
    #[arg(long)]
    pub zone: Option<String>,
    /// The profiled endpoint, e.g. /generate.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub jax_version: Option<String>,
    #[arg(long)]
    pub sglang_jax_version: Option<String>,
    /// YYYY-MM-DD [default: from the run folder's name].
    #[arg(long)]
    pub date: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        if args.dir.is_file() {
            args.dir.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            args.dir.clone()
        }
    });
    let written = write(&args, &out)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes `report.md` and `summary.json` into `out_dir` for the traces found
/// under `input`, using `<input>/inputs/run_metadata.json` when it exists
/// (and the py-spy files it names). Session drivers call this last.
pub fn generate(input: &Path, out_dir: &Path, top_n: usize) -> anyhow::Result<()> {
    let args = Args {
        dir: input.to_path_buf(),
        out: Some(out_dir.to_path_buf()),
        top: top_n,
        run: None,
        host: None,
        prefer_xplane: false,
        meta: MetaFlags::default(),
    };
    write(&args, out_dir)?;
    Ok(())
}

fn write(args: &Args, out_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let input = &args.dir;
    if !input.exists() {
        bail!("{}: no such file or folder", input.display());
    }
    let metadata = load_metadata(input, &args.meta)?;
    let files = if input.is_file() {
        vec![input.clone()]
    } else {
        list_files(input)?
    };
    let runs = locate(&files);
    let (run, host) = pick(&runs, args, input)?;
    let mut metadata = metadata;
    if metadata.date.is_none() {
        metadata.date = date_from_run(&run.run);
    }

    let chosen = analyse(host, args.prefer_xplane)?;
    let (pyspy, flamegraph) = match load_pyspy(input, &metadata, args.top)? {
        Some((section, svg)) => (Some(section), svg),
        None => (None, None),
    };

    let mut trace_files: Vec<TraceFileInfo> = Vec::new();
    for path in [&host.trace_json, &host.xplane].into_iter().flatten() {
        trace_files.push(file_info(path, out_dir)?);
    }
    for rel in [&metadata.pyspy_raw, &metadata.pyspy_speedscope]
        .into_iter()
        .flatten()
    {
        let path = input.join(rel);
        if path.is_file() {
            trace_files.push(file_info(&path, out_dir)?);
        }
    }
    let logdir = run
        .dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .filter(|_| {
            run.dir
                .ends_with(Path::new("plugins/profile").join(&run.run))
        })
        .unwrap_or(&run.dir);
    let perfetto = host
        .trace_json
        .as_ref()
        .or(host.xplane.as_ref())
        .expect("host has a file");

    let report_input = ReportInput {
        metadata: &metadata,
        analysis: &chosen.analysis,
        source: shown(&chosen.source, out_dir),
        format: chosen.format,
        truncation: chosen.truncation.clone(),
        planes: chosen.planes.clone(),
        files: trace_files,
        logdir: shown(logdir, out_dir),
        perfetto_file: shown(perfetto, out_dir),
        top_n: args.top,
        pyspy,
    };
    let markdown = session_report::render_markdown(&report_input);
    let summary = session_report::render_summary_json(&report_input);
    if let Truncation::Unrecoverable { json_events } = chosen.truncation {
        eprintln!(
            "warning: {} holds {json_events} complete events, JAX's export cap, and there is no xplane.pb: the report covers only the start of the session",
            chosen.source.display()
        );
    }
    fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create output folder {}", out_dir.display()))?;
    let report_path = out_dir.join("report.md");
    let summary_path = out_dir.join("summary.json");
    let mut written = Vec::new();
    if let Some(svg) = flamegraph {
        let path = out_dir.join(FLAMEGRAPH);
        write_atomic(&path, svg.as_bytes())?;
        written.push(path);
    }
    write_atomic(&summary_path, summary.as_bytes())?;
    write_atomic(&report_path, markdown.as_bytes())?;
    written.splice(0..0, [report_path, summary_path]);
    Ok(written)
}

fn load_metadata(input: &Path, flags: &MetaFlags) -> anyhow::Result<RunMetadata> {
    let path = input.join("inputs/run_metadata.json");
    let mut meta = if path.is_file() {
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        RunMetadata::from_json(&text).map_err(|err| format_err!("{}: {err}", path.display()))?
    } else {
        RunMetadata::new()
    };
    let set = |slot: &mut Option<String>, flag: &Option<String>| {
        if flag.is_some() {
            *slot = flag.clone();
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

/// Every file below `dir`, following no symlinks, sorted.
pub(crate) fn list_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut res = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                res.push(entry.path());
            }
        }
    }
    res.sort();
    Ok(res)
}

fn pick<'a>(
    runs: &'a [TraceRun],
    args: &Args,
    input: &Path,
) -> anyhow::Result<(&'a TraceRun, &'a HostTraces)> {
    if runs.is_empty() {
        bail!(
            "{}: no JAX traces found (expected plugins/profile/<run>/<host>.trace.json.gz or <host>.xplane.pb)",
            input.display()
        );
    }
    let run = match &args.run {
        Some(name) => runs.iter().find(|it| &it.run == name).ok_or_else(|| {
            let names: Vec<&str> = runs.iter().map(|it| it.run.as_str()).collect();
            format_err!(
                "{}: no run named {name} (found: {})",
                input.display(),
                names.join(", ")
            )
        })?,
        // JAX names run folders by their start time, so the greatest name is
        // the latest session.
        None => runs
            .iter()
            .max_by(|a, b| a.run.cmp(&b.run))
            .expect("not empty"),
    };
    if args.run.is_none() && runs.len() > 1 {
        eprintln!(
            "note: {} runs found, analysing the latest, {} (choose with --run)",
            runs.len(),
            run.run
        );
    }
    let host = match &args.host {
        Some(name) => run
            .hosts
            .iter()
            .find(|it| &it.host == name)
            .ok_or_else(|| {
                format_err!(
                    "{}: run {} has no host named {name}",
                    input.display(),
                    run.run
                )
            })?,
        None => &run.hosts[0],
    };
    if args.host.is_none() && run.hosts.len() > 1 {
        eprintln!(
            "note: run {} has {} hosts, analysing {} (choose with --host)",
            run.run,
            run.hosts.len(),
            host.host
        );
    }
    Ok((run, host))
}

/// `2026_11_23_14_34_24` -> `2026-11-23`.
fn date_from_run(run: &str) -> Option<String> {
    let parts: Vec<&str> = run.split('_').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (parts.len() == 6 && digits(parts[0], 4) && digits(parts[1], 2) && digits(parts[2], 2))
        .then(|| format!("{}-{}-{}", parts[0], parts[1], parts[2]))
}

struct Chosen {
    analysis: Analysis,
    source: PathBuf,
    format: TraceFormat,
    truncation: Truncation,
    planes: Vec<String>,
}

/// Reads a Chrome trace file (plain or gzip) into an analysis: online
/// first, and once more into a buffered analyzer if the file's threads were
/// not in time order (see `trace_analysis::Analyzer`).
pub(crate) fn analyse_json(path: &Path) -> anyhow::Result<Analysis> {
    let read = |mut analyzer: Analyzer| -> anyhow::Result<Analysis> {
        let mut file =
            fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        trace_chrome::read(&mut file, &mut analyzer)
            .map_err(|err| format_err!("{}: {err}", path.display()))?;
        Ok(analyzer.finish())
    };
    let analysis = read(Analyzer::new())?;
    if analysis.self_time_exact {
        Ok(analysis)
    } else {
        read(Analyzer::buffered())
    }
}

/// Reads an `xplane.pb` into an analysis and the names of its planes.
pub(crate) fn analyse_xplane(path: &Path) -> anyhow::Result<(Analysis, Vec<String>)> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let planes = trace_xplane::plane_names(&bytes)
        .map_err(|err| format_err!("{}: {err}", path.display()))?;
    let read = |mut analyzer: Analyzer| -> anyhow::Result<Analysis> {
        trace_xplane::read(&bytes, &mut analyzer)
            .map_err(|err| format_err!("{}: {err}", path.display()))?;
        Ok(analyzer.finish())
    };
    let analysis = read(Analyzer::new())?;
    let analysis = if analysis.self_time_exact {
        analysis
    } else {
        read(Analyzer::buffered())?
    };
    Ok((analysis, planes))
}

fn analyse(host: &HostTraces, prefer_xplane: bool) -> anyhow::Result<Chosen> {
    let xplane = |truncation| -> anyhow::Result<Chosen> {
        let path = host.xplane.as_ref().expect("checked by the caller");
        let (analysis, planes) = analyse_xplane(path)?;
        Ok(Chosen {
            analysis,
            source: path.clone(),
            format: TraceFormat::XPlane,
            truncation,
            planes,
        })
    };
    let Some(json_path) = host
        .trace_json
        .as_ref()
        .filter(|_| !(prefer_xplane && host.xplane.is_some()))
    else {
        return xplane(Truncation::None);
    };
    let analysis = analyse_json(json_path)?;
    let json_events = analysis.phase_count(Phase::Complete);
    if json_events != JSON_EVENT_CAP {
        return Ok(Chosen {
            analysis,
            source: json_path.clone(),
            format: TraceFormat::ChromeJson,
            truncation: Truncation::None,
            planes: Vec::new(),
        });
    }
    if host.xplane.is_none() {
        return Ok(Chosen {
            analysis,
            source: json_path.clone(),
            format: TraceFormat::ChromeJson,
            truncation: Truncation::Unrecoverable { json_events },
            planes: Vec::new(),
        });
    }
    let json_time = analysis.traced_time_ps();
    drop(analysis);
    let mut chosen = xplane(Truncation::None)?;
    let xplane_time = chosen.analysis.traced_time_ps();
    let json_share = if xplane_time > 0 {
        (json_time as f64 / xplane_time as f64).min(1.0)
    } else {
        1.0
    };
    chosen.truncation = Truncation::XPlaneInstead {
        json_events,
        json_share,
    };
    Ok(chosen)
}

/// The py-spy flamegraph, beside `report.md`.
const FLAMEGRAPH: &str = "pyspy-flamegraph.svg";

/// The py-spy section and, from the raw collapsed stacks, the flamegraph.
fn load_pyspy(
    input: &Path,
    meta: &RunMetadata,
    top_n: usize,
) -> anyhow::Result<Option<(PySpySection, Option<String>)>> {
    let (rel, raw) = match (&meta.pyspy_raw, &meta.pyspy_speedscope) {
        (Some(rel), _) => (rel, true),
        (None, Some(rel)) => (rel, false),
        (None, None) => return Ok(None),
    };
    let path = input.join(rel);
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let profile = if raw {
        let text = String::from_utf8(bytes)
            .map_err(|_| format_err!("{}: not UTF-8 text", path.display()))?;
        trace_pyspy::parse_raw(&text)
    } else {
        trace_pyspy::parse_speedscope(&bytes)
    }
    .map_err(|err| format_err!("{}: {err}", path.display()))?;
    let flamegraph = if raw {
        let title = format!("py-spy: {}", meta.endpoint.as_deref().unwrap_or("session"));
        Some(
            trace_pyspy::render_flamegraph(&profile, &title)
                .map_err(|err| format_err!("{}: {err}", path.display()))?,
        )
    } else {
        None
    };
    let summary = trace_pyspy::summarize(&profile, top_n.min(10));
    let processes = summary
        .processes
        .into_iter()
        .map(|it| {
            let label = match (it.pid, &it.name) {
                (Some(pid), Some(name)) => format!("pid {pid} {name}"),
                (Some(pid), None) => format!("pid {pid}"),
                (None, _) => "unknown process".to_owned(),
            };
            let funcs = |list: Vec<trace_pyspy::FunctionSamples>| {
                list.into_iter()
                    .map(|f| {
                        let name = match &f.file {
                            Some(file) => format!("{} ({file})", f.name),
                            None => f.name,
                        };
                        (name, f.samples)
                    })
                    .collect()
            };
            PySpyProcess {
                label,
                role: it.role.label().to_owned(),
                samples: it.total_samples,
                wait_samples: it.wait_samples,
                top_own: funcs(it.top_own),
                top_total: funcs(it.top_total),
            }
        })
        .collect();
    Ok(Some((
        PySpySection {
            source: rel.clone(),
            flamegraph: flamegraph.as_ref().map(|_| FLAMEGRAPH.to_owned()),
            processes,
        },
        flamegraph,
    )))
}

fn file_info(path: &Path, out_dir: &Path) -> anyhow::Result<TraceFileInfo> {
    let size = fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
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

/// Writes through a temporary file in the same folder and renames it into
/// place, so a reader never sees half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|it| it.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::date_from_run;

    #[test]
    fn run_dates() {
        assert_eq!(
            date_from_run("2026_11_23_14_34_24").as_deref(),
            Some("2026-11-23")
        );
        assert_eq!(date_from_run("latest"), None);
    }
}
