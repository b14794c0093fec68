//! `cargo xtask compare`: regression verdicts between two profiles or run
//! folders (local or archived), against a named baseline, or against the
//! last N archived runs.
//!
//! This module finds and reads the traces, gathers the session numbers from
//! `summary.json` and the run metadata, fetches `gs://` inputs verified, and
//! writes `compare.md`, `compare.json`, `compare.svg` and `compare.html`. The statistics and
//! the verdict rules are in the `profile-compare` crate. Exit codes: 0 no
//! regression (including an inconclusive verdict, said on stderr), 1
//! regression, 2 error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail, format_err};
use gcs_artifacts::{BaselineAddress, GsUrl, RunFilter, RunKind};
use profile_compare::{Collector, Comparison, Profile, Settings, Verdict};
use trace_analysis::{Analyzer, JSON_EVENT_CAP};
use trace_model::{Phase, locate};

use crate::archive::{ConnFlags, block_on};
use profile_driver::archive::connect;
use profile_report::list_files;

#[derive(clap::Args)]
pub struct Args {
    /// The baseline, then the candidate: JAX profile folders, sglprof run
    /// folders, trace files, or `gs://` addresses of archived runs. With
    /// --baseline or --history, only the candidate.
    #[arg(required = true, num_args = 1..=2, value_name = "PROFILE")]
    pub inputs: Vec<String>,
    /// Where to write compare.md, compare.json and compare.svg [default: the
    /// candidate folder when it is local, else the current folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Smallest change in median duration that counts, in percent (`5%` or
    /// `5`).
    #[arg(long, default_value = "5%", value_parser = parse_threshold)]
    pub threshold: f64,
    /// Compare with the named baseline of the candidate's model and
    /// accelerator in the bucket (see `artifacts promote`).
    #[arg(long = "baseline", value_name = "NAME", conflicts_with = "history")]
    pub baseline_name: Option<String>,
    /// Judge the candidate against the last N archived runs of --kind with
    /// the same model, hardware and endpoint.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub history: Option<u32>,
    /// The kind of archived runs --history reads.
    #[arg(long, value_parser = ["manual", "nightly"], default_value = "nightly")]
    pub kind: String,
    /// The model of --baseline [default: the candidate's run metadata].
    #[arg(long)]
    pub model: Option<String>,
    /// The accelerator of --baseline [default: the candidate's hardware].
    #[arg(long)]
    pub accelerator: Option<String>,
    #[arg(long, env = "SGLPROF_BUCKET")]
    pub bucket: Option<String>,
    #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
    pub prefix: String,
    #[command(flatten)]
    pub conn: ConnFlags,
}

fn parse_threshold(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage such as 5%"))?;
    if !(0.0..=1000.0).contains(&value) {
        return Err(format!("`{text}` is outside 0%..1000%"));
    }
    Ok(value / 100.0)
}

