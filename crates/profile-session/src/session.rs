//! The steps after "a server answers at this base URL", the same on every
//! host: server facts, warmup, `/start_profile`, the workload (with hooks
//! around it for py-spy), `/stop_profile` or the `num_steps` auto-stop, and,
//! when the server's output folder is visible from here, the wait for
//! complete trace files. Request bodies and the profile config are written
//! to the run folder's `inputs/` as they are sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serving_workload::RequestRecord;
use serving_workload::dataset::{DatasetRow, Tokenizer};
use serving_workload::metrics::ServingTally;
use sglang_server::workload::WorkloadResult;
use sglang_server::{
    Client, Clock, Liveness, LoadOptions, Sent, StartProfile, StopOutcome, TraceRun,
};

pub use crate::load::WarmupPhase;
use crate::load::{self, BodiesFile, HfTokenizer, Load, LoadContext, LoadError, LoadSpec, RowInfo};
use crate::machine;
use crate::plan::Plan;
use crate::run_folder::{AtomicFile, RunFolderError, write_atomic, write_atomic_with, write_json};

/// Why a session failed. One line each; the cause is the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("{what}")]
    Server {
        what: &'static str,
        #[source]
        source: sglang_server::Error,
    },
    #[error(transparent)]
    RunFolder(#[from] RunFolderError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("every {phase} request to {endpoint} failed: {first_error}")]
    AllFailed {
        phase: &'static str,
        endpoint: &'static str,
        first_error: String,
    },
    /// The session against another server of a slice failed.
    #[error("the session on worker {worker}")]
    Worker {
        worker: u32,
        #[source]
        source: Box<SessionError>,
    },
    #[error("{what}")]
    Hook {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server said it stopped the profile but left no usable XPlane:
    /// upstream writes 0 bytes for a capture over protobuf's 2 GB limit.
    #[error("failed capture: {} is empty (the server wrote 0 bytes; captures over 2 GB cannot be saved, profile fewer steps)", .0.display())]
    EmptyCapture(PathBuf),
}

fn server(what: &'static str) -> impl FnOnce(sglang_server::Error) -> SessionError {
    move |source| SessionError::Server { what, source }
}

/// The profiled workload: the measured phase's load and the warmup that
/// precedes it, both made before any server starts.
#[derive(Clone, Debug)]
pub struct Workload {
    pub spec: LoadSpec,
    pub load: Load,
    /// The warmup, phase by phase (each sent after the one before ends).
    pub warmup: Vec<WarmupPhase>,
    /// The measured rows in ShareGPT's layout, for `--save-dataset`.
    pub sharegpt: Option<String>,
}

impl Workload {
    /// The plan's workload. `model` is the model as the server names it
    /// (the score mix sends it); when it is a local folder holding a
    /// `tokenizer.json`, that tokenizer counts and draws the prompts
    /// unless `--tokenizer` names another. `score` needs the token ids of
    /// the labels " yes" and " no".
    pub fn from_plan(
        plan: &Plan,
        model: &str,
        label_token_ids: Vec<u32>,
    ) -> Result<Workload, LoadError> {
        let spec = plan.load.clone();
        spec.check()?;
        let tokenizer_path = spec.tokenizer.clone().or_else(|| {
            let dir = Path::new(model);
            dir.join("tokenizer.json")
                .is_file()
                .then(|| dir.to_path_buf())
        });
        let tokenizer: Option<Arc<dyn Tokenizer + Send + Sync>> = match &tokenizer_path {
            Some(path) => Some(Arc::new(HfTokenizer::open(path)?)),
            None => None,
        };
        let tokenizer_ref = tokenizer.as_deref().map(|t| t as &dyn Tokenizer);
        let ctx = LoadContext {
            endpoint: plan.endpoint,
            plan_requests: plan.requests,
            plan_concurrency: plan.concurrency,
            prompt: &plan.prompt,
            max_new_tokens: plan.max_new_tokens,
            stream: plan.stream,
            model,
            label_token_ids,
            tokenizer: tokenizer.clone(),
        };
        let load = load::prepare(&spec, &ctx)?;
        let warmup = load::warmup(&load, &spec, plan.warmup_requests(), tokenizer_ref)?;
        let sharegpt = match (&spec.save_dataset, tokenizer_ref) {
            (None, _) => None,
            (Some(_), Some(tok)) if !load.dataset.is_empty() => {
                let rows: Vec<DatasetRow> = load
                    .dataset
                    .rows()
                    .map(|row| row.map(std::borrow::Cow::into_owned))
                    .collect::<Result<_, _>>()?;
                Some(
                    serving_workload::dataset::to_sharegpt(&rows, tok).map_err(|source| {
                        LoadError::Generated {
                            kind: "saved",
                            source,
                        }
                    })?,
                )
            }
            (Some(_), _) => {
                return Err(LoadError::Invalid(
                    "--save-dataset needs a /generate dataset and the model's tokenizer".to_owned(),
                ));
            }
        };
        Ok(Workload {
            spec,
            load,
            warmup,
            sharegpt,
        })
    }

    pub fn endpoint(&self) -> &'static str {
        self.load.endpoint
    }

    /// Warmup requests over every phase.
    pub fn warmup_requests(&self) -> usize {
        self.warmup.iter().map(|p| p.requests.len()).sum()
    }

    /// The measured phase in words.
    pub fn description(&self) -> String {
        let rate = match self.spec.request_rate {
            None => "inf".to_owned(),
            Some(rate) => format!("{rate}"),
        };
        format!(
            "{} x {} from {}, request rate {rate}/s, max concurrency {}{}",
            self.load.requests.len(),
            self.load.endpoint,
            self.load.description,
            self.load
                .cap
                .map_or_else(|| "not set".to_owned(), |c| c.to_string()),
            if self.load.stream { ", streamed" } else { "" },
        )
    }
}

