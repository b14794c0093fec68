//! A session as Chrome trace JSON that Perfetto's UI opens: the one writer
//! behind `cargo xtask trace` (a chosen run and host, time, step and
//! thread windows, chunks of N events) and the report's full trace
//! (`crate::full_trace`).
//!
//! The source is the host's `xplane.pb` when there is one (JAX's own JSON
//! stops at 1,000,000 events), mapped rather than read, else its trace
//! JSON. Events stream from the reader through `trace_export::Exporter`
//! into gzip or plain temporary files of the destination's output set;
//! nothing per event is kept, and the chunks are published together.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serving_workload::RequestRecord;
use session_report::ServingMetadata;
use trace_export::{Exporter, Selection, Summary};
use trace_model::{ArgValue, Event, EventSink, Phase, Ps};

use crate::outputs::{Destination, OutputSet, Temp};
use crate::requests::{Placement, ServerStamps, place, push_requests};
use crate::waits::WaitSink;
use crate::{Error, Note};

/// A trace file to export: an `xplane.pb` (mapped) or trace JSON.
pub enum TraceInput {
    XPlane { path: PathBuf, map: memmap2::Mmap },
    Json { path: PathBuf },
}

impl TraceInput {
    pub fn open(path: &Path) -> Result<TraceInput, Error> {
        let name = path.file_name().and_then(|it| it.to_str()).unwrap_or("");
        if name.ends_with(".json") || name.ends_with(".json.gz") {
            return Ok(TraceInput::Json {
                path: path.to_path_buf(),
            });
        }
        Ok(TraceInput::XPlane {
            path: path.to_path_buf(),
            map: crate::analyse::map_file(path)?,
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            TraceInput::XPlane { path, .. } | TraceInput::Json { path } => path,
        }
    }

    /// Streams every event into `sink`; returns the absolute time, in
    /// picoseconds, of the events' `ts == 0` (see
    /// [`trace_model::ReadSummary::origin_ps`]).
    pub fn read(&self, sink: &mut dyn EventSink) -> Result<i128, Error> {
        match self {
            TraceInput::XPlane { path, map } => trace_xplane::read(map, sink)
                .map(|it| it.origin_ps)
                .map_err(|source| Error::XPlane {
                    path: path.clone(),
                    source,
                }),
            TraceInput::Json { path } => {
                let mut file = File::open(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                trace_chrome::read(&mut file, sink)
                    .map(|it| it.origin_ps)
                    .map_err(|source| Error::Json {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }

    /// The absolute time of the events' `ts == 0`, when it is known before
    /// reading them: an `xplane.pb`'s, from its line headers; a trace
    /// JSON's is chosen at its first event.
    pub fn origin_before_read(&self) -> Result<Option<i128>, Error> {
        match self {
            TraceInput::XPlane { path, map } => trace_xplane::Stream::new(map)
                .map(|it| Some(it.origin_ps()))
                .map_err(|source| Error::XPlane {
                    path: path.clone(),
                    source,
                }),
            TraceInput::Json { .. } => Ok(None),
        }
    }

    /// When the server's profiler started and stopped: the `Task
    /// Environment` plane's stamps in an `xplane.pb`; a trace JSON has none.
    pub fn server_stamps(&self) -> Result<ServerStamps, Error> {
        let TraceInput::XPlane { path, map } = self else {
            return Ok(ServerStamps::default());
        };
        let planes = trace_xplane::plane_stats(map).map_err(|source| Error::XPlane {
            path: path.clone(),
            source,
        })?;
        let stamp = |key: &str| {
            planes
                .iter()
                .filter(|it| it.plane == "Task Environment")
                .find_map(|it| it.number(key))
                .filter(|it| it.is_finite() && *it > 0.0)
                .map(|it| it as i64)
        };
        Ok(ServerStamps {
            start_ns: stamp("profile_start_time"),
            stop_ns: stamp("profile_stop_time"),
        })
    }
}

/// The client's requests of a session, to add to its trace as the
/// "Requests" process (see [`crate::requests`]).
pub struct Requests {
    pub records: Vec<RequestRecord>,
    pub serving: ServingMetadata,
}

impl Requests {
    /// The requests of the run folder `input`, when its metadata names
    /// per-request records.
    pub fn of_run(input: &Path) -> Result<Option<Requests>, Error> {
        if !input.is_dir() {
            return Ok(None);
        }
        let metadata = crate::load_metadata(input, &crate::Overrides::default())?;
        crate::serving::load_requests(input, &metadata)
    }
}

/// The file to export from `input` (a file, or a folder holding JAX
/// runs): the chosen host's `xplane.pb` when there is one, else its trace
/// JSON; the run and host as a report picks them (the latest run, the
/// first host, unless named).
pub fn trace_source(
    input: &Path,
    run: Option<&str>,
    host: Option<&str>,
    notes: &mut Vec<Note>,
) -> Result<PathBuf, Error> {
    if input.is_file() {
        return Ok(input.to_path_buf());
    }
    if !input.is_dir() {
        return Err(Error::NotFound(input.to_path_buf()));
    }
    let files = crate::list_files(input)?;
    let runs = trace_model::locate(&files);
    let (_, traces) = crate::discover::pick(&runs, run, host, input, notes)?;
    Ok(traces
        .xplane
        .clone()
        .or_else(|| traces.trace_json.clone())
        .expect("located hosts have a trace file"))
}

/// The time from the start of the first to the end of the last device step
/// numbered in `steps`: events named by their number on a `Steps` line of a
/// `/device:` process.
pub fn step_window(
    input: &TraceInput,
    steps: &RangeInclusive<u64>,
) -> Result<Option<(Ps, Ps)>, Error> {
    struct Steps<'a> {
        device: Vec<u64>,
        lines: Vec<(u64, u64)>,
        window: Option<(Ps, Ps)>,
        range: &'a RangeInclusive<u64>,
    }
    impl EventSink for Steps<'_> {
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
                    let in_range = event
                        .name
                        .parse::<u64>()
                        .is_ok_and(|n| self.range.contains(&n));
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
        device: Vec::new(),
        lines: Vec::new(),
        window: None,
        range: steps,
    };
    input.read(&mut sink).map(drop)?;
    Ok(sink.window)
}

/// How the chunks of an export are named: `<stem><ext>`, or numbered
/// `<stem>.NNN<ext>`.
#[derive(Clone, Debug)]
pub struct Naming {
    pub stem: String,
    /// `.json.gz` (gzip) or `.json`.
    pub ext: String,
    pub numbered: Numbered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbered {
    Never,
    Always,
    /// Only when there is more than one chunk.
    WhenSplit,
}

impl Naming {
    /// The naming of the file `name` (`x.json.gz`, `x.json`).
    pub fn of_file(name: &str, numbered: Numbered) -> Result<Naming, Error> {
        let (stem, ext) = match name.find(".json") {
            Some(at) => name.split_at(at),
            None => (name, ""),
        };
        if ext != ".json.gz" && ext != ".json" {
            return Err(Error::Usage(format!(
                "{name}: the output must end in .json.gz or .json"
            )));
        }
        Ok(Naming {
            stem: stem.to_owned(),
            ext: ext.to_owned(),
            numbered,
        })
    }

    /// The name of chunk `index` of `chunks`.
    pub fn name(&self, index: u32, chunks: u32) -> String {
        let numbered = match self.numbered {
            Numbered::Never => false,
            Numbered::Always => true,
            Numbered::WhenSplit => chunks > 1,
        };
        if numbered {
            format!("{}.{index:03}{}", self.stem, self.ext)
        } else {
            format!("{}{}", self.stem, self.ext)
        }
    }

    /// Whether `file` is one of the names this export can publish (a
    /// chunk of an older, longer export is one).
    pub fn is_mine(&self, file: &str) -> bool {
        let Some(middle) = file
            .strip_prefix(self.stem.as_str())
            .and_then(|rest| rest.strip_suffix(self.ext.as_str()))
        else {
            return false;
        };
        middle.is_empty()
            || middle
                .strip_prefix('.')
                .is_some_and(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
    }

    fn gzip(&self) -> bool {
        self.ext == ".json.gz"
    }
}

/// A chunk being written.
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

/// The staged chunks of an export and what the exporter counted.
pub struct Exported {
    pub files: Vec<PathBuf>,
    pub summary: Summary,
    /// How the requests were placed, when they were added.
    pub requests: Option<RequestsOnTimeline>,
}

/// The "Requests" process an export added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestsAdded {
    pub requests: u64,
    pub placement: Placement,
}

/// The "Requests" process an export added, with the slowest waits for a
/// first token ([`crate::waits`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestsOnTimeline {
    pub added: RequestsAdded,
    pub waits: Vec<session_report::RequestWait>,
}

/// Passes events on and remembers the highest process id, so that an
/// added process takes an unused one.
struct Pids<'a> {
    inner: &'a mut dyn EventSink,
    max: Option<u64>,
    /// Also takes every event: what the slowest waits overlapped.
    waits: Option<&'a mut WaitSink>,
}

impl EventSink for Pids<'_> {
    fn event(&mut self, event: &Event<'_>) {
        self.max = Some(self.max.map_or(event.pid, |it| it.max(event.pid)));
        if let Some(waits) = self.waits.as_deref_mut() {
            waits.event(event);
        }
        self.inner.event(event);
    }

    fn stable_names(&mut self, stable: bool) {
        self.inner.stable_names(stable);
    }
}

/// Exports `input` with `selection` into chunks named by `naming`, staged
/// in `set` (published by the caller, with its other outputs), with
/// `requests` after the trace's own events as the "Requests" process (the
/// selection applies to them too). A name known before the export (not
/// [`Numbered::WhenSplit`]) is claimed as its chunk opens, so a refused
/// name stops the export early.
pub fn export_into(
    input: &TraceInput,
    selection: Selection,
    set: &mut OutputSet,
    naming: &Naming,
    requests: Option<&Requests>,
) -> Result<Exported, Error> {
    let stamps = match requests {
        Some(_) => input.server_stamps()?,
        None => ServerStamps::default(),
    };
    let mut placement = None;
    // The waits need the trace's origin while it streams: an xplane.pb
    // gives it from its line headers.
    let mut waits = match requests {
        Some(requests) => input.origin_before_read()?.and_then(|origin| {
            let placement = place(&requests.serving, stamps, origin)?;
            Some(WaitSink::new(
                &requests.records,
                requests.serving.trace_window,
                &placement,
            ))
        }),
        None => None,
    };
    let gzip = naming.gzip();
    let known = naming.numbered != Numbered::WhenSplit;
    let mut temps: Vec<Temp> = Vec::new();
    let mut open_err: Option<Error> = None;
    let summary = {
        let set = &*set;
        let open = |chunk: u32| -> io::Result<Sink> {
            let claimed = if known {
                set.claim(&naming.name(chunk, chunk + 2)).map(drop)
            } else {
                Ok(())
            };
            let (file, temp) = match claimed.and_then(|()| set.temp(&naming.name(0, 1))) {
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
        let mut pids = Pids {
            inner: &mut exporter,
            max: None,
            waits: waits.as_mut(),
        };
        let read = input.read(&mut pids);
        let pid = pids.max.map_or(1, |it| it.saturating_add(1));
        if let (Ok(origin_ps), Some(requests)) = (&read, requests) {
            placement = place(&requests.serving, stamps, *origin_ps);
            if let Some(placement) = &placement {
                push_requests(&mut exporter, pid, &requests.records, placement);
            }
        }
        let read = read.map(drop);
        let finished = exporter.finish();
        read.and_then(|()| {
            finished.map_err(|err| {
                let trace_export::Error::Write { chunk, source } = err;
                Error::Write {
                    path: set.dir().join(naming.name(chunk, chunk + 2)),
                    source,
                }
            })
        })
    };
    if let Some(err) = open_err {
        return Err(err);
    }
    let summary = summary?;
    let chunks = temps.len() as u32;
    let mut files = Vec::with_capacity(temps.len());
    for (index, temp) in temps.into_iter().enumerate() {
        files.push(set.stage(temp, &naming.name(index as u32, chunks))?);
    }
    Ok(Exported {
        files,
        summary,
        requests: requests
            .zip(placement)
            .map(|(it, placement)| RequestsOnTimeline {
                added: RequestsAdded {
                    requests: it.records.len() as u64,
                    placement,
                },
                waits: waits.map(WaitSink::finish).unwrap_or_default(),
            }),
    })
}

/// Parses a step range `A..B` (inclusive, `A <= B`), as `--steps` takes it.
pub fn parse_steps(text: &str) -> Result<RangeInclusive<u64>, String> {
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

/// What `cargo xtask trace` exports.
pub struct TraceRequest {
    /// A file, or a folder holding JAX runs.
    pub profile: PathBuf,
    /// The file to write; with `selection.split_events`, its chunks.
    pub out: PathBuf,
    pub run: Option<String>,
    pub host: Option<String>,
    pub selection: Selection,
    /// Keep the time of these device steps too.
    pub steps: Option<RangeInclusive<u64>>,
    /// Add the client's requests as the "Requests" process when `profile`
    /// is a run folder with per-request records.
    pub requests: bool,
}

/// What [`export`] wrote.
pub struct TraceOutcome {
    pub source: PathBuf,
    pub written: Vec<PathBuf>,
    pub summary: Summary,
    /// The "Requests" process, when one was added.
    pub requests: Option<RequestsAdded>,
    pub notes: Vec<Note>,
}

/// Exports a session as `request` asks, published as one output set
/// beside `out` (never over the input or a file sglprof did not write).
pub fn export(request: &TraceRequest) -> Result<TraceOutcome, Error> {
    let mut notes = Vec::new();
    let source = trace_source(
        &request.profile,
        request.run.as_deref(),
        request.host.as_deref(),
        &mut notes,
    )?;
    if request.selection.split_events == Some(0) {
        return Err(Error::Usage(
            "--split-events: must be at least 1".to_owned(),
        ));
    }
    let name = request
        .out
        .file_name()
        .and_then(|it| it.to_str())
        .unwrap_or("");
    let split = request.selection.split_events.is_some();
    let naming = Naming::of_file(
        name,
        if split {
            Numbered::Always
        } else {
            Numbered::Never
        },
    )
    .map_err(|_| {
        Error::Usage(format!(
            "{}: the output must end in .json.gz or .json",
            request.out.display()
        ))
    })?;
    let input = TraceInput::open(&source)?;
    let mut selection = request.selection.clone();
    if let Some(steps) = &request.steps {
        let (start, end) = step_window(&input, steps)?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: no device steps {}..{}",
                source.display(),
                steps.start(),
                steps.end()
            ))
        })?;
        selection.from = Some(selection.from.map_or(start, |it| it.max(start)));
        selection.to = Some(selection.to.map_or(end, |it| it.min(end)));
    }
    let dir = match request.out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut set = OutputSet::begin(Destination {
        dir,
        inputs: std::slice::from_ref(&source),
        files_named: true,
    })?;
    // The first name is checked before the long work.
    set.claim(&naming.name(0, if split { 2 } else { 1 }))?;
    let requests = match request.requests {
        true => Requests::of_run(&request.profile)?,
        false => None,
    };
    let exported = export_into(&input, selection, &mut set, &naming, requests.as_ref())?;
    // A new export replaces every chunk of an older one of the same name.
    let stale = |file: &str| split && naming.is_mine(file);
    let written = set.publish(&stale)?;
    Ok(TraceOutcome {
        source,
        written,
        summary: exported.summary,
        requests: exported.requests.map(|it| it.added),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names() {
        let split = Naming::of_file("t.json.gz", Numbered::Always).unwrap();
        assert_eq!(split.name(2, 3), "t.002.json.gz");
        assert!(split.is_mine("t.000.json.gz") && split.is_mine("t.1234.json.gz"));
        assert!(!split.is_mine("t.0.json.gz") && !split.is_mine("u.000.json.gz"));
        let one = Naming::of_file("t.json", Numbered::Never).unwrap();
        assert_eq!(one.name(0, 1), "t.json");
        let full = Naming::of_file("trace-full.json.gz", Numbered::WhenSplit).unwrap();
        assert_eq!(full.name(0, 1), "trace-full.json.gz");
        assert_eq!(full.name(1, 2), "trace-full.001.json.gz");
        assert!(Naming::of_file("t.txt", Numbered::Never).is_err());
    }
}
