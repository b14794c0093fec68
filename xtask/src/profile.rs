//! `cargo xtask profile`: a whole profiling session.
//!
//! `--local` (the default) installs a cached Python environment
//! ([`crate::local_env`]), launches a real sglang-jax server on this machine's
//! CPU under the supervisor of the `sglang-server` crate, and runs
//! [`run_session`]. `--tpu` hands over to [`crate::tpu::profile_tpu`], which
//! reuses [`run_session`] once its server is reachable.
//!
//! The run folder (`runs/<run-id>/` unless `--out` says otherwise):
//!
//! ```text
//! inputs/    requests/*.json, profile_config.json, run_metadata.json, server_args.json
//! artifacts/ jax-profile/ (the server's output_dir), py-spy/ (with --py-spy)
//! logs/      server.log, py-spy-*.log
//! report.md, summary.json, checksums.txt (sha256 of every file under artifacts/)
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use sglang_server::workload::{self, GenerateWorkload, ScoreMix, WorkloadResult};
use sglang_server::{
    Client, ClientConfig, LaunchSpec, Liveness, Precompile, PrecompileFlags, ReadyOptions,
    SpawnSpec, StartProfile, StopOutcome, Supervised, TraceRun,
};

use crate::local_env::{self, DEFAULT_VERSION, LocalEnv};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Run the server on this machine's CPU (the default unless --tpu).
    #[arg(long, conflicts_with = "use_tpu")]
    pub local: bool,
    /// Run the server on a Cloud TPU VM.
    #[arg(long = "tpu")]
    pub use_tpu: bool,
    /// The profiled endpoint.
    #[arg(long, value_enum, default_value_t = Endpoint::Generate)]
    pub endpoint: Endpoint,
    /// Profiled requests. For `score`, rounded up to whole rounds of the
    /// three-request RFC-010 mix.
    #[arg(long, default_value_t = 12)]
    pub requests: usize,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// `max_new_tokens` of each /generate request.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: u32,
    /// Stream the /generate answers (server-sent events).
    #[arg(long)]
    pub stream: bool,
    /// The prompt of each /generate request.
    #[arg(long, default_value = "hello world, what is the capital of france ?")]
    pub prompt: String,
    /// Let the server stop the trace after N forward passes (it records
    /// N-1); by default the trace is stopped with /stop_profile.
    #[arg(long)]
    pub num_steps: Option<u32>,
    #[arg(long, default_value_t = 2)]
    pub host_tracer_level: u32,
    /// Left out by default (the server's default is 1; sglang-jax 0.0.x
    /// ignores 0).
    #[arg(long)]
    pub python_tracer_level: Option<u32>,
    /// The sglang-jax release installed for --local.
    #[arg(long, default_value = DEFAULT_VERSION)]
    pub sglang_jax_version: String,
    /// Server port; a free one by default.
    #[arg(long)]
    pub port: Option<u16>,
    /// Also record the whole server with py-spy during the workload.
    #[arg(long)]
    pub py_spy: bool,
    /// Requests sent before profiling starts (not profiled), at the
    /// workload's concurrency so that the batch shapes the workload will
    /// produce are compiled before the trace starts [default: twice the
    /// concurrency].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// The run folder; `runs/<run-id>` in the current directory by default.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bearer token for a server started with --api-key.
    #[arg(long, env = "SGLPROF_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model to serve; the locally built tiny model by default.
    #[arg(long)]
    pub model_path: Option<String>,
    /// Seconds to wait for the server to become ready.
    #[arg(long, default_value_t = 300)]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub tpu: crate::tpu::TpuProfileArgs,
    #[command(flatten)]
    pub archive: crate::artifacts::ArchiveFlags,
    #[command(flatten)]
    pub k8s: crate::k8s::K8sArgs,
}