/// Runs the command and maps its outcome to the exit code: 0 no
/// regression, 1 regression, 2 error (printed as one line).
pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(Verdict::Regression) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Verdict> {
    let by_name = args.baseline_name.is_some() || args.history.is_some();
    let want = if by_name { 1 } else { 2 };
    if args.inputs.len() != want {
        bail!(
            "compare: expected {} (got {})",
            if by_name {
                "only the candidate with --baseline or --history"
            } else {
                "a baseline and a candidate"
            },
            args.inputs.len()
        );
    }
    let candidate_input = args.inputs.last().expect("checked").clone();
    let scratch = tempfile::Builder::new()
        .prefix("sglprof-compare-")
        .tempdir()
        .context("cannot create a scratch folder")?;
    let candidate_dir = fetch_input(&candidate_input, &scratch.path().join("candidate"), &args)?;
    // Every local file read, so that no output replaces one.
    let mut read = Vec::new();
    let candidate = load(&candidate_dir, &candidate_input, &mut read)?;
    let settings = Settings {
        threshold: args.threshold,
        ..Settings::default()
    };

    let comparison = if let Some(n) = args.history {
        let history = fetch_history(&args, &candidate_dir, &candidate_input, n, scratch.path())?;
        profile_compare::judge_history(&history, &candidate, &settings)
    } else {
        let (baseline_dir, baseline_label) = match &args.baseline_name {
            Some(name) => fetch_named(&args, name, &candidate_dir, scratch.path())?,
            None => {
                let input = &args.inputs[0];
                (
                    fetch_input(input, &scratch.path().join("baseline"), &args)?,
                    input.clone(),
                )
            }
        };
        let baseline = load(&baseline_dir, &baseline_label, &mut read)?;
        profile_compare::compare(&baseline, &candidate, &settings)
    };

    let out = match &args.out {
        Some(out) => out.clone(),
        None if Path::new(&candidate_input).is_dir() => {
            profile_report::outputs::default_dir(Path::new(&candidate_input))
        }
        None => PathBuf::from("."),
    };
    for path in write_outputs(&comparison, &out, &read)? {
        println!("wrote {}", path.display());
    }
    println!(
        "verdict: {} ({} slower, {} faster)",
        comparison.verdict.as_str(),
        comparison.count(profile_compare::OpVerdict::Slower),
        comparison.count(profile_compare::OpVerdict::Faster)
    );
    if comparison.verdict == Verdict::Inconclusive {
        eprintln!(
            "WARNING: inconclusive: the changes alone say {}, but:",
            comparison.changes_verdict.as_str()
        );
    }
    for caveat in &comparison.caveats {
        eprintln!("WARNING: {caveat}");
    }
    Ok(comparison.verdict)
}

/// Publishes compare.json, compare.svg (when there is a chart),
/// compare.html and compare.md as one output set, after everything has
/// been computed; none of them replaces a file in `read`.
pub fn write_outputs(
    cmp: &Comparison,
    out: &Path,
    read: &[PathBuf],
) -> anyhow::Result<Vec<PathBuf>> {
    let chart = profile_compare::render_chart(cmp);
    let markdown = profile_compare::render_markdown(cmp, chart.as_ref().map(|_| "compare.svg"));
    let page = report_html::render_compare(cmp);
    let json = cmp.to_json();
    let mut set = profile_report::OutputSet::begin(profile_report::Destination {
        dir: out,
        inputs: read,
        files_named: false,
    })?;
    set.add("compare.json", json.as_bytes())?;
    if let Some(svg) = &chart {
        set.add("compare.svg", svg.as_bytes())?;
    }
    set.add("compare.html", page.as_bytes())?;
    // compare.md last: the file a person opens is never older than the rest.
    set.add("compare.md", markdown.as_bytes())?;
    // A comparison without a chart leaves no older chart behind.
    let stale = |name: &str| chart.is_none() && name == "compare.svg";
    Ok(set.publish(&stale)?)
}

/// A local path as it is; a `gs://` run downloaded (verified) into `dest`.
fn fetch_input(input: &str, dest: &Path, args: &Args) -> anyhow::Result<PathBuf> {
    if !input.starts_with("gs://") {
        return Ok(PathBuf::from(input));
    }
    let url = GsUrl::parse(input)?;
    let conn = args.conn.clone();
    let dest_owned = dest.to_path_buf();
    block_on(async move {
        let client = connect(&conn.connection()).await?;
        gcs_artifacts::download_run(
            &client,
            &url,
            &dest_owned,
            gcs_artifacts::DownloadOptions { overwrite: false },
        )
        .await
        .with_context(|| format!("cannot fetch {url}"))?;
        Ok(())
    })?;
    Ok(dest.to_path_buf())
}

fn bucket_of(args: &Args, what: &str) -> anyhow::Result<String> {
    args.bucket
        .clone()
        .ok_or_else(|| format_err!("{what} needs a bucket: pass --bucket or set SGLPROF_BUCKET"))
}