/// The labels whose token ids a score workload needs.
pub const SCORE_LABELS: [&str; 2] = [" yes", " no"];

/// What a session needs once a server answers at the client's base URL.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub workload: Workload,
    /// Requests sent before profiling starts, in the workload's shape.
    pub warmup: usize,
    /// The `/start_profile` body; `output_dir` is a path on the server.
    pub profile: StartProfile,
    /// Where the server's `output_dir` is visible from here, when it is;
    /// used to confirm a `num_steps` auto-stop and to wait for the files.
    pub local_output_dir: Option<PathBuf>,
    pub trace_wait: Duration,
    /// How long to wait, at most, for other processes to calm down before
    /// the profiled window of a server whose output folder is visible here
    /// (one on this machine).
    pub quiet_wait: Duration,
    /// The run folder's `inputs/`.
    pub inputs_dir: PathBuf,
    pub progress: bool,
}

/// Called around the profiled workload (py-spy starts and stops here,
/// see [`crate::pyspy`]).
#[async_trait::async_trait]
pub trait WorkloadHooks: Send {
    async fn before_workload(&mut self) -> Result<(), SessionError>;
    async fn after_workload(&mut self);
}

/// For sessions without py-spy.
pub struct NoHooks;

#[async_trait::async_trait]
impl WorkloadHooks for NoHooks {
    async fn before_workload(&mut self) -> Result<(), SessionError> {
        Ok(())
    }
    async fn after_workload(&mut self) {}
}

/// What a session found out.
#[derive(Debug)]
pub struct SessionOutcome {
    pub server_info: serde_json::Value,
    pub model_path: String,
    pub warmup: Option<WorkloadResult>,
    /// The measured phase, summed up as the run metadata's `workload`.
    pub workload: WorkloadResult,
    /// The load and where its records are, for the run metadata.
    pub serving: session_report::ServingMetadata,
    /// `None` for an untraced session.
    pub stop: Option<StopOutcome>,
    /// Complete trace runs under the local output folder (empty when the
    /// folder is not visible from here).
    pub traces: Vec<TraceRun>,
}