impl Args {
    /// `--warmup`, or twice the concurrency.
    pub fn warmup_requests(&self) -> usize {
        self.warmup.unwrap_or(2 * self.concurrency.max(1))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Generate,
    Score,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Generate => "/generate",
            Endpoint::Score => "/v1/score",
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.use_tpu {
        return crate::tpu::profile_tpu(&args);
    }
    if args.k8s.enabled {
        return crate::k8s::profile_k8s(&args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install a SIGTERM handler")?;
        tokio::select! {
            res = run_local(&args) => res,
            _ = tokio::signal::ctrl_c() => interrupted("Ctrl-C"),
            _ = terminate.recv() => interrupted("SIGTERM"),
        }
    })
}

/// The session future has been dropped by now, and with it the supervised
/// processes (their Drop kills their groups); this is the second line.
fn interrupted(what: &str) -> anyhow::Result<()> {
    sglang_server::kill_all_supervised();
    bail!("interrupted by {what}; the server and its children were killed")
}

/// What a session needs once a server answers at some base URL. Shared by
/// the local and the TPU drivers.
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
    /// The run folder's `inputs/`.
    pub inputs_dir: PathBuf,
    pub progress: bool,
}

#[derive(Clone, Debug)]
pub enum Workload {
    Generate(GenerateWorkload),
    Score(ScoreMix),
}

impl Workload {
    pub fn endpoint(&self) -> &'static str {
        match self {
            Workload::Generate(_) => "/generate",
            Workload::Score(_) => "/v1/score",
        }
    }
}

/// Called around the profiled workload (py-spy starts and stops here).
pub trait WorkloadHooks {
    fn before_workload(&mut self) -> anyhow::Result<()>;
    fn after_workload(&mut self);
}

/// For drivers without py-spy (the TPU driver, for now).
#[allow(dead_code)]
pub struct NoHooks;

