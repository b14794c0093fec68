//! The steps after "a server answers at this base URL", the same on every
//! host: server facts, warmup, `/start_profile`, the workload (with hooks
//! around it for py-spy), `/stop_profile` or the `num_steps` auto-stop, and,
//! when the server's output folder is visible from here, the wait for
//! complete trace files. Request bodies and the profile config are written
//! to the run folder's `inputs/` as they are sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sglang_server::workload::{self, GenerateWorkload, ScoreMix, WorkloadResult};
use sglang_server::{Client, Liveness, StartProfile, StopOutcome, TraceRun};

use crate::machine;
use crate::plan::{Endpoint, Plan};
use crate::run_folder::{RunFolderError, write_json};

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

/// The profiled workload.
#[derive(Clone, Debug)]
pub enum Workload {
    Generate(GenerateWorkload),
    Score(ScoreMix),
}

impl Workload {
    /// The plan's workload; `score` needs the model (as the server names
    /// it) and the token ids of the labels " yes" and " no".
    pub fn from_plan(plan: &Plan, model: &str, label_token_ids: Vec<u32>) -> Workload {
        match plan.endpoint {
            Endpoint::Generate => Workload::Generate(GenerateWorkload {
                count: plan.requests.max(1),
                concurrency: plan.concurrency.max(1),
                prompt: plan.prompt.clone(),
                max_new_tokens: plan.max_new_tokens,
                stream: plan.stream,
            }),
            Endpoint::Score => Workload::Score(ScoreMix {
                model: model.to_owned(),
                label_token_ids,
                rounds: plan.requests.max(1).div_ceil(3),
                concurrency: plan.concurrency.max(1),
            }),
        }
    }

    pub fn endpoint(&self) -> &'static str {
        match self {
            Workload::Generate(_) => "/generate",
            Workload::Score(_) => "/v1/score",
        }
    }

    /// Warmup in the shape of the workload and at its concurrency:
    /// `/generate` with the same body, or the score mix cycled so every
    /// batch size is compiled. Sent one at a time, the warmup would leave
    /// the batch shapes of concurrent requests to be compiled inside the
    /// profile.
    pub fn warmup(&self, n: usize) -> Workload {
        match self {
            Workload::Generate(generate) => Workload::Generate(GenerateWorkload {
                count: n,
                ..generate.clone()
            }),
            Workload::Score(mix) => Workload::Score(ScoreMix {
                rounds: n.div_ceil(3),
                ..mix.clone()
            }),
        }
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
    pub workload: WorkloadResult,
    pub stop: StopOutcome,
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
    write_json(
        &config.inputs_dir.join("profile_config.json"),
        &config.profile,
    )?;
    write_request_bodies(
        &config.inputs_dir.join("requests"),
        &config.workload,
        config.warmup,
    )?;

    let warmup = if config.warmup == 0 {
        None
    } else {
        eprintln!(
            "[session] {} warmup request(s), not profiled",
            config.warmup
        );
        let warm = config.workload.warmup(config.warmup);
        Some(
            send(client, liveness, &warm, false)
                .await
                .map_err(server("the warmup failed"))?,
        )
    };
    if let Some(warmup) = &warmup
        && warmup.errors == warmup.requests
    {
        return Err(SessionError::AllFailed {
            phase: "warmup",
            endpoint: config.workload.endpoint(),
            first_error: warmup.first_error.clone().unwrap_or_default(),
        });
    }

    // A local server shares this machine: wait (bounded) for other
    // processes to calm down, and record what the machine did during the
    // profiled window, so that a comparison can tell load from a change.
    let machine_before = match &config.local_output_dir {
        Some(_) => quiet_then_snapshot(config.quiet_wait).await,
        None => None,
    };
    eprintln!(
        "[session] POST /start_profile {}",
        serde_json::to_string(&config.profile).unwrap_or_default()
    );
    client
        .start_profile(&config.profile)
        .await
        .map_err(server("cannot start the profiler"))?;
    if let Err(err) = hooks.before_workload().await {
        let _ = client.stop_profile().await;
        return Err(err);
    }
    let workload = send(client, liveness, &config.workload, config.progress).await;
    let machine_after = machine_before
        .as_ref()
        .and_then(|_| machine::Snapshot::take());
    hooks.after_workload().await;
    let workload = match workload {
        Ok(workload) => workload,
        Err(err) => {
            // Leave the server without a dangling trace if it still runs.
            let _ = client.stop_profile().await;
            return Err(server("the profiled workload failed")(err));
        }
    };
    let stats = workload.latency();
    eprintln!(
        "[session] {}: {} ok, {} failed in {:.2} s; p50 {:.0} ms, p99 {:.0} ms",
        workload.description,
        stats.count,
        workload.errors,
        workload.wall.as_secs_f64(),
        stats.p50,
        stats.p99
    );
    write_json(
        &config.inputs_dir.join(LATENCIES_FILE),
        &latency_record(&workload),
    )?;
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
    if workload.errors == workload.requests {
        let _ = client.stop_profile().await;
        return Err(SessionError::AllFailed {
            phase: "profiled",
            endpoint: config.workload.endpoint(),
            first_error: workload.first_error.clone().unwrap_or_default(),
        });
    }

    let stop = client
        .stop_profile_checked(&config.profile, config.local_output_dir.as_deref())
        .await
        .map_err(server("cannot stop the profiler"))?;
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
        workload,
        stop,
        traces,
    })
}

/// The run folder's per-request latencies of the profiled workload
/// (`inputs/latencies.json`), which `compare` tests like operations.
pub const LATENCIES_FILE: &str = "latencies.json";
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

/// `inputs/latencies.json`: the latencies of the successful requests in
/// send order, and per part of a mix (named without its count).
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

async fn send(
    client: &Client,
    liveness: &dyn Liveness,
    workload: &Workload,
    progress: bool,
) -> Result<WorkloadResult, sglang_server::Error> {
    match workload {
        Workload::Generate(generate) => {
            workload::run_generate(client, generate, liveness, progress).await
        }
        Workload::Score(mix) => workload::run_score_mix(client, mix, liveness, progress).await,
    }
}

fn write_request_bodies(
    dir: &Path,
    workload: &Workload,
    warmup: usize,
) -> Result<(), RunFolderError> {
    let phases = [
        ("warmup", workload.warmup(warmup)),
        ("profiled", workload.clone()),
    ];
    for (phase, workload) in phases {
        match workload {
            Workload::Generate(generate) => {
                for (idx, body) in generate.requests().iter().enumerate() {
                    let name = format!("{phase}-{:03}-generate.json", idx + 1);
                    write_json(&dir.join(name), body)?;
                }
            }
            Workload::Score(mix) => {
                for (idx, (kind, body)) in mix.requests().iter().enumerate() {
                    let name = format!("{phase}-{:03}-score-{}.json", idx + 1, kind.slug());
                    write_json(&dir.join(name), body)?;
                }
            }
        }
    }
    Ok(())
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
    use sglang_server::workload::ScoreKind;

    #[test]
    fn warmup_of_score_covers_every_kind() {
        let mix = ScoreMix {
            model: "m".into(),
            label_token_ids: vec![1, 2],
            rounds: 5,
            concurrency: 4,
        };
        let Workload::Score(warm) = Workload::Score(mix).warmup(3) else {
            unreachable!()
        };
        let kinds: Vec<ScoreKind> = warm.requests().iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ScoreKind::ALL.to_vec());
        // Same concurrency as the workload, so its batch shapes get compiled.
        assert_eq!(warm.concurrency, 4);
    }

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
}
