//! Reading a host's traces into an analysis, and the choice between its
//! Chrome JSON and its `xplane.pb`.

use std::path::{Path, PathBuf};

use session_report::{TraceFormat, Truncation};
use trace_analysis::{Analysis, Analyzer, JSON_EVENT_CAP, SelfTimeFix};
use trace_device::{DevicePlane, DeviceSink, IdleExplainer, Peaks};
use trace_model::{Event, EventSink, HostTraces, Phase, SharedArgs};

use crate::Error;

/// The plane whose events explain a device's idle gaps.
const HOST_PLANE: &str = "/host:CPU";

/// The analysis of the file chosen for the report.
pub struct Chosen {
    pub analysis: Analysis,
    pub source: PathBuf,
    pub format: TraceFormat,
    pub truncation: Truncation,
    /// The XPlane's plane names; empty for JSON.
    pub planes: Vec<String>,
    /// The device view, from the same pass over the same file.
    pub devices: Vec<DevicePlane>,
}

/// Two sinks fed the same events, each the way it takes them: shared args
/// split off for a sink that wants them, merged for one that does not.
struct Tee<'a> {
    first: &'a mut dyn EventSink,
    second: &'a mut dyn EventSink,
}

impl EventSink for Tee<'_> {
    fn event(&mut self, event: &Event<'_>) {
        self.first.event(event);
        self.second.event(event);
    }

    fn stable_names(&mut self, stable: bool) {
        self.first.stable_names(stable);
        self.second.stable_names(stable);
    }

    fn takes_split_args(&self) -> bool {
        self.first.takes_split_args() || self.second.takes_split_args()
    }

    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        for sink in [&mut *self.first, &mut *self.second] {
            if sink.takes_split_args() {
                sink.split_event(event, shared);
            } else {
                EventSink::split_event(&mut Merged(sink), event, shared);
            }
        }
    }
}

/// A sink seen as one that does not take split args: the trait's default
/// merges them before calling it.
struct Merged<'a>(&'a mut dyn EventSink);

impl EventSink for Merged<'_> {
    fn event(&mut self, event: &Event<'_>) {
        self.0.event(event);
    }
}

