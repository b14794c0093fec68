//! `cargo xtask trace`: the whole session as one Chrome trace JSON file (or
//! numbered chunks) that Perfetto's UI opens, from the `xplane.pb` when
//! there is one (JAX's own JSON stops at 1,000,000 events) or else from the
//! trace JSON.
//!
//! The input is mapped, not read, and events stream from the reader through
//! `trace_export::Exporter` into a gzip or plain writer: memory does not
//! grow with the session's length. The chunks are one output set
//! (`profile_report::outputs`): written under temporary names and published
//! together once every chunk is complete, never over the input or a file
//! sglprof did not write.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, format_err};
use flate2::Compression;
use flate2::write::GzEncoder;
use profile_report::outputs::Temp;
use profile_report::{Destination, OutputSet};
use trace_export::{Exporter, Selection, Summary};
use trace_model::{ArgValue, Event, EventSink, PS_PER_MS, Phase, Ps, TraceRun, locate};

#[derive(clap::Args)]
pub struct Args {
    /// A JAX profile folder, a `plugins/profile/<run>/` folder, an sglprof
    /// run folder, or one `.xplane.pb` / `.trace.json(.gz)` file.
    pub profile: PathBuf,
    /// The file to write: `.json.gz` (gzip) or `.json`. With
    /// `--split-events`, chunks are named `<stem>.000.json.gz`, ...
    #[arg(long)]
    pub out: PathBuf,
    /// The `plugins/profile/<run>` to export [default: the latest].
    #[arg(long)]
    pub run: Option<String>,
    /// The host to export [default: the first].
    #[arg(long)]
    pub host: Option<String>,
    /// Keep events that end after this many milliseconds from the trace's
    /// start (ts 0).
    #[arg(long)]
    pub from_ms: Option<f64>,
    /// Keep events that start at or before this many milliseconds.
    #[arg(long)]
    pub to_ms: Option<f64>,
    /// Keep the time of device steps A to B (inclusive), from the `Steps`
    /// line of the device planes: `--steps 10..20`.
    #[arg(long, value_parser = parse_steps)]
    pub steps: Option<RangeInclusive<u64>>,
    /// Keep the events of threads whose name (or process name) contains
    /// this text.
    #[arg(long)]
    pub threads: Option<String>,
    /// Write numbered chunks of at most N events each, every one with the
    /// process and thread names (for viewers that struggle with more than
    /// about 1,000,000 events).
    #[arg(long)]
    pub split_events: Option<u64>,
}

fn parse_steps(text: &str) -> Result<RangeInclusive<u64>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}` is not a range A..B"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{s}` is not a step number"))
    };
    let (a, b) = (num(a)?, num(b)?);
    if a > b {
        return Err(format!("empty step range {a}..{b}"));
    }
    Ok(a..=b)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = pick_source(&args)?;
    let input = Input::open(&source)?;
    let mut selection = Selection {
        from: args.from_ms.map(ms_to_ps).transpose()?,
        to: args.to_ms.map(ms_to_ps).transpose()?,
        threads: args.threads.clone(),
        split_events: args.split_events,
    };
    if args.split_events == Some(0) {
        bail!("--split-events: must be at least 1");
    }
    if let Some(steps) = &args.steps {
        let (start, end) = step_window(&input, steps)?.ok_or_else(|| {
            format_err!(
                "{}: no device steps {}..{}",
                source.display(),
                steps.start(),
                steps.end()
            )
        })?;
        selection.from = Some(selection.from.map_or(start, |it| it.max(start)));
        selection.to = Some(selection.to.map_or(end, |it| it.min(end)));
    }
    let (written, summary) = export(&source, &input, selection, &args.out)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    eprintln!(
        "{} events from {}{}",
        summary.events,
        source.display(),
        if summary.left_out > 0 {
            format!(" ({} left out by the selection)", summary.left_out)
        } else {
            String::new()
        }
    );
    Ok(())
}

fn ms_to_ps(ms: f64) -> anyhow::Result<Ps> {
    let ps = ms * PS_PER_MS as f64;
    if !ps.is_finite() || ps.abs() >= i64::MAX as f64 {
        bail!("time {ms} ms is out of range");
    }
    Ok(ps.round() as Ps)
}