/// Runs the session against the server behind `client`.
pub async fn run_session(
    client: &Client,
    liveness: &dyn Liveness,
    config: &SessionConfig,
    hooks: &mut dyn WorkloadHooks,
) -> Result<SessionOutcome, SessionError> {
    let workload = &config.workload;
    let traced = !workload.spec.no_trace;
    let model_info = client
        .model_info()
        .await
        .map_err(server("cannot read the model info"))?;
    let server_info = client
        .server_info()
        .await
        .map_err(server("cannot read the server info"))?;
    write_json(
        &config.inputs_dir.join("server_args.json"),
        &crate::redact::server_args(server_info.clone()),
    )?;
    if traced {
        write_json(
            &config.inputs_dir.join("profile_config.json"),
            &config.profile,
        )?;
    }
    // A prompt the server cannot take is refused before anything is sent.
    if let Some(context) = server_context(&server_info) {
        load::check_context(&workload.load, context, None)?;
    }
    let measured = Arc::new(write_request_bodies(&config.inputs_dir, workload)?);

    let clock = Clock::new();
    let mut warmup_records: Vec<RequestRecord> = Vec::new();
    let phases = workload.warmup.clone();
    if !phases.is_empty() {
        eprintln!(
            "[session] {} warmup request(s) in {} phase(s), not measured",
            phases.iter().map(|p| p.requests.len()).sum::<usize>(),
            phases.len()
        );
    }
    for phase in &phases {
        eprintln!(
            "[session] warmup: {} ({} requests)",
            phase.what,
            phase.requests.len()
        );
        let sent = sglang_server::send_load(
            client,
            &clock,
            phase.requests.clone(),
            LoadOptions {
                max_concurrency: phase.cap,
            },
            liveness,
            "the warmup",
            &|_, _| {},
        )
        .await
        .map_err(server("the warmup failed"))?;
        for sent in sent {
            let id = warmup_records.len();
            warmup_records.push(record(&clock, id, &WARMUP_ROW, sent));
        }
    }
    let warmup_requests = warmup_records.len() as u64;
    let warmup = if warmup_records.is_empty() {
        None
    } else {
        write_atomic_with(&config.inputs_dir.join(WARMUP_RECORDS_FILE), &mut |out| {
            serving_workload::record::write_jsonl(&warmup_records, out)
        })?;
        let mut summary = PhaseSummary::default();
        warmup_records.iter().for_each(|r| summary.add(r));
        let result = summary.result(workload, "warmup");
        if result.errors == result.requests {
            return Err(SessionError::AllFailed {
                phase: "warmup",
                endpoint: workload.endpoint(),
                first_error: result.first_error.clone().unwrap_or_default(),
            });
        }
        // The measured phase starts with the prefix cache as cold as the
        // warmup found it: none of the warmup's prompts stay cached.
        if let Err(err) = client.flush_cache().await {
            // sglang-jax 0.0.1.post1's /flush_cache fails (HTTP 500) on
            // every call; the first line says so, the log tail is noise.
            let err = err.to_string();
            eprintln!(
                "[session] the prefix cache keeps the warmup's prompts: {}",
                err.lines().next().unwrap_or_default()
            );
        }
        Some(result)
    };

    // A local server shares this machine: wait (bounded) for other
    // processes to calm down, and record what the machine did during the
    // profiled window, so that a comparison can tell load from a change.
    let machine_before = match &config.local_output_dir {
        Some(_) => quiet_then_snapshot(config.quiet_wait).await,
        None => None,
    };
    let mut window_start = None;
    let mut start_call = None;
    if traced {
        eprintln!(
            "[session] POST /start_profile {}",
            serde_json::to_string(&config.profile).unwrap_or_default()
        );
        let sent = clock.now();
        client
            .start_profile(&config.profile)
            .await
            .map_err(server("cannot start the profiler"))?;
        let answered = clock.now();
        start_call = Some(session_report::Window {
            start_ns: clock.epoch_ns(sent),
            end_ns: clock.epoch_ns(answered),
        });
        window_start = Some(answered);
    }
    if let Err(err) = hooks.before_workload().await {
        if traced {
            let _ = client.stop_profile().await;
        }
        return Err(err);
    }
    eprintln!("[session] measured: {}", workload.description());
    let total = workload.load.requests.len();
    let step = (total / 10).max(1);
    let progress = |done: usize, n: usize| {
        if config.progress && (done.is_multiple_of(step) || done == n) {
            eprintln!("[session] {done}/{n} answered");
        }
    };
    // Each record is written, and counted for the metrics, as soon as it
    // and every earlier request are answered: a long load holds a few
    // numbers per request, not its records.
    let mut records_file = AtomicFile::create(&config.inputs_dir.join(RECORDS_FILE))?;
    let mut tally = ServingTally::default();
    let mut phase = PhaseSummary::default();
    let mut write_error = None;
    let rows = workload.load.rows.clone();
    let mut each = |idx: usize, sent: Sent| {
        let record = record(&clock, idx, &rows[idx], sent);
        if write_error.is_none() {
            let written = serving_workload::record::write_jsonl(
                std::slice::from_ref(&record),
                records_file.out(),
            );
            write_error = written.err();
        }
        tally.add(&record);
        phase.add(&record);
    };
    let sent = sglang_server::send_load_each(
        client,
        &clock,
        measured,
        LoadOptions {
            max_concurrency: workload.load.cap,
        },
        liveness,
        &format!("the measured {} load", workload.endpoint()),
        &progress,
        &mut each,
    )
    .await;
    let window_end = clock.now();
    let machine_after = machine_before
        .as_ref()
        .and_then(|_| machine::Snapshot::take());
    hooks.after_workload().await;
    if let Err(err) = sent {
        // Leave the server without a dangling trace if it still runs.
        if traced {
            let _ = client.stop_profile().await;
        }
        return Err(server("the profiled workload failed")(err));
    }
    if let Some(err) = write_error {
        return Err(records_file.failed(err).into());
    }
    records_file.commit()?;
    let result = phase.result(workload, "measured");
    write_json(
        &config.inputs_dir.join(LATENCIES_FILE),
        &latency_record(&result),
    )?;
    let trace_window = window_start.map(|start| session_report::Window {
        start_ns: clock.epoch_ns(start),
        end_ns: clock.epoch_ns(window_end),
    });
    let mut serving = session_report::ServingMetadata {
        endpoint: workload.endpoint().to_owned(),
        dataset: workload.load.description.clone(),
        seed: workload.spec.seed,
        request_rate: workload.spec.request_rate,
        burstiness: workload.spec.burstiness,
        max_concurrency: workload.load.cap.map(|c| c as u64),
        stream: workload.load.stream,
        percentiles: workload.spec.percentiles.clone(),
        slo: workload.spec.slo,
        traced,
        trace_window,
        profiler_calls: start_call.map(|start| session_report::ProfilerCalls {
            start: Some(start),
            stop: None,
        }),
        // A server whose trace lands in a folder of this machine runs on
        // it, and reads the same wall clock.
        same_clock: Some(config.local_output_dir.is_some()),
        warmup_requests,
        records: format!("inputs/{RECORDS_FILE}"),
    };
    let metrics = tally.report(&serving);
    let median = |d: &Option<session_report::Distribution>| {
        d.as_ref()
            .map_or_else(|| "n/a".to_owned(), |d| format!("{:.1} ms", d.median))
    };
    eprintln!(
        "[session] {} ok, {} failed in {:.2} s; {:.2} req/s, {:.1} output tok/s; median TTFT {}, ITL {}, E2E {}",
        metrics.completed,
        metrics.failed,
        metrics.duration_s,
        metrics.request_throughput,
        metrics.output_throughput,
        median(&metrics.ttft_ms),
        median(&metrics.itl_ms),
        median(&metrics.e2e_ms),
    );
    if let (Some(path), Some(text)) = (&workload.spec.save_dataset, &workload.sharegpt) {
        write_atomic(path, text.as_bytes())?;
        eprintln!(
            "[session] the measured requests in ShareGPT layout: {}",
            path.display()
        );
    }
    if let (Some((wait, quiet, before, start)), Some(end)) = (machine_before, machine_after) {
        let profiled = start.window_to(&end, std::process::id());
        let cores = start.cores();
        let busy = profiled.is_busy(cores);
        eprintln!(
            "[session] machine during the profiled window: {}{}",
            profiled.describe(cores),
            if busy {
                "; BUSY: timings of this run are not comparable with a quiet run"
            } else {
                ""
            }
        );
        write_json(
            &config.inputs_dir.join(MACHINE_FILE),
            &machine::MachineRecord {
                schema: machine::MACHINE_SCHEMA.to_owned(),
                cores,
                quiet_wait_s: (wait.as_secs_f64() * 10.0).round() / 10.0,
                quiet_before: quiet,
                before,
                profiled,
                busy,
            },
        )?;
    }
    if result.errors == result.requests {
        if traced {
            let _ = client.stop_profile().await;
        }
        return Err(SessionError::AllFailed {
            phase: "profiled",
            endpoint: workload.endpoint(),
            first_error: result.first_error.clone().unwrap_or_default(),
        });
    }
    if !traced {
        return Ok(SessionOutcome {
            server_info,
            model_path: model_info.model_path,
            warmup,
            workload: result,
            serving,
            stop: None,
            traces: Vec::new(),
        });
    }

    let sent = clock.now();
    let stop = client
        .stop_profile_checked(&config.profile, config.local_output_dir.as_deref())
        .await
        .map_err(server("cannot stop the profiler"))?;
    // After `num_steps`, the trace stopped before this call: its window
    // says nothing about the server's clock.
    if let (StopOutcome::Stopped(_), Some(calls)) = (&stop, serving.profiler_calls.as_mut()) {
        calls.stop = Some(session_report::Window {
            start_ns: clock.epoch_ns(sent),
            end_ns: clock.epoch_ns(clock.now()),
        });
    }
    match &stop {
        StopOutcome::Stopped(text) => eprintln!("[session] POST /stop_profile: {}", text.trim()),
        StopOutcome::AlreadyStopped => eprintln!(
            "[session] the trace had already stopped after num_steps (HTTP 500 from /stop_profile is expected)"
        ),
    }
    let traces = match &config.local_output_dir {
        Some(dir) => {
            let runs = sglang_server::wait_for_trace_files(
                dir,
                Duration::from_millis(500),
                config.trace_wait,
            )
            .await
            .map_err(server("the trace files did not appear"))?;
            for run in &runs {
                for file in [&run.xplane, &run.trace_json_gz].into_iter().flatten() {
                    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                    eprintln!("[session] trace file {} ({len} bytes)", file.display());
                }
            }
            check_capture(&runs)?;
            runs
        }
        None => Vec::new(),
    };
    Ok(SessionOutcome {
        server_info,
        model_path: model_info.model_path,
        warmup,
        workload: result,
        serving,
        stop: Some(stop),
        traces,
    })
}

