//! Reading a host's traces into an analysis, and the choice between its
//! Chrome JSON and its `xplane.pb`.

use std::path::{Path, PathBuf};

use session_report::{TraceFormat, Truncation};
use trace_analysis::{Analysis, Analyzer, JSON_EVENT_CAP};
use trace_device::{DevicePlane, DeviceSink, Peaks};
use trace_model::{Event, EventSink, HostTraces, Phase};

use crate::Error;

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

/// Reads a Chrome trace file (plain or gzip) into an analysis: online
/// first, and once more into a buffered analyzer if the file's threads were
/// not in time order (see `trace_analysis::Analyzer`).
pub fn analyse_json(path: &Path) -> Result<Analysis, Error> {
    analyse_json_into(path, &mut |_: &Event<'_>| {})
}

/// [`analyse_json`], also feeding every event of the first pass to `extra`.
fn analyse_json_into(path: &Path, extra: &mut dyn EventSink) -> Result<Analysis, Error> {
    let read = |analyzer: &mut Analyzer, extra: &mut dyn EventSink| -> Result<(), Error> {
        let mut file = std::fs::File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut both = |event: &Event<'_>| {
            analyzer.event(event);
            extra.event(event);
        };
        trace_chrome::read(&mut file, &mut both).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(())
    };
    let mut analyzer = Analyzer::new();
    read(&mut analyzer, extra)?;
    let analysis = analyzer.finish();
    if analysis.self_time_exact {
        return Ok(analysis);
    }
    let mut analyzer = Analyzer::buffered();
    read(&mut analyzer, &mut |_: &Event<'_>| {})?;
    Ok(analyzer.finish())
}

/// Reads an `xplane.pb` into an analysis and the names of its planes.
pub fn analyse_xplane(path: &Path) -> Result<(Analysis, Vec<String>), Error> {
    let (analysis, planes, _) = analyse_xplane_with_devices(path, false)?;
    Ok((analysis, planes))
}

/// How many parts an XPlane analysis is split into: one per core the
/// process may use, at most 8.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |it| it.get().min(8))
}

/// Maps a file read-only, its pages read in at once: the reader walks the
/// page cache's copy instead of a copy of its own.
fn map_file(path: &Path) -> Result<memmap2::Mmap, Error> {
    let wrap = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(wrap)?;
    // SAFETY: the map is read-only and private to this process. A file
    // truncated while mapped would fault (SIGBUS); the profiler writes its
    // files once, before they are read.
    unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(wrap)
}

/// Maps a file read-only, its pages read as the reader reaches them (an
/// export walks the file once, front to back; pages it has passed can be
/// dropped by the kernel).
pub(crate) fn map_lazily(path: &Path) -> Result<memmap2::Mmap, Error> {
    let wrap = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(wrap)?;
    // SAFETY: as for `map_file`.
    unsafe { memmap2::Mmap::map(&file) }.map_err(wrap)
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Gives `device` the peaks of every plane of an XSpace (plane stats).
fn set_peaks(bytes: &[u8], device: &mut DeviceSink) -> Result<(), trace_xplane::Error> {
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

/// [`analyse_xplane`], and the device view from the same pass when `devices`.
fn analyse_xplane_with_devices(
    path: &Path,
    devices: bool,
) -> Result<(Analysis, Vec<String>, Vec<DevicePlane>), Error> {
    let bytes = map_file(path)?;
    let wrap = |source| Error::XPlane {
        path: path.to_path_buf(),
        source,
    };
    let planes = trace_xplane::plane_names(&bytes).map_err(wrap)?;
    // Without a device plane the device view is empty: skip the sink, which
    // would keep every host event (24 bytes each) to explain device idle.
    let devices = devices && planes.iter().any(|it| it.starts_with("/device:"));
    let mut device = DeviceSink::new();
    if devices {
        set_peaks(&bytes, &mut device).map_err(wrap)?;
    }
    let mut analysis = if devices {
        let mut analyzer = Analyzer::new();
        let mut both = |event: &Event<'_>| {
            analyzer.event(event);
            device.event(event);
        };
        trace_xplane::read(&bytes, &mut both).map_err(wrap)?;
        analyzer.finish()
    } else {
        // The analysis alone is split over the cores and merged.
        let mut parts: Vec<Analyzer> = (0..cores()).map(|_| Analyzer::new()).collect();
        trace_xplane::read_parts(&bytes, &mut parts).map_err(wrap)?;
        let mut parts = parts.into_iter();
        let mut analyzer = parts.next().expect("at least one part");
        parts.for_each(|it| analyzer.merge(it));
        analyzer.finish()
    };
    if !analysis.self_time_exact {
        let mut analyzer = Analyzer::buffered();
        trace_xplane::read(&bytes, &mut analyzer).map_err(wrap)?;
        analysis = analyzer.finish();
    }
    Ok((analysis, planes, device.finish()))
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