/// The file to export: the chosen host's `xplane.pb` when there is one,
/// else its trace JSON.
fn pick_source(args: &Args) -> anyhow::Result<PathBuf> {
    let input = &args.profile;
    if input.is_file() {
        return Ok(input.clone());
    }
    if !input.is_dir() {
        bail!("{}: no such file or folder", input.display());
    }
    let files = profile_report::list_files(input)?;
    let runs = locate(&files);
    let run: &TraceRun = match &args.run {
        Some(name) => runs
            .iter()
            .find(|it| &it.run == name)
            .ok_or_else(|| format_err!("{}: no run named {name}", input.display()))?,
        None => runs.iter().max_by(|a, b| a.run.cmp(&b.run)).ok_or_else(|| {
            format_err!(
                "{}: no JAX traces found (expected plugins/profile/<run>/<host>.xplane.pb or <host>.trace.json.gz)",
                input.display()
            )
        })?,
    };
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
        None => run
            .hosts
            .first()
            .ok_or_else(|| format_err!("{}: run {} has no traces", input.display(), run.run))?,
    };
    host.xplane
        .clone()
        .or_else(|| host.trace_json.clone())
        .ok_or_else(|| format_err!("{}: host {} has no trace file", input.display(), host.host))
}

/// A trace file, mapped when it is an XPlane.
enum Input {
    XPlane(PathBuf, memmap2::Mmap),
    Json(PathBuf),
}

impl Input {
    fn open(path: &Path) -> anyhow::Result<Input> {
        let name = path.file_name().and_then(|it| it.to_str()).unwrap_or("");
        if name.ends_with(".json") || name.ends_with(".json.gz") {
            return Ok(Input::Json(path.to_path_buf()));
        }
        Ok(Input::XPlane(path.to_path_buf(), map_file(path)?))
    }

    fn read(&self, sink: &mut dyn EventSink) -> anyhow::Result<()> {
        match self {
            Input::XPlane(path, bytes) => {
                trace_xplane::read(bytes, sink).with_context(|| path.display().to_string())?;
            }
            Input::Json(path) => {
                let mut file =
                    File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                trace_chrome::read(&mut file, sink).with_context(|| path.display().to_string())?;
            }
        }
        Ok(())
    }
}