/// The longest sequence (prompt and output) the server takes, from its
/// server info: `context_length` when set, else the model's.
fn server_context(info: &serde_json::Value) -> Option<u64> {
    ["max_req_input_len", "context_length"]
        .iter()
        .find_map(|key| info.get(*key).and_then(serde_json::Value::as_u64))
}

/// What a warmup request's record says of its row: warmups send no
/// dataset row.
const WARMUP_ROW: RowInfo = RowInfo {
    row: 0,
    kind: None,
    input_len: None,
    output_len: 0,
};

/// The record of request `id` from the sender's outcome (taken, so that
/// its chunk times move), times on the wall clock.
fn record(clock: &Clock, id: usize, row: &RowInfo, s: Sent) -> RequestRecord {
    RequestRecord {
        schema: serving_workload::REQUEST_SCHEMA.to_owned(),
        id: id as u64,
        row: row.row,
        kind: row.kind.map(str::to_owned),
        slot: s.slot,
        due_ns: clock.epoch_ns(s.due),
        start_ns: clock.epoch_ns(s.start),
        first_token_ns: s.first_token.map(|t| clock.epoch_ns(t)),
        end_ns: clock.epoch_ns(s.end),
        input_len: row.input_len,
        output_len: row.output_len,
        prompt_tokens: s.meta.prompt_tokens,
        completion_tokens: s.meta.completion_tokens,
        cached_tokens: s.meta.cached_tokens,
        server_e2e_ns: s
            .meta
            .e2e_latency
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| (v * 1e9).round() as u64),
        rid: s.meta.id,
        chunks: s.chunks,
        error: s.error,
    }
}

