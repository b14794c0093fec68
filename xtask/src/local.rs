//! The local host of `cargo xtask profile --local`: the cached Python
//! environment ([`crate::local_env`]), a real sglang-jax server on this
//! machine's CPU or, with `--device tpu`, its TPU ([`crate::device`]) under
//! the `sglang-server` supervisor, py-spy around the workload, and the
//! session, run folder and report of `profile-session` and `profile-report`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use profile_session::manual::ManualSteps;
use profile_session::plan::HostKind;
use profile_session::pyspy::LocalRecorder;
use profile_session::session::{self, SessionConfig, Workload};
use profile_session::{Endpoint, Plan, RunFolder};
use sglang_server::{Client, ClientConfig, ReadyOptions, SpawnSpec, Supervised};

use crate::device::Device;
pub(crate) use crate::device::launch_spec;
use crate::local_env;
use crate::profile::Args;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan(HostKind::Local)?;
    // Refused before anything is created; checked again once installed.
    plan.check_server(&plan.sglang_jax_version)?;
    let tpu = match args.device.unwrap_or_default() {
        Device::Cpu => None,
        Device::Tpu => Some(crate::device::require_tpu()?),
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        tokio::select! {
            res = run_local(args, &plan, tpu.as_ref()) => res,
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

async fn run_local(
    args: &Args,
    plan: &Plan,
    tpu: Option<&crate::device::TpuChips>,
) -> anyhow::Result<()> {
    let device = if tpu.is_some() {
        Device::Tpu
    } else {
        Device::Cpu
    };
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
    let env = local_env::ensure_for(&sh, &args.sglang_jax_version, device)?;
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
    let workload = Workload::from_plan(plan, &model_path, label_ids)?;

    let port = match args.port {
        Some(port) => port,
        None => free_port()?,
    };
    let launch = launch_spec(&env, &model_path, port, args.api_key.clone());
    let server_log = run_dir.join("logs").join("server.log");
    eprintln!(
        "[profile] starting sglang-jax {} on 127.0.0.1:{port} ({})",
        env.flavor.version,
        device.name()
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
        // A TPU server compiles its precompile shapes before it is ready,
        // minutes for a real model: at least 900 s, as on a TPU VM.
        timeout: Duration::from_secs(match device {
            Device::Cpu => args.ready_timeout,
            Device::Tpu => args.ready_timeout.max(900),
        }),
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
        let mut py_spy = LocalRecorder::new(args.py_spy, &env.py_spy, server.pid(), &folder);
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
    let (outcome, py_spy_files, config) = session?;
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
    metadata.hardware = Some(match tpu {
        Some(tpu) => tpu.hardware_label(),
        None => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            format!("CPU (local, {cores} cores)")
        }
    });
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
    metadata.serving = Some(outcome.serving.clone());
    let steps = ManualSteps {
        setup: vec![
            format!(
                "# the environment sglprof cached: sglang-jax {}, jax {} ({})",
                env.versions.sglang_jax,
                env.versions.jax,
                env.flavor.jax_requirement(device)
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
    // The CPU is the default device and needs no flag.
    let device_flags = match device {
        Device::Cpu => Vec::new(),
        Device::Tpu => vec!["--device".to_owned(), "tpu".to_owned()],
    };
    metadata.reproduction = vec![plan.reproduction(&device_flags), String::new()];
    metadata.reproduction.extend(steps.render());
    if let Some(files) = &py_spy_files {
        files.record_in(&folder, &mut metadata);
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