/// The time from the start of the first to the end of the last device step
/// numbered in `steps`: events named by their number on a `Steps` line of a
/// `/device:` process.
fn step_window(input: &Input, steps: &RangeInclusive<u64>) -> anyhow::Result<Option<(Ps, Ps)>> {
    #[derive(Default)]
    struct Steps {
        device: Vec<u64>,
        lines: Vec<(u64, u64)>,
        window: Option<(Ps, Ps)>,
        range: Option<RangeInclusive<u64>>,
    }
    impl EventSink for Steps {
        fn event(&mut self, event: &Event<'_>) {
            match (event.phase, event.name, event.arg("name")) {
                (Phase::Metadata, "process_name", Some(ArgValue::Str(name)))
                    if name.starts_with("/device:") =>
                {
                    self.device.push(event.pid)
                }
                (Phase::Metadata, "thread_name", Some(ArgValue::Str("Steps"))) => {
                    self.lines.push((event.pid, event.tid))
                }
                (Phase::Complete, ..) => {
                    let (Some(start), Some(dur)) = (event.ts, event.dur) else {
                        return;
                    };
                    let in_range = self.range.as_ref().is_some_and(|range| {
                        event.name.parse::<u64>().is_ok_and(|n| range.contains(&n))
                    });
                    if in_range
                        && self.device.contains(&event.pid)
                        && self.lines.contains(&(event.pid, event.tid))
                    {
                        let end = start.saturating_add(dur);
                        self.window = Some(
                            self.window
                                .map_or((start, end), |(a, b)| (a.min(start), b.max(end))),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    let mut sink = Steps {
        range: Some(steps.clone()),
        ..Steps::default()
    };
    input.read(&mut sink)?;
    Ok(sink.window)
}

/// The final names of the output files: `out` itself, or numbered chunks.
fn chunk_path(out: &Path, chunk: u32, split: bool) -> PathBuf {
    if !split {
        return out.to_path_buf();
    }
    let name = out
        .file_name()
        .and_then(|it| it.to_str())
        .unwrap_or("trace.json.gz");
    let (stem, ext) = match name.find(".json") {
        Some(at) => name.split_at(at),
        None => (name, ""),
    };
    out.with_file_name(format!("{stem}.{chunk:03}{ext}"))
}

enum Sink {
    Gzip(Box<GzEncoder<BufWriter<File>>>),
    Plain(BufWriter<File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Gzip(it) => it.write(buf),
            Sink::Plain(it) => it.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Gzip(it) => it.flush(),
            Sink::Plain(it) => it.flush(),
        }
    }
}

impl Sink {
    fn close(self) -> io::Result<()> {
        let file = match self {
            Sink::Gzip(it) => it.finish()?,
            Sink::Plain(it) => it,
        };
        file.into_inner()
            .map_err(|err| err.into_error())?
            .sync_all()
    }
}

fn export(
    source: &Path,
    input: &Input,
    selection: Selection,
    out: &Path,
) -> anyhow::Result<(Vec<PathBuf>, Summary)> {
    let name = out.file_name().and_then(|it| it.to_str()).unwrap_or("");
    let gzip = if name.ends_with(".json.gz") {
        true
    } else if name.ends_with(".json") {
        false
    } else {
        bail!(
            "{}: the output must end in .json.gz or .json",
            out.display()
        );
    };
    let split = selection.split_events.is_some();
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let chunk_name = |chunk: u32| -> String {
        let path = chunk_path(out, chunk, split);
        path.file_name()
            .and_then(|it| it.to_str())
            .unwrap_or(name)
            .to_owned()
    };
    let mut set = OutputSet::begin(Destination {
        dir,
        inputs: &[source.to_path_buf()],
        files_named: true,
    })?;
    // The first name is checked before the long work.
    set.claim(&chunk_name(0))?;
    let mut temps: Vec<Temp> = Vec::new();
    let mut open_err: Option<profile_report::Error> = None;
    let res = {
        let set = &set;
        let open = |chunk: u32| -> io::Result<Sink> {
            let (file, temp) = match set.claim(&chunk_name(chunk)).and_then(|_| set.temp(name)) {
                Ok(it) => it,
                Err(err) => {
                    let text = err.to_string();
                    open_err = Some(err);
                    return Err(io::Error::other(text));
                }
            };
            temps.push(temp);
            let file = BufWriter::with_capacity(1 << 20, file);
            Ok(if gzip {
                Sink::Gzip(Box::new(GzEncoder::new(file, Compression::fast())))
            } else {
                Sink::Plain(file)
            })
        };
        let mut exporter = Exporter::new(selection, open, Sink::close);
        input.read(&mut exporter).and_then(|()| {
            exporter.finish().map_err(|err| {
                let trace_export::Error::Write { chunk, source } = err;
                anyhow::Error::new(source).context(format!(
                    "cannot write {}",
                    chunk_path(out, chunk, split).display()
                ))
            })
        })
    };
    if let Some(err) = open_err {
        return Err(err.into());
    }
    let summary = res?;
    for (chunk, temp) in temps.into_iter().enumerate() {
        set.stage(temp, &chunk_name(chunk as u32))?;
    }
    // A new export replaces every chunk of an older one of the same name.
    let stale = |file: &str| split && is_chunk_of(name, file);
    let written = set.publish(&stale)?;
    Ok((written, summary))
}

/// Whether `file` is a chunk `<stem>.NNN<ext>` of the output named `name`.
fn is_chunk_of(name: &str, file: &str) -> bool {
    let (stem, ext) = match name.find(".json") {
        Some(at) => name.split_at(at),
        None => (name, ""),
    };
    file.strip_prefix(stem)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(ext))
        .is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Maps a file read-only: the reader walks the page cache's copy rather than
/// one of its own, and pages it has walked can be dropped by the kernel.
pub(crate) fn map_file(path: &Path) -> anyhow::Result<memmap2::Mmap> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    // SAFETY: the map is read-only and private to this process. A file
    // truncated while mapped would fault (SIGBUS); the profiler writes its
    // files once, before they are read.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(map)
}