impl WorkloadHooks for NoHooks {
    fn before_workload(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    fn after_workload(&mut self) {}
}

/// What a session found out. The local driver reads only part of it; the
/// rest is for the TPU driver and for logs.
#[allow(dead_code)]
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

/// The steps after "the server is ready at the client's base URL": server
/// facts, warmup, `/start_profile`, the workload, `/stop_profile` (or the
/// `num_steps` auto-stop) and, when the output folder is local, the wait for
/// complete trace files. Request bodies and the profile config are written to
/// `inputs/` as they are sent.
pub async fn run_session(
    client: &Client,
    liveness: &dyn Liveness,
    config: &SessionConfig,
    hooks: &mut dyn WorkloadHooks,
) -> anyhow::Result<SessionOutcome> {
    let model_info = client.model_info().await?;
    let server_info = client.server_info().await?;
    write_json(
        &config.inputs_dir.join("server_args.json"),
        &redact_server_args(server_info.clone()),
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
        Some(
            send_workload(
                client,
                liveness,
                &warmup_of(&config.workload, config.warmup),
                false,
            )
            .await?,
        )
    };
    if let Some(warmup) = &warmup
        && warmup.errors == warmup.requests
    {
        bail!(
            "every warmup request to {} failed: {}",
            config.workload.endpoint(),
            warmup.first_error.as_deref().unwrap_or("unknown error")
        );
    }

    eprintln!(
        "[session] POST /start_profile {}",
        serde_json::to_string(&config.profile)?
    );
    client
        .start_profile(&config.profile)
        .await
        .context("cannot start the profiler")?;
    hooks.before_workload()?;
    let workload = send_workload(client, liveness, &config.workload, config.progress).await;
    hooks.after_workload();
    let workload = match workload {
        Ok(workload) => workload,
        Err(err) => {
            // Leave the server without a dangling trace if it still runs.
            let _ = client.stop_profile().await;
            return Err(err.into());
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
    if workload.errors == workload.requests {
        let _ = client.stop_profile().await;
        bail!(
            "every profiled request to {} failed: {}",
            workload.endpoint,
            workload.first_error.as_deref().unwrap_or("unknown error")
        );
    }

    let stop = client
        .stop_profile_checked(&config.profile, config.local_output_dir.as_deref())
        .await
        .context("cannot stop the profiler")?;
    match &stop {
        StopOutcome::Stopped(text) => eprintln!("[session] POST /stop_profile: {}", text.trim()),
        StopOutcome::AlreadyStopped => {
            eprintln!(
                "[session] the trace had already stopped after num_steps (HTTP 500 from /stop_profile is expected)"
            )
        }
    }
    let traces = match &config.local_output_dir {
        Some(dir) => {
            let runs = sglang_server::wait_for_trace_files(
                dir,
                Duration::from_millis(500),
                config.trace_wait,
            )
            .await?;
            for run in &runs {
                for file in [&run.xplane, &run.trace_json_gz].into_iter().flatten() {
                    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                    eprintln!("[session] trace file {} ({len} bytes)", file.display());
                }
            }
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

async fn send_workload(
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

/// Warmup in the shape of the workload and at its concurrency: `/generate`
/// with the same body, or the score mix cycled so every batch size is
/// compiled. Sent one at a time, the warmup would leave the batch shapes of
/// concurrent requests to be compiled inside the profile.
fn warmup_of(workload: &Workload, n: usize) -> Workload {
    match workload {
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

fn write_request_bodies(dir: &Path, workload: &Workload, warmup: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let phases = [
        ("warmup", warmup_of(workload, warmup)),
        ("profiled", workload.clone()),
    ];
    for (phase, workload) in phases {
        match workload {
            Workload::Generate(generate) => {
                for (idx, body) in generate.requests().iter().enumerate() {
                    write_json(
                        &dir.join(format!("{phase}-{:03}-generate.json", idx + 1)),
                        body,
                    )?;
                }
            }
            Workload::Score(mix) => {
                for (idx, (kind, body)) in mix.requests().iter().enumerate() {
                    write_json(
                        &dir.join(format!("{phase}-{:03}-score-{}.json", idx + 1, kind.slug())),
                        body,
                    )?;
                }
            }
        }
    }
    Ok(())
}

async fn run_local(args: &Args) -> anyhow::Result<()> {
    // A bad --upload (no bucket) fails before any server starts.
    let archive = args.archive.upload_opts()?;
    let started_at = SystemTime::now();
    let started = Instant::now();
    let endpoint_slug = match args.endpoint {
        Endpoint::Generate => "generate",
        Endpoint::Score => "score",
    };
    let run_id = format!("{}-{endpoint_slug}", compact_utc(started_at));
    let run_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?.join("runs").join(&run_id),
    };
    let run_dir = absolute(&run_dir)?;
    if run_dir.join("inputs").exists() || run_dir.join("artifacts").exists() {
        bail!(
            "{} already holds a run; choose another --out",
            run_dir.display()
        );
    }
    for sub in ["inputs/requests", "artifacts", "logs"] {
        std::fs::create_dir_all(run_dir.join(sub))
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
    }
    eprintln!("[profile] run folder {}", run_dir.display());

    let sh = xshell::Shell::new()?;
    let env_started = Instant::now();
    let env = local_env::ensure(&sh, &args.sglang_jax_version)?;
    let env_took = env_started.elapsed();
    let model_path = match &args.model_path {
        Some(path) => path.clone(),
        None => env.model_dir.display().to_string(),
    };

    let workload = match args.endpoint {
        Endpoint::Generate => Workload::Generate(GenerateWorkload {
            count: args.requests.max(1),
            concurrency: args.concurrency.max(1),
            prompt: args.prompt.clone(),
            max_new_tokens: args.max_new_tokens,
            stream: args.stream,
        }),
        Endpoint::Score => {
            let labels = [" yes", " no"];
            let ids =
                local_env::label_token_ids(&sh, &env.python, Path::new(&model_path), &labels)?;
            eprintln!(
                "[profile] score labels {labels:?} are token ids {ids:?} in the model's tokenizer"
            );
            Workload::Score(ScoreMix {
                model: model_path.clone(),
                label_token_ids: ids,
                rounds: args.requests.max(1).div_ceil(3),
                concurrency: args.concurrency.max(1),
            })
        }
    };

    let port = match args.port {
        Some(port) => port,
        None => free_port()?,
    };
    let launch = launch_spec(&env, &model_path, port, args.api_key.clone());
    let server_log = run_dir.join("logs").join("server.log");
    eprintln!(
        "[profile] starting sglang-jax {} on 127.0.0.1:{port}",
        env.flavor.version
    );
    let server_started = Instant::now();
    let server = Supervised::spawn(&SpawnSpec {
        name: format!("sglang-jax {} server", env.flavor.version),
        program: launch.python.clone(),
        args: launch.argv(),
        env: launch.env.clone(),
        cwd: Some(run_dir.clone()),
        log_path: server_log.clone(),
    })?;
    let client = Client::new(ClientConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        api_key: args.api_key.clone(),
        request_timeout: Duration::from_secs(120),
        server_log: Some(server_log.clone()),
    })?;
    let ready = ReadyOptions {
        timeout: Duration::from_secs(args.ready_timeout),
        poll: Duration::from_millis(500),
        server_log: Some(server_log.clone()),
        settle: Duration::from_secs(10),
    };
    let session = async {
        let took = sglang_server::wait_until_ready(&client, &ready, &server).await?;
        eprintln!("[profile] server ready after {:.1} s", took.as_secs_f64());
        let output_dir = run_dir.join("artifacts").join("jax-profile");
        let config = SessionConfig {
            workload: workload.clone(),
            warmup: args.warmup_requests(),
            profile: StartProfile {
                output_dir: Some(output_dir.display().to_string()),
                num_steps: args.num_steps,
                host_tracer_level: Some(args.host_tracer_level),
                python_tracer_level: args.python_tracer_level,
                ..StartProfile::default()
            },
            local_output_dir: Some(output_dir),
            trace_wait: Duration::from_secs(120),
            inputs_dir: run_dir.join("inputs"),
            progress: true,
        };
        let mut py_spy = PySpyHooks::new(args.py_spy, &env, server.pid(), &run_dir);
        let outcome = run_session(&client, &server, &config, &mut py_spy).await;
        let py_spy_files = py_spy.finish().await;
        anyhow::Ok((outcome?, py_spy_files, config))
    };
    let session = session.await;
    let stop = server.stop(Duration::from_secs(20)).await;
    // sglang-jax ends its own process tree with SIGKILL on shutdown, so a
    // "signal: 9" status alone does not mean sglprof had to kill it.
    eprintln!(
        "[profile] server stopped in {:.1} s ({}{})",
        stop.took.as_secs_f64(),
        stop.status,
        if stop.killed {
            "; the grace period ran out and sglprof sent SIGKILL"
        } else {
            ""
        },
    );
    if let Some(key) = &args.api_key {
        // py-spy records the launcher's command line, which holds the key.
        redact_in_logs(&run_dir.join("logs"), key)?;
        redact_in_logs(&run_dir.join("artifacts").join("py-spy"), key)?;
    }
    let (outcome, py_spy_files, config) =
        session.map_err(|err| explain_failure(err, &env, args.endpoint))?;
    let server_took = server_started.elapsed();

    if args.py_spy && py_spy_files.is_none() {
        bail!(
            "py-spy produced no output; see {}",
            run_dir.join("logs").display()
        );
    }
    let mut metadata = session_report::RunMetadata::new();
    metadata.run_id = Some(
        run_dir
            .file_name()
            .map_or(run_id.clone(), |n| n.to_string_lossy().into_owned()),
    );
    metadata.date = Some(utc_date(started_at));
    metadata.started_at = Some(rfc3339(started_at));
    metadata.finished_at = Some(rfc3339(SystemTime::now()));
    metadata.model = Some(model_label(&model_path));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    metadata.hardware = Some(format!("CPU (local, {cores} cores)"));
    metadata.zone = Some("local".to_owned());
    metadata.endpoint = Some(args.endpoint.path().to_owned());
    metadata.jax_version = Some(env.versions.jax.clone());
    metadata.jaxlib_version = Some(env.versions.jaxlib.clone());
    // The server reports its `__version__` (`0.0.1` for 0.0.1.post1); the
    // installed distribution is more precise when the two agree.
    let server_version = outcome
        .server_info
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    metadata.sglang_jax_version = Some(if env.versions.sglang_jax.starts_with(server_version) {
        env.versions.sglang_jax.clone()
    } else {
        server_version.to_owned()
    });
    metadata.python_version = Some(env.versions.python.clone());
    metadata.profile = Some(profile_config(&config.profile, &run_dir));
    metadata.workload = Some(workload_summary(&outcome.workload));
    metadata.reproduction = reproduction(args, &launch);
    if let Some((raw, speedscope)) = &py_spy_files {
        metadata.pyspy_raw = Some(relative(raw, &run_dir));
        metadata.pyspy_speedscope = Some(relative(speedscope, &run_dir));
    }
    write_atomic(
        &run_dir.join("inputs").join("run_metadata.json"),
        &metadata.to_json(),
    )?;
    let n_files = write_checksums(&run_dir)?;
    eprintln!("[profile] checksums.txt lists {n_files} artifact files");
    eprintln!(
        "[profile] timings: environment {:.1} s, server session {:.1} s, total {:.1} s",
        env_took.as_secs_f64(),
        server_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if let Some(opts) = &archive {
        crate::artifacts::record_archive_target(&run_dir, opts)?;
    }
    crate::report::generate(&run_dir, &run_dir, 15).with_context(|| {
        format!(
            "the run folder {} is complete but the report failed",
            run_dir.display()
        )
    })?;
    eprintln!("[profile] report: {}", run_dir.join("report.md").display());
    if let Some(opts) = &archive {
        let url = crate::artifacts::upload_run_async(&run_dir, opts, &[]).await?;
        eprintln!("[profile] archived: {url}");
    }
    Ok(())
}

/// Turns a dead server into a sentence that says what to do about it.
fn explain_failure(err: anyhow::Error, env: &LocalEnv, endpoint: Endpoint) -> anyhow::Error {
    let died = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sglang_server::Error>(),
            Some(sglang_server::Error::Died { .. })
        )
    });
    if died && endpoint == Endpoint::Score && env.flavor.score_crashes {
        return err.context(format!(
            "POST /v1/score killed the sglang-jax {} server, a known bug of that release \
             (ConcretizationTypeError in get_token_ids_logprobs); use --sglang-jax-version {DEFAULT_VERSION} \
             or --endpoint generate",
            env.flavor.version
        ));
    }
    err
}

fn launch_spec(env: &LocalEnv, model_path: &str, port: u16, api_key: Option<String>) -> LaunchSpec {
    let mut vars: Vec<(String, String)> = vec![
        ("JAX_PLATFORMS".into(), "cpu".into()),
        ("HF_HUB_OFFLINE".into(), "1".into()),
        ("TRANSFORMERS_OFFLINE".into(), "1".into()),
        ("PYTHONPATH".into(), env.shim_dir.display().to_string()),
    ];
    vars.extend(
        env.flavor
            .shim_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    LaunchSpec {
        python: env.python.clone(),
        model_path: model_path.to_owned(),
        host: "127.0.0.1".to_owned(),
        port,
        tp_size: 1,
        dtype: None,
        device: Some("cpu".to_owned()),
        attention_backend: Some("native".to_owned()),
        precompile: Some(Precompile {
            token_paddings: vec![64, 128, 256, 512],
            bs_paddings: vec![1, 2, 4, 8],
            flags: PrecompileFlags::for_version(env.flavor.version),
        }),
        api_key,
        extra_args: [
            "--max-total-tokens",
            "4096",
            "--max-running-requests",
            "8",
            "--max-prefill-tokens",
            "512",
            "--chunked-prefill-size",
            "512",
            "--mem-fraction-static",
            "0.1",
            "--log-level",
            "info",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        env: vars,
    }
}

/// py-spy around the workload: two recorders (raw collapsed stacks and
/// speedscope) over the launcher and its children.
struct PySpyHooks {
    enabled: bool,
    py_spy: PathBuf,
    pid: u32,
    out_dir: PathBuf,
    logs_dir: PathBuf,
    running: Vec<(Supervised, PathBuf)>,
    failed: bool,
}

impl PySpyHooks {
    fn new(enabled: bool, env: &LocalEnv, pid: u32, run_dir: &Path) -> PySpyHooks {
        PySpyHooks {
            enabled,
            py_spy: env.py_spy.clone(),
            pid,
            out_dir: run_dir.join("artifacts").join("py-spy"),
            logs_dir: run_dir.join("logs"),
            running: Vec::new(),
            failed: false,
        }
    }

    /// Waits for the recorders to write their files; returns the raw and
    /// speedscope paths when both exist.
    async fn finish(&mut self) -> Option<(PathBuf, PathBuf)> {
        for (recorder, _) in &self.running {
            let report = recorder.wait_then_stop(Duration::from_secs(30)).await;
            if report.killed {
                self.failed = true;
            }
        }
        let outputs: Vec<PathBuf> = self.running.drain(..).map(|(_, out)| out).collect();
        if outputs.len() != 2 || self.failed || !outputs.iter().all(|p| p.exists()) {
            return None;
        }
        Some((outputs[0].clone(), outputs[1].clone()))
    }
}

impl WorkloadHooks for PySpyHooks {
    fn before_workload(&mut self) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        std::fs::create_dir_all(&self.out_dir)?;
        for (format, file) in [
            ("raw", "profile.raw.txt"),
            ("speedscope", "profile.speedscope.json"),
        ] {
            let out = self.out_dir.join(file);
            let spec = SpawnSpec {
                name: format!("py-spy ({format})"),
                program: self.py_spy.clone(),
                args: [
                    "record",
                    "--subprocesses",
                    "--pid",
                    &self.pid.to_string(),
                    "--rate",
                    "100",
                    "--format",
                    format,
                    "--output",
                    &out.display().to_string(),
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                env: Vec::new(),
                cwd: None,
                log_path: self.logs_dir.join(format!("py-spy-{format}.log")),
            };
            self.running.push((Supervised::spawn(&spec)?, out));
        }
        eprintln!(
            "[session] py-spy recording pid {} and its children",
            self.pid
        );
        Ok(())
    }

    fn after_workload(&mut self) {
        for (recorder, _) in &self.running {
            recorder.send_interrupt();
        }
    }
}

pub(crate) fn profile_config(
    profile: &StartProfile,
    run_dir: &Path,
) -> session_report::ProfileConfig {
    session_report::ProfileConfig {
        output_dir: profile
            .output_dir
            .as_deref()
            .map(|dir| relative(Path::new(dir), run_dir)),
        num_steps: profile.num_steps,
        start_step: profile.start_step,
        host_tracer_level: profile.host_tracer_level,
        python_tracer_level: profile.python_tracer_level,
        profile_by_stage: profile.profile_by_stage,
        profile_stages: profile.profile_stages.clone().unwrap_or_default(),
    }
}

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

fn reproduction(args: &Args, launch: &LaunchSpec) -> Vec<String> {
    let mut cmd = format!(
        "cargo xtask profile --local --sglang-jax-version {} --requests {} --concurrency {} --warmup {} --host-tracer-level {}",
        args.sglang_jax_version,
        args.requests,
        args.concurrency,
        args.warmup_requests(),
        args.host_tracer_level
    );
    match args.endpoint {
        Endpoint::Generate => {
            cmd.push_str(&format!(
                " --endpoint generate --max-new-tokens {}",
                args.max_new_tokens
            ));
            cmd.push_str(&format!(" --prompt {}", shell_word(&args.prompt)));
            if args.stream {
                cmd.push_str(" --stream");
            }
        }
        Endpoint::Score => cmd.push_str(" --endpoint score"),
    }
    if let Some(n) = args.num_steps {
        cmd.push_str(&format!(" --num-steps {n}"));
    }
    if let Some(level) = args.python_tracer_level {
        cmd.push_str(&format!(" --python-tracer-level {level}"));
    }
    if args.py_spy {
        cmd.push_str(" --py-spy");
    }
    vec![
        cmd,
        format!("# server command line: {}", launch.shell_line()),
    ]
}

fn shell_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `/get_server_info` echoes every launch argument, the API key included;
/// the copy kept in the run folder must not.
fn redact_server_args(mut info: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = info.as_object_mut() {
        for (name, value) in fields.iter_mut() {
            if name.contains("api_key") && !value.is_null() {
                *value = serde_json::Value::String("<redacted>".to_owned());
            }
        }
    }
    info
}

/// The server logs its arguments at start-up, the API key among them;
/// rewrites every text file under `dir` without it.
fn redact_in_logs(logs_dir: &Path, secret: &str) -> anyhow::Result<()> {
    if secret.is_empty() {
        return Ok(());
    }
    for file in files_if_any(logs_dir)? {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if text.contains(secret) {
            write_atomic(&file, &text.replace(secret, "<redacted>"))?;
        }
    }
    Ok(())
}

/// A short model name for the report: the folder name of a local path.
fn model_label(model_path: &str) -> String {
    let path = Path::new(model_path);
    if path.is_absolute() {
        path.file_name()
            .map_or(model_path.to_owned(), |n| n.to_string_lossy().into_owned())
    } else {
        model_path.to_owned()
    }
}

/// Writes `checksums.txt` (sha256sum format) for every file under
/// `artifacts/`; returns how many files it lists.
pub(crate) fn write_checksums(run_dir: &Path) -> anyhow::Result<usize> {
    use sha2::{Digest, Sha256};

    let files = files_if_any(&run_dir.join("artifacts"))?;
    let mut text = String::new();
    for file in &files {
        let mut hasher = Sha256::new();
        let mut reader =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        std::io::copy(&mut reader, &mut hasher)?;
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!("{hex}  {}\n", relative(file, run_dir)));
    }
    write_atomic(&run_dir.join("checksums.txt"), &text)?;
    Ok(files.len())
}

/// Every file below `dir`, sorted; none when `dir` does not exist.
fn files_if_any(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.is_dir() {
        crate::report::list_files(dir)
    } else {
        Ok(Vec::new())
    }
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    write_atomic(path, &(serde_json::to_string_pretty(value)? + "\n"))
}

/// Writes through a temporary file in the same folder and renames it, so a
/// reader never sees half a file.
pub(crate) fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A free TCP port on the loopback interface (the OS picks it).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `YYYYMMDDTHHMMSSZ`.
pub(crate) fn compact_utc(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_utc(time);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

fn rfc3339(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil_utc(time);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn utc_date(time: SystemTime) -> String {
    let (y, mo, d, ..) = civil_utc(time);
    format!("{y:04}-{mo:02}-{d:02}")
}

/// Calendar date and time of day in UTC (proleptic Gregorian; the days-to-
/// date conversion is the well-known "civil from days" algorithm).
fn civil_utc(time: SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sglang_server::workload::ScoreKind;
    use sglang_server::{GenerateRequest, SamplingParams};

    #[test]
    fn utc_formatting() {
        // 2026-11-23T14:23:01Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_443_781);
        assert_eq!(compact_utc(t), "20261123T142301Z");
        assert_eq!(rfc3339(t), "2026-11-23T14:23:01Z");
        assert_eq!(utc_date(SystemTime::UNIX_EPOCH), "1970-01-01");
    }

    #[test]
    fn warmup_of_score_covers_every_kind() {
        let mix = ScoreMix {
            model: "m".into(),
            label_token_ids: vec![1, 2],
            rounds: 5,
            concurrency: 4,
        };
        let Workload::Score(warm) = warmup_of(&Workload::Score(mix), 3) else {
            unreachable!()
        };
        let kinds: Vec<ScoreKind> = warm.requests().iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ScoreKind::ALL.to_vec());
        // Same concurrency as the workload, so its batch shapes get compiled.
        assert_eq!(warm.concurrency, 4);
    }

    #[test]
    fn api_keys_do_not_reach_the_run_folder() {
        let info = serde_json::json!({"api_key": "k3y", "port": 1, "admin_api_key": null});
        let redacted = redact_server_args(info);
        assert_eq!(
            redacted,
            serde_json::json!({"api_key": "<redacted>", "port": 1, "admin_api_key": null})
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("server.log"),
            "server_args=ServerArgs(api_key='k3y', port=1)\n",
        )
        .unwrap();
        redact_in_logs(dir.path(), "k3y").unwrap();
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        assert_eq!(
            log,
            "server_args=ServerArgs(api_key='<redacted>', port=1)\n"
        );
    }

    #[test]
    fn generate_bodies_are_greedy() {
        let body = GenerateRequest {
            text: "x".into(),
            sampling_params: SamplingParams {
                max_new_tokens: 3,
                temperature: Some(0.0),
            },
            stream: false,
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"text": "x", "sampling_params": {"max_new_tokens": 3, "temperature": 0.0}})
        );
    }
}