/// The legacy summary of a phase (run metadata's `workload`), from its
/// records given one at a time in send order: E2E of the completed
/// requests, and the same per part of a mix.
#[derive(Default)]
struct PhaseSummary {
    whole: PartSummary,
    /// Per part of a mix, in the order the parts first appear.
    parts: Vec<(String, PartSummary)>,
}

#[derive(Default)]
struct PartSummary {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    start_ns: Option<u64>,
    end_ns: u64,
    tokens: u64,
    latencies_ms: Vec<f64>,
}

impl PartSummary {
    fn add(&mut self, r: &RequestRecord) {
        self.requests += 1;
        self.start_ns = Some(self.start_ns.map_or(r.start_ns, |t| t.min(r.start_ns)));
        self.end_ns = self.end_ns.max(r.end_ns);
        if r.ok() {
            self.tokens += r.completion_tokens.map_or(0, u64::from);
            self.latencies_ms.push(r.e2e_ms());
        } else {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error.clone_from(&r.error);
            }
        }
    }

    fn result(self, workload: &Workload, description: String) -> WorkloadResult {
        WorkloadResult {
            endpoint: workload.endpoint().to_owned(),
            description,
            requests: self.requests,
            concurrency: workload.load.cap.unwrap_or(0) as u64,
            errors: self.errors,
            first_error: self.first_error,
            wall: Duration::from_nanos(self.end_ns.saturating_sub(self.start_ns.unwrap_or(0))),
            latencies_ms: self.latencies_ms,
            output_tokens: (workload.endpoint() == "/generate").then_some(self.tokens),
            parts: Vec::new(),
        }
    }
}