/// Reads a Chrome trace file (plain or gzip) into an analysis: online
/// first, and once more into a buffered analyzer if the file's threads were
/// not in time order (see `trace_analysis::Analyzer`).
pub fn analyse_json(path: &Path) -> Result<Analysis, Error> {
    analyse_json_into(path, &mut |_: &Event<'_>| {})
}

/// [`analyse_json`], also feeding every event of the first pass to `extra`.
/// When some threads came out of order, a second pass makes their self
/// time exact ([`SelfTimeFix`]), keeping only their operations.
fn analyse_json_into(path: &Path, extra: &mut dyn EventSink) -> Result<Analysis, Error> {
    let read = |sink: &mut dyn EventSink| -> Result<(), Error> {
        let mut file = std::fs::File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        trace_chrome::read(&mut file, sink).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(())
    };
    let mut analyzer = Analyzer::new();
    read(&mut Tee {
        first: &mut analyzer,
        second: extra,
    })?;
    let mut analysis = analyzer.finish();
    if analysis.self_time_exact {
        return Ok(analysis);
    }
    if !analysis.unordered_threads.is_empty() {
        let mut fix = SelfTimeFix::new(&analysis);
        read(&mut fix)?;
        if !fix.apply(&mut analysis) {
            let mut fix = SelfTimeFix::buffered(&analysis);
            read(&mut fix)?;
            fix.apply(&mut analysis);
        }
        return Ok(analysis);
    }
    let mut analyzer = Analyzer::buffered();
    read(&mut analyzer)?;
    Ok(analyzer.finish())
}

/// Reads an `xplane.pb` into an analysis and the names of its planes.
pub fn analyse_xplane(path: &Path) -> Result<(Analysis, Vec<String>), Error> {
    let (analysis, planes, _) = analyse_xplane_with_devices(path, false)?;
    Ok((analysis, planes))
}

/// The device view of an `xplane.pb` alone, as the report computes it
/// but without the host analysis: laid out once, the step boundaries read
/// first, then the device planes' op lines read in parts on every core
/// while the host plane is read on one more thread to explain the idle
/// gaps (which the boundaries already place), and the parts joined.
pub fn device_view(path: &Path) -> Result<Vec<DevicePlane>, Error> {
    let bytes = map_file(path)?;
    let wrap = |source| Error::XPlane {
        path: path.to_path_buf(),
        source,
    };
    let stream = trace_xplane::Stream::new(&bytes).map_err(wrap)?;
    let mut device = DeviceSink::without_host_events();
    set_peaks(&bytes, &mut device).map_err(wrap)?;
    stream
        .read_lines(&boundary_lines, &mut device)
        .map_err(wrap)?;
    let mut explainer = device.idle_explainer();
    let mut parts: Vec<DeviceSink> = (0..cores()).map(|_| device.for_part()).collect();
    let op_lines =
        |line: &trace_xplane::LineInfo<'_>| DeviceSink::part_reads_line(line.plane, line.line);
    beside_explainer(&stream, &mut explainer, || {
        stream.read_parts_of_lines(&op_lines, &mut parts)
    })
    .map_err(wrap)?;
    for part in parts {
        device.merge(part);
    }
    if !device.merged_exactly() {
        device = DeviceSink::without_host_events();
        set_peaks(&bytes, &mut device).map_err(wrap)?;
        stream.read(&mut device).map_err(wrap)?;
    }
    drop(stream);
    unmap_aside(bytes);
    Ok(device.finish_explained(explainer))
}

/// Runs `work` on this thread while another reads the host plane of
/// `stream` into `explainer` (when it has gaps to explain); the first error
/// of the two, `work`'s first.
fn beside_explainer(
    stream: &trace_xplane::Stream<'_>,
    explainer: &mut IdleExplainer,
    work: impl FnOnce() -> Result<trace_model::ReadSummary, trace_xplane::Error>,
) -> Result<(), trace_xplane::Error> {
    if !explainer.has_gaps() {
        return work().map(drop);
    }
    std::thread::scope(|scope| {
        let explaining = scope.spawn(|| {
            let host = |line: &trace_xplane::LineInfo<'_>| line.plane == HOST_PLANE;
            stream.read_lines(&host, explainer)
        });
        let worked = work();
        let explained = explaining
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        worked.and(explained).map(drop)
    })
}

/// The lines a device view reads first, alone: its step boundaries.
fn boundary_lines(line: &trace_xplane::LineInfo<'_>) -> bool {
    line.plane.starts_with("/device:") && matches!(line.line, "Steps" | "XLA Modules")
}

/// How many parts an XPlane analysis is split into: one per core the
/// process may use, at most 8.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |it| it.get().min(8))
}

/// Maps a file read-only: the readers walk the page cache's copy instead
/// of a copy of their own. Its pages are mapped as the readers reach them,
/// not all at once: the walks that come first (a long line's, in two
/// halves) then map them on two cores instead of one, and an export that
/// walks the file front to back lets the kernel drop the pages it passed.
pub(crate) fn map_file(path: &Path) -> Result<memmap2::Mmap, Error> {
    let wrap = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(wrap)?;
    // SAFETY: the map is read-only and private to this process. A file
    // truncated while mapped would fault (SIGBUS); the profiler writes its
    // files once, before they are read.
    unsafe { memmap2::Mmap::map(&file) }.map_err(wrap)
}

