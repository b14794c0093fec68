//! The reading half of `compare`: one side (a JAX profile folder, an
//! sglprof run folder or a trace file) as a [`Profile`], and the comparison
//! written as one output set. The statistics are `profile-compare`'s; the
//! fetching of archived runs is `profile-driver`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use profile_compare::{Collector, Comparison, OpSamples, Profile};
use trace_analysis::{Analysis, Analyzer, JSON_EVENT_CAP};
use trace_model::{Phase, locate};

use crate::discover::{list_files, pick};
use crate::{Destination, Error, Note, OutputSet};

/// Reads one side: the latest profiler run's first host, its JSON trace
/// unless that holds exactly JAX's export cap of events and an `xplane.pb`
/// exists (the rule the report follows); plus the session numbers of
/// `summary.json` and the run metadata, the machine record, the per-request
/// latencies and, from `inputs/requests.jsonl`, TTFT, ITL, TPOT and E2E per
/// request. Every file it reads is added to `read`; a choice
/// among several runs or hosts is added to `notes`. `label` names the side
/// in the comparison.
pub fn load_side(
    input: &Path,
    label: &str,
    read: &mut Vec<PathBuf>,
    notes: &mut Vec<Note>,
) -> Result<Profile, Error> {
    if std::fs::symlink_metadata(input).is_err() {
        return Err(Error::NotFound(input.to_path_buf()));
    }
    let folder = (!input.is_file()).then_some(input);
    let files = match folder {
        Some(dir) => {
            // A report set that a crash left half-published is completed
            // before its summary.json is read.
            crate::settle(dir)?;
            list_files(dir)?
        }
        None => vec![input.to_path_buf()],
    };
    let runs = locate(&files);
    let (_, host) = pick(&runs, None, None, input, notes)?;
    let (ops, analysis) = match (&host.trace_json, &host.xplane) {
        (Some(json), xplane) => {
            read.push(json.clone());
            let (ops, analysis) = read_json(json)?;
            match xplane {
                Some(xplane) if analysis.phase_count(Phase::Complete) == JSON_EVENT_CAP => {
                    read.push(xplane.clone());
                    read_xplane(xplane)?
                }
                _ => (ops, analysis),
            }
        }
        (None, Some(xplane)) => {
            read.push(xplane.clone());
            read_xplane(xplane)?
        }
        (None, None) => unreachable!("locate returns hosts with a file"),
    };

    let mut session = BTreeMap::new();
    let mut missing = Vec::new();
    if let Some(dir) = folder {
        read.extend(
            [
                "summary.json",
                "inputs/run_metadata.json",
                "inputs/machine.json",
                "inputs/latencies.json",
            ]
            .map(|name| dir.join(name)),
        );
    }
    let json_in = |name: &str| match folder {
        Some(dir) => read_json_file(&dir.join(name)),
        None => Ok(None),
    };
    let summary = json_in("summary.json")?;
    match summary
        .as_ref()
        .and_then(|it| it.get("devices")?.as_array())
    {
        Some(devices) if !devices.is_empty() => {
            profile_compare::device_numbers(devices, &mut session)
        }
        _ => missing.push(
            "no device section in summary.json: device step time and categories not compared"
                .to_owned(),
        ),
    }
    let meta = json_in("inputs/run_metadata.json")?;
    match meta.as_ref().and_then(|it| it.get("workload")) {
        Some(workload) => profile_compare::workload_numbers(workload, &mut session),
        None => missing.push(
            "no workload in the run metadata: request latency and throughput not compared"
                .to_owned(),
        ),
    }
    let machine = json_in("inputs/machine.json")?
        .as_ref()
        .and_then(profile_compare::MachineState::from_record);
    let mut latencies = json_in("inputs/latencies.json")?
        .as_ref()
        .and_then(profile_compare::Latencies::from_json);
    // TTFT, ITL, TPOT and E2E per request, from the records, and the
    // throughputs and goodput of summary.json's `serving`.
    if let Some(dir) = folder
        && let Some(requests) = crate::export::Requests::of_run(dir)?
    {
        latencies.get_or_insert_default().serving =
            serving_workload::metrics::per_request_latencies(&requests.records);
        read.push(dir.join(&requests.serving.records));
    }
    if let Some(serving) = summary.as_ref().and_then(|it| it.get("serving")) {
        profile_compare::serving_numbers(serving, &mut session);
    }
    let hardware = meta
        .as_ref()
        .and_then(|m| m.get("hardware")?.as_str().map(str::to_owned));
    Ok(Profile {
        host: Some(host_label(&host.host, hardware.as_deref())),
        source: label.to_owned(),
        ops,
        traced_ps: analysis.traced_time_ps(),
        session,
        missing,
        machine,
        latencies,
    })
}

/// The run metadata of a run folder (`inputs/run_metadata.json`), if it
/// has one.
pub fn run_metadata(dir: &Path) -> Result<Option<serde_json::Value>, Error> {
    read_json_file(&dir.join("inputs/run_metadata.json"))
}

/// Publishes compare.json, compare.svg (when there is a chart),
/// compare.html and compare.md into `out` as one output set, after
/// everything has been computed; none of them replaces a file in `read`.
pub fn write_comparison(
    cmp: &Comparison,
    out: &Path,
    read: &[PathBuf],
) -> Result<Vec<PathBuf>, Error> {
    let chart = profile_compare::render_chart(cmp);
    let markdown = profile_compare::render_markdown(cmp, chart.as_ref().map(|_| "compare.svg"));
    let page = report_html::render_compare(cmp);
    let mut set = OutputSet::begin(Destination {
        dir: out,
        inputs: read,
        files_named: false,
    })?;
    set.add("compare.json", cmp.to_json().as_bytes())?;
    if let Some(svg) = &chart {
        set.add("compare.svg", svg.as_bytes())?;
    }
    set.add("compare.html", page.as_bytes())?;
    // compare.md last: the file a person opens is never older than the rest.
    set.add("compare.md", markdown.as_bytes())?;
    // A comparison without a chart leaves no older chart behind.
    let stale = |name: &str| chart.is_none() && name == "compare.svg";
    set.publish(&stale)
}

fn read_json_file(path: &Path) -> Result<Option<serde_json::Value>, Error> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|err| Error::Records {
            path: path.to_path_buf(),
            detail: format!("invalid JSON: {err}"),
        })
}

/// The machine a side ran on, as far as two sessions can be told apart:
/// the JAX host name (a TPU VM's generated name, `t1v-n-<id>-w-<i>`, stands
/// for its worker index, since every VM gets a new one) and the hardware of
/// the run metadata.
fn host_label(host: &str, hardware: Option<&str>) -> String {
    let tpu_worker = host.strip_prefix("t1v-n-").and_then(|rest| {
        let (id, worker) = rest.split_once("-w-")?;
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && worker.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("TPU VM worker {worker}"))
    });
    let host = tpu_worker.unwrap_or_else(|| host.to_owned());
    match hardware {
        Some(hardware) => format!("{host} ({hardware})"),
        None => host,
    }
}

fn read_json(path: &Path) -> Result<(Vec<OpSamples>, Analysis), Error> {
    let mut file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut sink = Collector::new(Analyzer::new());
    trace_chrome::read(&mut file, &mut sink).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(sink.finish())
}

fn read_xplane(path: &Path) -> Result<(Vec<OpSamples>, Analysis), Error> {
    let bytes = crate::analyse::map_file(path)?;
    let mut sink = Collector::new(Analyzer::new());
    trace_xplane::read(&bytes, &mut sink).map_err(|source| Error::XPlane {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(sink.finish())
}