impl PhaseSummary {
    fn add(&mut self, r: &RequestRecord) {
        self.whole.add(r);
        if let Some(kind) = r.kind.as_deref() {
            match self.parts.iter_mut().find(|(k, _)| k == kind) {
                Some((_, part)) => part.add(r),
                None => {
                    let mut part = PartSummary::default();
                    part.add(r);
                    self.parts.push((kind.to_owned(), part));
                }
            }
        }
    }

    /// The summary of the measured phase, or of a warmup.
    fn result(self, workload: &Workload, phase: &str) -> WorkloadResult {
        let description = if phase == "measured" {
            workload.description()
        } else {
            format!("{} warmup requests", self.whole.requests)
        };
        let mut res = self.whole.result(workload, description);
        for (kind, part) in self.parts {
            let name = sglang_server::workload::ScoreKind::ALL
                .iter()
                .find(|k| k.slug() == kind)
                .map_or(kind.as_str(), |k| k.name());
            let name = format!("{} x {name}", part.requests);
            res.parts.push(part.result(workload, name));
        }
        res
    }
}

/// The run folder's per-request latencies of the profiled workload
/// (`inputs/latencies.json`), which `compare` tests like operations.
pub const LATENCIES_FILE: &str = "latencies.json";
/// One record per request of the measured phase (`inputs/requests.jsonl`).
pub const RECORDS_FILE: &str = "requests.jsonl";
/// The warmup's records (`inputs/warmup-requests.jsonl`).
pub const WARMUP_RECORDS_FILE: &str = "warmup-requests.jsonl";
/// The measured phase's bodies as sent (`inputs/bodies.jsonl`).
pub const BODIES_FILE: &str = "bodies.jsonl";
/// The machine's state around the profiled window (`inputs/machine.json`),
/// written when the server runs on this machine.
pub const MACHINE_FILE: &str = "machine.json";
/// The value of `schema` in `inputs/latencies.json`.
pub const LATENCIES_SCHEMA: &str = "sglprof.latencies/1";

/// Waits (at most `limit`, and at least the one second a first reading
/// takes) for other processes to calm down, says so when they do not, and
/// takes the snapshot that opens the profiled window.
async fn quiet_then_snapshot(
    limit: Duration,
) -> Option<(
    Duration,
    bool,
    Option<machine::MachineWindow>,
    machine::Snapshot,
)> {
    let me = std::process::id();
    let (wait, quiet, before) = match machine::wait_for_quiet(me, limit).await {
        Some((wait, quiet, window)) => (wait, quiet, Some(window)),
        None => (Duration::ZERO, false, None),
    };
    if let (false, Some(window)) = (quiet, &before) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!(
            "[session] the machine stayed busy for {:.0} s, profiling anyway: {}",
            wait.as_secs_f64(),
            window.describe(cores)
        );
    }
    Some((wait, quiet, before, machine::Snapshot::take()?))
}

