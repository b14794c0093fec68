//! Reading a host's traces into an analysis, and the choice between its
//! Chrome JSON and its `xplane.pb`.

use std::path::{Path, PathBuf};

use session_report::{TraceFormat, Truncation};
use trace_analysis::{Analysis, Analyzer, JSON_EVENT_CAP};
use trace_model::{HostTraces, Phase};

use crate::Error;

/// The analysis of the file chosen for the report.
pub struct Chosen {
    pub analysis: Analysis,
    pub source: PathBuf,
    pub format: TraceFormat,
    pub truncation: Truncation,
    /// The XPlane's plane names; empty for JSON.
    pub planes: Vec<String>,
}

/// Reads a Chrome trace file (plain or gzip) into an analysis: online
/// first, and once more into a buffered analyzer if the file's threads were
/// not in time order (see `trace_analysis::Analyzer`).
pub fn analyse_json(path: &Path) -> Result<Analysis, Error> {
    let read = |mut analyzer: Analyzer| -> Result<Analysis, Error> {
        let mut file = std::fs::File::open(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        trace_chrome::read(&mut file, &mut analyzer).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
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
pub fn analyse_xplane(path: &Path) -> Result<(Analysis, Vec<String>), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let wrap = |source| Error::XPlane {
        path: path.to_path_buf(),
        source,
    };
    let planes = trace_xplane::plane_names(&bytes).map_err(wrap)?;
    let read = |mut analyzer: Analyzer| -> Result<Analysis, Error> {
        trace_xplane::read(&bytes, &mut analyzer).map_err(wrap)?;
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

/// Analyses the host's JSON unless it is missing, `prefer_xplane` asks
/// otherwise, or it holds exactly JAX's export cap of complete events and
/// an `xplane.pb` exists: then the XPlane, which JAX never truncates.
pub fn choose(host: &HostTraces, prefer_xplane: bool) -> Result<Chosen, Error> {
    let xplane = |path: &PathBuf, truncation| -> Result<Chosen, Error> {
        let (analysis, planes) = analyse_xplane(path)?;
        Ok(Chosen {
            analysis,
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
    let analysis = analyse_json(json_path)?;
    let json_events = analysis.phase_count(Phase::Complete);
    let json = |analysis, truncation| Chosen {
        analysis,
        source: json_path.clone(),
        format: TraceFormat::ChromeJson,
        truncation,
        planes: Vec::new(),
    };
    if json_events != JSON_EVENT_CAP {
        return Ok(json(analysis, Truncation::None));
    }
    let Some(xplane_path) = &host.xplane else {
        return Ok(json(analysis, Truncation::Unrecoverable { json_events }));
    };
    let json_time = analysis.traced_time_ps();
    drop(analysis);
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