/// Fetches the named baseline of the candidate's model and accelerator.
fn fetch_named(
    args: &Args,
    name: &str,
    candidate_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<(PathBuf, String)> {
    let bucket = bucket_of(args, "--baseline")?;
    let meta = run_metadata(candidate_dir)?;
    let field = |key: &str| {
        meta.as_ref()
            .and_then(|m| m.get(key)?.as_str().map(str::to_owned))
    };
    let model = args
        .model
        .clone()
        .or_else(|| field("model"))
        .ok_or_else(|| {
            format_err!(
                "--baseline {name}: the candidate has no model in its run metadata; pass --model"
            )
        })?;
    let accelerator = args.accelerator.clone().or_else(|| field("hardware")).ok_or_else(|| {
        format_err!(
            "--baseline {name}: the candidate has no hardware in its run metadata; pass --accelerator"
        )
    })?;
    let addr = BaselineAddress::new(&bucket, &args.prefix, &model, &accelerator, name)?;
    let dest = scratch.join("baseline");
    let conn = args.conn.clone();
    let label = addr.url().to_string();
    block_on({
        let dest = dest.clone();
        async move {
            let client = connect(&conn.connection()).await?;
            gcs_artifacts::fetch_baseline(&client, &addr, &dest)
                .await
                .with_context(|| format!("cannot fetch baseline {}", addr.url()))?;
            Ok(())
        }
    })?;
    Ok((dest, label))
}

/// Downloads and reads the last `n` archived runs like the candidate.
fn fetch_history(
    args: &Args,
    candidate_dir: &Path,
    candidate_input: &str,
    n: u32,
    scratch: &Path,
) -> anyhow::Result<Vec<Profile>> {
    let bucket = bucket_of(args, "--history")?;
    let meta = run_metadata(candidate_dir)?;
    let field = |key: &str| {
        meta.as_ref()
            .and_then(|m| m.get(key)?.as_str().map(str::to_owned))
    };
    let filter = RunFilter {
        model: args.model.clone().or_else(|| field("model")),
        hardware: args.accelerator.clone().or_else(|| field("hardware")),
        endpoint: field("endpoint"),
    };
    let kind = RunKind::parse(&args.kind)?;
    let exclude = candidate_input
        .starts_with("gs://")
        .then(|| candidate_input.to_owned())
        .or_else(|| field("archive_url"));
    let conn = args.conn.clone();
    let prefix = args.prefix.clone();
    let dirs = block_on({
        let scratch = scratch.to_path_buf();
        async move {
            let client = connect(&conn.connection()).await?;
            let runs = gcs_artifacts::last_runs(
                &client,
                &bucket,
                &prefix,
                kind,
                &filter,
                exclude.as_deref(),
                n as usize,
            )
            .await?;
            if runs.is_empty() {
                bail!(
                    "--history {n}: no archived {kind} runs of the same model, hardware and endpoint in gs://{bucket}/{prefix}/"
                );
            }
            let mut dirs = Vec::new();
            for (i, run) in runs.iter().enumerate() {
                let dest = scratch.join(format!("history-{i}"));
                let url = GsUrl::parse(&run.url)?;
                gcs_artifacts::download_run(
                    &client,
                    &url,
                    &dest,
                    gcs_artifacts::DownloadOptions { overwrite: false },
                )
                .await
                .with_context(|| format!("cannot fetch {}", run.url))?;
                dirs.push((dest, run.url.clone()));
            }
            Ok(dirs)
        }
    })?;
    let mut read = Vec::new();
    dirs.iter()
        .map(|(dir, url)| load(dir, url, &mut read))
        .collect()
}

fn run_metadata(dir: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    read_json(&dir.join("inputs/run_metadata.json"))
}

fn read_json(path: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = serde_json::from_slice(&text)
        .map_err(|err| format_err!("{}: invalid JSON: {err}", path.display()))?;
    Ok(Some(value))
}

/// Reads one side: the latest profiler run's first host, its JSON trace
/// unless that hit JAX's event cap and an `xplane.pb` exists; plus the
/// session numbers of `summary.json` and the run metadata. Every file it
/// reads is added to `read`.
pub fn load(dir: &Path, label: &str, read: &mut Vec<PathBuf>) -> anyhow::Result<Profile> {
    if !dir.exists() {
        bail!("{}: no such file or folder", dir.display());
    }
    let files = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        // A report set that a crash left half-published is completed
        // before its summary.json is read.
        profile_report::settle(dir)
            .with_context(|| format!("cannot complete the outputs in {}", dir.display()))?;
        list_files(dir)?
    };
    let runs = locate(&files);
    let Some(run) = runs.iter().max_by(|a, b| a.run.cmp(&b.run)) else {
        bail!(
            "{}: no JAX traces found (expected plugins/profile/<run>/<host>.trace.json.gz or <host>.xplane.pb)",
            dir.display()
        );
    };
    if runs.len() > 1 {
        eprintln!(
            "note: {label}: {} profiler runs found, comparing the latest, {}",
            runs.len(),
            run.run
        );
    }
    let host = &run.hosts[0];
    if run.hosts.len() > 1 {
        eprintln!(
            "note: {label}: run {} has {} hosts, comparing {}",
            run.run,
            run.hosts.len(),
            host.host
        );
    }
    let (ops, analysis) = match (&host.trace_json, &host.xplane) {
        (Some(json), xplane) => {
            read.push(json.clone());
            let (ops, analysis) = read_json_trace(json)?;
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
    let host_name = host.host.clone();

    let mut session = BTreeMap::new();
    let mut missing = Vec::new();
    let folder = if dir.is_file() { None } else { Some(dir) };
    if let Some(dir) = folder {
        read.extend(
            ["summary.json", "inputs/run_metadata.json"]
                .into_iter()
                .chain(["inputs/machine.json", "inputs/latencies.json"])
                .map(|name| dir.join(name)),
        );
    }
    let summary = match folder {
        Some(dir) => read_json(&dir.join("summary.json"))?,
        None => None,
    };
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
    let meta = match folder {
        Some(dir) => run_metadata(dir)?,
        None => None,
    };
    match meta.as_ref().and_then(|it| it.get("workload")) {
        Some(workload) => profile_compare::workload_numbers(workload, &mut session),
        None => missing.push(
            "no workload in the run metadata: request latency and throughput not compared"
                .to_owned(),
        ),
    }
    let input = |name: &str| match folder {
        Some(dir) => read_json(&dir.join("inputs").join(name)),
        None => Ok(None),
    };
    let machine = input("machine.json")?
        .as_ref()
        .and_then(profile_compare::MachineState::from_record);
    let mut latencies = input("latencies.json")?
        .as_ref()
        .and_then(profile_compare::Latencies::from_json);
    // TTFT, ITL, TPOT and E2E per request, from the records, and the
    // throughputs and goodput of summary.json's `serving`.
    if let Some(dir) = folder
        && let Some(requests) = profile_report::export::Requests::of_run(dir)?
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
        host: Some(host_label(&host_name, hardware.as_deref())),
        source: label.to_owned(),
        ops,
        traced_ps: analysis.traced_time_ps(),
        session,
        missing,
        machine,
        latencies,
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

fn read_json_trace(
    path: &Path,
) -> anyhow::Result<(Vec<profile_compare::OpSamples>, trace_analysis::Analysis)> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut sink = Collector::new(Analyzer::new());
    trace_chrome::read(&mut file, &mut sink).with_context(|| path.display().to_string())?;
    Ok(sink.finish())
}

fn read_xplane(
    path: &Path,
) -> anyhow::Result<(Vec<profile_compare::OpSamples>, trace_analysis::Analysis)> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut sink = Collector::new(Analyzer::new());
    trace_xplane::read(&bytes, &mut sink).with_context(|| path.display().to_string())?;
    Ok(sink.finish())
}