/// `inputs/latencies.json`: the E2E latencies of the successful requests
/// in send order, and per part of a mix (named without its count).
fn latency_record(result: &WorkloadResult) -> serde_json::Value {
    let part = |p: &WorkloadResult| {
        let name = p
            .description
            .split_once(" x ")
            .map_or(p.description.as_str(), |it| it.1);
        serde_json::json!({ "name": name, "latencies_ms": p.latencies_ms })
    };
    serde_json::json!({
        "schema": LATENCIES_SCHEMA,
        "endpoint": result.endpoint,
        "description": result.description,
        "latencies_ms": result.latencies_ms,
        "parts": result.parts.iter().map(part).collect::<Vec<_>>(),
    })
}

/// A stop that "succeeded" but left a 0-byte `xplane.pb` is a failed
/// capture, never analysed.
pub fn check_capture(runs: &[TraceRun]) -> Result<(), SessionError> {
    for run in runs {
        if let Some(xplane) = &run.xplane
            && std::fs::metadata(xplane).is_ok_and(|m| m.len() == 0)
        {
            return Err(SessionError::EmptyCapture(xplane.clone()));
        }
    }
    Ok(())
}

/// The bodies as sent, one JSON per line (`inputs/bodies.jsonl`, and
/// `inputs/warmup-bodies.jsonl`), and the measured phase's dataset rows
/// (`inputs/dataset.jsonl`): the same seed gives the same bytes. Returns
/// the measured requests with their bodies read back from the file as they
/// are sent.
fn write_request_bodies(inputs: &Path, workload: &Workload) -> Result<BodiesFile, SessionError> {
    let requests = &workload.load.requests;
    let mut bodies = AtomicFile::create(&inputs.join(BODIES_FILE))?;
    let mut rows = match workload.load.dataset.is_empty() {
        true => None,
        false => Some(AtomicFile::create(&inputs.join("dataset.jsonl"))?),
    };
    // Each body (and row) is made, written and dropped.
    let mut ends = Vec::with_capacity(requests.len());
    let mut end = 0u64;
    for idx in 0..requests.len() {
        let (body, row) = requests.body_with_row(idx)?;
        let out = bodies.out();
        let written = out.write_all(&body).and_then(|()| out.write_all(b"\n"));
        written.map_err(|err| bodies.failed(err))?;
        end += body.len() as u64 + 1;
        ends.push(end);
        if let (Some(row), Some(file)) = (row, rows.as_mut()) {
            let out = file.out();
            let written = serde_json::to_writer(&mut *out, &*row)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            written.map_err(|err| file.failed(err))?;
        }
    }
    let file = bodies.commit()?;
    if let Some(rows) = rows {
        rows.commit()?;
    }
    if !workload.warmup.is_empty() {
        write_atomic_with(&inputs.join("warmup-bodies.jsonl"), &mut |out| {
            for request in workload.warmup.iter().flat_map(|p| p.requests.iter()) {
                out.write_all(&request.body)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    Ok(BodiesFile::new(requests.clone(), file, ends))
}

/// The profile settings as the run metadata records them, with the output
/// folder relative to the run folder.
pub fn profile_config(profile: &StartProfile, run_dir: &Path) -> session_report::ProfileConfig {
    session_report::ProfileConfig {
        output_dir: profile.output_dir.as_deref().map(|dir| {
            Path::new(dir)
                .strip_prefix(run_dir)
                .unwrap_or(Path::new(dir))
                .to_string_lossy()
                .into_owned()
        }),
        num_steps: profile.num_steps,
        start_step: profile.start_step,
        host_tracer_level: profile.host_tracer_level,
        python_tracer_level: profile.python_tracer_level,
        profile_by_stage: profile.profile_by_stage,
        profile_stages: profile.profile_stages.clone().unwrap_or_default(),
    }
}

/// The workload result as the run metadata records it.
pub fn workload_summary(result: &WorkloadResult) -> session_report::WorkloadSummary {
    let stats = result.latency();
    session_report::WorkloadSummary {
        endpoint: result.endpoint.clone(),
        description: result.description.clone(),
        requests: result.requests,
        concurrency: result.concurrency,
        errors: result.errors,
        wall_s: result.wall.as_secs_f64(),
        latency_ms: session_report::LatencyStats {
            count: stats.count,
            mean: stats.mean,
            p50: stats.p50,
            p90: stats.p90,
            p99: stats.p99,
            min: stats.min,
            max: stats.max,
        },
        throughput_rps: result.throughput_rps(),
        output_tokens_per_s: result.output_tokens_per_s(),
        parts: result.parts.iter().map(workload_summary).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_xplane_is_a_failed_capture() {
        let dir = tempfile::tempdir().unwrap();
        let xplane = dir.path().join("vm.xplane.pb");
        std::fs::write(&xplane, b"").unwrap();
        let run = TraceRun {
            dir: dir.path().to_path_buf(),
            xplane: Some(xplane.clone()),
            trace_json_gz: None,
        };
        let err = check_capture(std::slice::from_ref(&run)).unwrap_err();
        assert!(err.to_string().starts_with("failed capture: "), "{err}");
        std::fs::write(&xplane, b"x").unwrap();
        check_capture(&[run]).unwrap();
    }

    /// A random dataset is held as its draws: the rows made again from
    /// them are the rows `dataset::random` makes, and the bodies a session
    /// sends, read back from `inputs/bodies.jsonl`, are the bodies made
    /// from those rows.
    #[test]
    fn bodies_are_sent_from_the_file_they_were_written_to() {
        use sglang_server::Requests;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/serving/tokenizer.json"
        );
        let tokenizer = Arc::new(HfTokenizer::open(Path::new(path)).unwrap());
        let spec = LoadSpec {
            dataset: load::DatasetSpec::Random,
            num_prompts: Some(300),
            input_len: 40,
            output_len: Some(6),
            range_ratio: 0.5,
            seed: 3,
            ..LoadSpec::default()
        };
        let ctx = LoadContext {
            endpoint: crate::Endpoint::Generate,
            plan_requests: 8,
            plan_concurrency: 4,
            prompt: "unused",
            max_new_tokens: 6,
            stream: true,
            model: "tiny",
            label_token_ids: Vec::new(),
            tokenizer: Some(tokenizer.clone()),
        };
        let load = load::prepare(&spec, &ctx).unwrap();
        assert_eq!(format!("{:?}", load.dataset), "Dataset(300 rows, drawn)");
        let held = serving_workload::dataset::random(
            tokenizer.as_ref(),
            &serving_workload::dataset::RandomParams {
                num_prompts: 300,
                input_len: 40,
                output_len: 6,
                range_ratio: 0.5,
            },
            &mut serving_workload::pyrand::NumpyRandom::new(3),
        )
        .unwrap();
        let drawn: Vec<DatasetRow> = load
            .dataset
            .rows()
            .map(|row| row.unwrap().into_owned())
            .collect();
        assert_eq!(drawn, held);
        let workload = Workload {
            spec,
            load,
            warmup: Vec::new(),
            sharegpt: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let sent = write_request_bodies(dir.path(), &workload).unwrap();
        let file = std::fs::read_to_string(dir.path().join(BODIES_FILE)).unwrap();
        assert_eq!(file.lines().count(), 300);
        assert_eq!(sent.len(), 300);
        for (idx, line) in file.lines().enumerate() {
            let made = workload.load.requests.body(idx).unwrap();
            let request = sent.request(idx);
            assert_eq!(&request.body[..], made.as_slice(), "request {idx}");
            assert_eq!(line.as_bytes(), made.as_slice(), "line {idx}");
            assert_eq!(request.due, workload.load.requests.due(idx));
            assert!(request.stream && request.path == "/generate");
        }
        let rows = std::fs::read_to_string(dir.path().join("dataset.jsonl")).unwrap();
        let rows: Vec<DatasetRow> = rows
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows, held);
    }
}
