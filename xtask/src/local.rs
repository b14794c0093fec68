//! The local host of `cargo xtask profile --local`: the cached Python
//! environment ([`crate::local_env`]), a real sglang-jax server on this
//! machine's CPU under the `sglang-server` supervisor, py-spy around the
//! workload, and the session, run folder and report of `profile-session`
//! and `profile-report`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use profile_session::manual::ManualSteps;
use profile_session::plan::HostKind;
use profile_session::session::{self, SessionConfig, SessionError, Workload, WorkloadHooks};
use profile_session::{Endpoint, Plan, RunFolder};
use sglang_server::{
    Client, ClientConfig, LaunchSpec, Precompile, PrecompileFlags, ReadyOptions, SpawnSpec,
    Supervised,
};

use crate::local_env::{self, DEFAULT_VERSION, LocalEnv};
use crate::profile::Args;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan(HostKind::Local)?;
    // Refused before anything is created; checked again once installed.
    plan.check_server(&plan.sglang_jax_version)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            res = run_local(args, &plan) => res,
            name = crate::profile::shutdown_signal() => {
                // The session future has been dropped by now, and with it
                // the supervised processes (their Drop kills their groups);
                // this is the second line.
                sglang_server::kill_all_supervised();
                bail!("interrupted by {name}; the server and its children were killed")
            }
        }
    })
}

async fn run_local(args: &Args, plan: &Plan) -> anyhow::Result<()> {
    // A bad --upload (no bucket) fails before any server starts.
    let archive = args.archive.upload_opts()?;
    let started_at = SystemTime::now();
    let started = Instant::now();
    let run_id = format!(
        "{}Z-{}",
        tpu_cloud::time::compact_stamp(started_at).replace('-', "T"),
        plan.endpoint.slug()
    );
    let folder = RunFolder::create(
        &args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&run_id)),
    )?;
    let run_dir = folder.root().to_path_buf();
    eprintln!("[profile] run folder {}", run_dir.display());

    let sh = xshell::Shell::new()?;
    let env_started = Instant::now();
    let env = local_env::ensure(&sh, &args.sglang_jax_version)?;
    let env_took = env_started.elapsed();
    plan.check_server(&env.versions.sglang_jax)?;
    let model_path = match &args.model_path {
        Some(path) => path.clone(),
        None => env.model_dir.display().to_string(),
    };

    let label_ids = match plan.endpoint {
        Endpoint::Generate => Vec::new(),
        Endpoint::Score => {
            let labels = session::SCORE_LABELS;
            let ids =
                local_env::label_token_ids(&sh, &env.python, Path::new(&model_path), &labels)?;
            eprintln!(
                "[profile] score labels {labels:?} are token ids {ids:?} in the model's tokenizer"
            );
            ids
        }
    };
    let workload = Workload::from_plan(plan, &model_path, label_ids);

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
        let output_dir = folder.jax_profile();
        let config = SessionConfig {
            workload: workload.clone(),
            warmup: plan.warmup,
            profile: plan.start_profile(output_dir.display().to_string()),
            local_output_dir: Some(output_dir),
            trace_wait: Duration::from_secs(120),
            inputs_dir: run_dir.join("inputs"),
            progress: true,
        };
        let mut py_spy = PySpyHooks::new(args.py_spy, &env, server.pid(), &run_dir);
        let outcome = session::run_session(&client, &server, &config, &mut py_spy).await;
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
    if let Some(key) = &plan.api_key {
        // py-spy records the launcher's command line, which holds the key.
        profile_session::redact::in_files(&folder.logs(), key)?;
        profile_session::redact::in_files(&folder.pyspy(), key)?;
    }
    let (outcome, py_spy_files, config) =
        session.map_err(|err| explain_failure(err, &env, plan.endpoint))?;
    let server_took = server_started.elapsed();

    if plan.py_spy && py_spy_files.is_none() {
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
    let stamp = tpu_cloud::time::rfc3339(started_at);
    metadata.date = Some(stamp[..10].to_owned());
    metadata.started_at = Some(stamp);
    metadata.finished_at = Some(tpu_cloud::time::rfc3339(SystemTime::now()));
    metadata.model = Some(model_label(&model_path));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    metadata.hardware = Some(format!("CPU (local, {cores} cores)"));
    metadata.zone = Some("local".to_owned());
    metadata.endpoint = Some(plan.endpoint.path().to_owned());
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
    metadata.profile = Some(session::profile_config(&config.profile, &run_dir));
    metadata.workload = Some(session::workload_summary(&outcome.workload));
    let steps = ManualSteps {
        setup: vec![
            format!(
                "# the environment sglprof cached: sglang-jax {}, jax {}",
                env.versions.sglang_jax, env.versions.jax
            ),
            format!("{} &", launch.shell_line()),
        ],
        workflow: ManualSteps::http_workflow(
            &format!("http://127.0.0.1:{port}"),
            plan.endpoint.path(),
            &config.profile,
            plan.concurrency,
            plan.api_key.is_some(),
        ),
        download: Vec::new(),
        cleanup: vec!["kill %1  # the server started above".to_owned()],
    };
    metadata.reproduction = vec![plan.reproduction(&[]), String::new()];
    metadata.reproduction.extend(steps.render());
    if let Some((raw, speedscope)) = &py_spy_files {
        metadata.pyspy_raw = Some(folder.relative(raw));
        metadata.pyspy_speedscope = Some(folder.relative(speedscope));
    }
    eprintln!(
        "[profile] timings: environment {:.1} s, server session {:.1} s, total {:.1} s",
        env_took.as_secs_f64(),
        server_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    crate::profile::finish_run(&folder, &metadata, archive.as_ref(), "profile").await
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

pub(crate) fn launch_spec(
    env: &LocalEnv,
    model_path: &str,
    port: u16,
    api_key: Option<String>,
) -> LaunchSpec {
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
        multi_node: None,
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
    fn before_workload(&mut self) -> Result<(), SessionError> {
        if !self.enabled {
            return Ok(());
        }
        let hook = |what: &str| {
            let what = what.to_owned();
            move |err: Box<dyn std::error::Error + Send + Sync>| SessionError::Hook {
                what,
                source: err,
            }
        };
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|err| hook("cannot create the py-spy folder")(err.into()))?;
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
            let recorder =
                Supervised::spawn(&spec).map_err(|err| hook("cannot start py-spy")(err.into()))?;
            self.running.push((recorder, out));
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

/// A free TCP port on the loopback interface (the OS picks it).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}