/// Unmaps a large map on a thread of its own, which the caller does not
/// wait for: a 38 MB capture's map, walked whole, takes about 2 ms to
/// unmap, the largest step between its analysis and the report's outputs.
/// A map that no thread can be started for is unmapped here.
fn unmap_aside(bytes: memmap2::Mmap) {
    const ASIDE_FROM: usize = 8 << 20;
    if bytes.len() >= ASIDE_FROM {
        let _ = std::thread::Builder::new()
            .name("unmap".to_owned())
            .spawn(move || drop(bytes));
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Gives `device` the peaks of every plane of an XSpace (plane stats).
pub(crate) fn set_peaks(bytes: &[u8], device: &mut DeviceSink) -> Result<(), trace_xplane::Error> {
    for plane in trace_xplane::plane_stats(bytes)? {
        device.set_peaks(
            &plane.plane,
            Peaks {
                device_type: plane.text("device_type_string").map(str::to_owned),
                tflops_per_s: plane.number("peak_teraflops_per_second"),
                hbm_gbytes_per_s: plane.number("peak_hbm_bw_gigabytes_per_second"),
            },
        );
    }
    Ok(())
}

/// One part's analyzer and device view, fed the same events.
struct Both {
    analyzer: Analyzer,
    device: DeviceSink,
}

impl EventSink for Both {
    fn event(&mut self, event: &Event<'_>) {
        self.analyzer.event(event);
        self.device.event(event);
    }

    fn stable_names(&mut self, stable: bool) {
        self.analyzer.stable_names(stable);
    }

    fn takes_split_args(&self) -> bool {
        true
    }

    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        self.analyzer.split_event(event, shared);
        self.device.split_event(event, shared);
    }
}

/// The analysis and the device view of an XSpace with device planes, read
/// in parts on every core: the device planes' step boundaries (`Steps`,
/// `XLA Modules`) first, alone, so that every part can place its ops; then
/// the parts, merged in order, while one more thread reads the host plane
/// into the explainer of the idle gaps (which the boundaries place). When
/// the device view's parts do not join exactly, the file is read again in
/// one pass.
fn analyse_with_devices(
    stream: &trace_xplane::Stream<'_>,
    bytes: &[u8],
) -> Result<(Analysis, DeviceSink, IdleExplainer), trace_xplane::Error> {
    let mut device = DeviceSink::without_host_events();
    set_peaks(bytes, &mut device)?;
    stream.read_lines(&boundary_lines, &mut device)?;
    let mut explainer = device.idle_explainer();
    let mut parts: Vec<Both> = (0..cores())
        .map(|_| Both {
            analyzer: Analyzer::new(),
            device: device.for_part(),
        })
        .collect();
    beside_explainer(stream, &mut explainer, || stream.read_parts(&mut parts))?;
    let mut parts = parts.into_iter();
    let first = parts.next().expect("at least one part");
    let mut analyzer = first.analyzer;
    device.merge(first.device);
    for part in parts {
        analyzer.merge(part.analyzer);
        device.merge(part.device);
    }
    if device.merged_exactly() {
        return Ok((analyzer.finish(), device, explainer));
    }
    let mut device = DeviceSink::without_host_events();
    set_peaks(bytes, &mut device)?;
    let mut analyzer = Analyzer::new();
    stream.read(&mut Tee {
        first: &mut analyzer,
        second: &mut device,
    })?;
    Ok((analyzer.finish(), device, explainer))
}

/// [`analyse_xplane`], and the device view from the same pass when `devices`.
pub(crate) fn analyse_xplane_with_devices(
    path: &Path,
    devices: bool,
) -> Result<(Analysis, Vec<String>, Vec<DevicePlane>), Error> {
    let bytes = map_file(path)?;
    let wrap = |source| Error::XPlane {
        path: path.to_path_buf(),
        source,
    };
    let planes = trace_xplane::plane_names(&bytes).map_err(wrap)?;
    // Without a device plane the device view is empty: skip the sink.
    let devices = devices && planes.iter().any(|it| it.starts_with("/device:"));
    // The stream is laid out once for every pass below.
    let stream = trace_xplane::Stream::new(&bytes).map_err(wrap)?;
    // The host plane comes first in the stream, before the device planes
    // whose idle gaps its events explain: the device sink keeps none of
    // them, and the host plane is read again, beside the parts, into the
    // explainer of the gaps.
    let (mut analysis, device, explainer) = if devices {
        analyse_with_devices(&stream, &bytes).map_err(wrap)?
    } else {
        // The analysis alone is split over the cores and merged.
        let mut parts: Vec<Analyzer> = (0..cores()).map(|_| Analyzer::new()).collect();
        stream.read_parts(&mut parts).map_err(wrap)?;
        let mut parts = parts.into_iter();
        let mut analyzer = parts.next().expect("at least one part");
        parts.for_each(|it| analyzer.merge(it));
        let device = DeviceSink::without_host_events();
        let explainer = device.idle_explainer();
        (analyzer.finish(), device, explainer)
    };
    // One more pass over some lines, when needed: the threads that came
    // out of order, to make their self time exact (put in order within a
    // window, or, if that is not enough, whole, in a pass of their own).
    let threads = if analysis.self_time_exact {
        Vec::new()
    } else {
        analysis.unordered_threads.clone()
    };
    let unordered =
        |line: &trace_xplane::LineInfo<'_>| threads.binary_search(&(line.pid, line.tid)).is_ok();
    if !threads.is_empty() {
        let mut fix = SelfTimeFix::new(&analysis);
        stream.read_lines(&unordered, &mut fix).map_err(wrap)?;
        if !fix.apply(&mut analysis) {
            let mut fix = SelfTimeFix::buffered(&analysis);
            stream.read_lines(&unordered, &mut fix).map_err(wrap)?;
            fix.apply(&mut analysis);
        }
    }
    if !analysis.self_time_exact {
        let mut analyzer = Analyzer::buffered();
        stream.read(&mut analyzer).map_err(wrap)?;
        analysis = analyzer.finish();
    }
    drop(stream);
    unmap_aside(bytes);
    Ok((analysis, planes, device.finish_explained(explainer)))
}

/// The analysis and device view of a Chrome trace, with the peaks from the
/// run's `xplane.pb` when there is one (the JSON export has no plane stats).
fn json_with_devices(
    json_path: &Path,
    xplane: Option<&PathBuf>,
) -> Result<(Analysis, Vec<DevicePlane>), Error> {
    let mut device = DeviceSink::new();
    if let Some(path) = xplane {
        let bytes = read_file(path)?;
        set_peaks(&bytes, &mut device).map_err(|source| Error::XPlane {
            path: path.clone(),
            source,
        })?;
    }
    let analysis = analyse_json_into(json_path, &mut device)?;
    Ok((analysis, device.finish()))
}

/// Analyses the host's JSON unless it is missing, `prefer_xplane` asks
/// otherwise, or it holds exactly JAX's export cap of complete events and
/// an `xplane.pb` exists: then the XPlane, which JAX never truncates.
pub fn choose(host: &HostTraces, prefer_xplane: bool) -> Result<Chosen, Error> {
    choose_with_cap(host, prefer_xplane, JSON_EVENT_CAP)
}

/// [`choose`] with the cap as a parameter: a JSON holding exactly
/// `json_event_cap` complete events counts as cut short.
pub fn choose_with_cap(
    host: &HostTraces,
    prefer_xplane: bool,
    json_event_cap: u64,
) -> Result<Chosen, Error> {
    let xplane = |path: &PathBuf, truncation| -> Result<Chosen, Error> {
        let (analysis, planes, devices) = analyse_xplane_with_devices(path, true)?;
        Ok(Chosen {
            analysis,
            devices,
            source: path.clone(),
            format: TraceFormat::XPlane,
            truncation,
            planes,
        })
    };
    let json_path = match (&host.trace_json, &host.xplane) {
        (Some(_), Some(path)) if prefer_xplane => return xplane(path, Truncation::None),
        (None, Some(path)) => return xplane(path, Truncation::None),
        (Some(json), _) => json,
        (None, None) => unreachable!("trace_model::locate lists hosts with a file"),
    };
    let (analysis, devices) = json_with_devices(json_path, host.xplane.as_ref())?;
    let json_events = analysis.phase_count(Phase::Complete);
    let json = |analysis, devices, truncation| Chosen {
        analysis,
        devices,
        source: json_path.clone(),
        format: TraceFormat::ChromeJson,
        truncation,
        planes: Vec::new(),
    };
    if json_events != json_event_cap {
        return Ok(json(analysis, devices, Truncation::None));
    }
    let Some(xplane_path) = &host.xplane else {
        return Ok(json(
            analysis,
            devices,
            Truncation::Unrecoverable { json_events },
        ));
    };
    let json_time = analysis.traced_time_ps();
    drop(analysis);
    drop(devices);
    let mut chosen = xplane(xplane_path, Truncation::None)?;
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
