//! The TPU session on the VM: install, launch, tunnel, the shared session
//! of `profile-session`, and the trace files and server log copied home.
//! It drives worker 0 of a [`Slice`]: a real VM over gcloud, or a local
//! worker in a rehearsal (`crate::tpu_rehearsal`), where the install is the
//! CPU variant and the server runs on the CPU with the shim.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use profile_session::session::{self, NoHooks, SessionConfig, Workload};
use profile_session::{Endpoint, Plan as SessionPlan};
use sglang_server::{Client, ClientConfig, LaunchSpec, NoLiveness, ReadyOptions};
use tpu_cloud::gcloud::Worker;
use tpu_cloud::remote::Slice;
use tpu_cloud::script::{CpuInstall, InstallSpec};

use crate::local_env::LocalEnv;

use crate::tpu_plan::{Plan, RemoteOutcome};

/// The server's port on the VM (only reachable through the tunnel).
const REMOTE_PORT: u16 = 30000;

/// Install, launch, tunnel, the shared session, then the trace files and
/// the log copied home. `None` in a dry run (nothing came back).
pub(crate) async fn remote_session(
    args: &crate::profile::Args,
    session_plan: &SessionPlan,
    plan: &Plan,
    remote: &Slice,
    cpu: Option<&LocalEnv>,
    archive: Option<&crate::artifacts::UploadOpts>,
    dry_run: bool,
) -> anyhow::Result<Option<RemoteOutcome>> {
    eprintln!(
        "[tpu] installing {} on {}",
        profile_session::redact::url(&plan.source.describe()),
        plan.node_id
    );
    let install = InstallSpec {
        source: plan.source.clone(),
        extra_packages: Vec::new(),
        cpu: cpu.map(|env| CpuInstall {
            jax_cpu: env.flavor.jax_cpu.to_owned(),
            extra_pins: env
                .flavor
                .extra_pins
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            ignore_requires_python: env.flavor.ignore_requires_python,
        }),
    };
    let versions = remote.install(&install).await?;
    if let Some(version) = versions.get("sglang-jax") {
        session_plan.check_server(version)?;
    }
    // Local workers share this machine's ports: a free one there.
    let wanted_port = if cpu.is_some() {
        free_port()?
    } else {
        REMOTE_PORT
    };
    let remote_port = remote.workers().server_port(0, wanted_port);
    let launch = match cpu {
        Some(env) => crate::local::launch_spec(env, &plan.model, remote_port, args.api_key.clone()),
        None => tpu_launch(args, plan),
    };
    let mut env = launch.env.clone();
    env.push(("HF_HOME".to_owned(), "/tmp/hf".to_owned()));
    let server_line = format!("HF_HOME=/tmp/hf {}", launch.shell_line());
    let launch = tpu_cloud::script::LaunchSpec {
        python_args: launch.argv(),
        env: env.into_iter().collect(),
    };
    eprintln!(
        "[tpu] starting sglang-jax ({}) on {}",
        plan.model, plan.node_id
    );
    remote.launch(0, &launch).await?;
    let local_port = match (args.port, cpu) {
        (_, Some(_)) => remote_port,
        (Some(port), None) => port,
        (None, None) => free_port()?,
    };
    let reach = remote.reach(0, local_port, remote_port)?;
    let mut tunnel = reach.guard;
    let local_port = reach.port;
    let base_url = format!("http://{}:{local_port}", reach.host);
    eprintln!("[tpu] tunnel {base_url} -> {}:{remote_port}", plan.node_id);
    let workload = workload(session_plan, plan, remote, dry_run).await?;
    let config = SessionConfig {
        workload,
        warmup: session_plan.warmup,
        profile: session_plan.start_profile(plan.remote_profile_dir.clone()),
        local_output_dir: None,
        trace_wait: Duration::from_secs(300),
        inputs_dir: plan.run_dir.join("inputs"),
        progress: true,
    };
    if dry_run {
        println!(
            "# then through the tunnel at {base_url}: wait for /health_generate, {} warmup request(s), \
             POST /start_profile {}, the {} workload, POST /stop_profile",
            session_plan.warmup,
            serde_json::to_string(&config.profile)?,
            config.workload.endpoint()
        );
    }
    let session = if dry_run {
        None
    } else {
        let client = Client::new(ClientConfig {
            base_url: base_url.clone(),
            api_key: args.api_key.clone(),
            request_timeout: Duration::from_secs(120),
            server_log: None,
        })?;
        let ready = ReadyOptions {
            timeout: Duration::from_secs(args.ready_timeout.max(900)),
            poll: Duration::from_secs(2),
            server_log: None,
            settle: Duration::ZERO,
        };
        let ready = sglang_server::wait_until_ready(&client, &ready, &NoLiveness).await;
        if let Err(err) = ready {
            if let Some(status) = tunnel.exited() {
                bail!("the ssh tunnel to {} ended ({status}): {err}", plan.node_id);
            }
            // The log tail says why the server is not answering.
            remote.ensure_alive(0).await?;
            return Err(err.into());
        }
        let outcome = session::run_session(&client, &NoLiveness, &config, &mut NoHooks).await;
        Some(outcome?)
    };

    // The trace files are on the VM: wait for them there, then copy them.
    let files = remote
        .wait_for_traces(0, &plan.remote_profile_dir, 300)
        .await?;
    for (size, path) in &files {
        eprintln!("[tpu] trace file {path} ({size} bytes)");
    }
    if let Some(opts) = archive {
        // The big trace files go to GCS straight from the VM, which is
        // faster than from a laptop; the archive upload at the end finds
        // them there (same size and crc32c) and skips them.
        let script = crate::artifacts::vm_upload_script(
            &plan.run_dir,
            opts,
            &plan.remote_profile_dir,
            "artifacts/jax-profile",
        )?;
        eprintln!("[tpu] archiving the traces from the VM");
        remote.workers().run(Worker::One(0), &script).await?;
    }
    let local_profile = plan.run_dir.join("artifacts").join("jax-profile");
    remote
        .fetch(0, &plan.remote_profile_dir, &local_profile, true)
        .await?;
    let logs = plan.run_dir.join("logs");
    remote.fetch_log(0, &logs.join("server.log")).await?;
    if let Some(key) = &session_plan.api_key {
        // sglang-jax logs its arguments, the key among them, at start-up.
        profile_session::redact::in_files(&logs, key)?;
    }
    tunnel.kill().await;
    if args.tpu.keep || args.tpu.vm.is_some() {
        remote.stop_server(0).await?;
    }
    Ok(session.map(|session| RemoteOutcome {
        session,
        config,
        versions,
        server_line,
        local_port,
    }))
}

/// The server on a TPU VM: sglang-jax's defaults, the model from the hub.
fn tpu_launch(args: &crate::profile::Args, plan: &Plan) -> LaunchSpec {
    LaunchSpec {
        python: PathBuf::from("python"),
        model_path: plan.model.clone(),
        host: "127.0.0.1".to_owned(),
        port: REMOTE_PORT,
        tp_size: 1,
        dtype: None,
        device: None,
        attention_backend: None,
        precompile: None,
        api_key: args.api_key.clone(),
        multi_node: None,
        extra_args: Vec::new(),
        env: Vec::new(),
    }
}

/// The profiled workload. Score label ids come from the model's tokenizer
/// on the VM, which has transformers installed with sglang-jax.
async fn workload(
    session_plan: &SessionPlan,
    plan: &Plan,
    remote: &Slice,
    dry_run: bool,
) -> anyhow::Result<Workload> {
    let ids = match session_plan.endpoint {
        Endpoint::Generate => Vec::new(),
        Endpoint::Score => {
            let ids = label_token_ids(remote, &plan.model).await?;
            let ids = if dry_run { vec![0, 0] } else { ids };
            if ids.len() != 2 {
                bail!(
                    "the tokenizer of {} gave {ids:?} for \" yes\"/\" no\", expected one id each",
                    plan.model
                );
            }
            ids
        }
    };
    Ok(Workload::from_plan(session_plan, &plan.model, ids))
}

async fn label_token_ids(remote: &Slice, model: &str) -> anyhow::Result<Vec<u32>> {
    let script = format!(
        "cd \"$HOME\"\nHF_HOME=/tmp/hf sglprof/venv/bin/python - {} <<'PY'\n\
         import sys\nfrom transformers import AutoTokenizer\n\
         tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)\n\
         for word in (' yes', ' no'):\n    ids = tok.encode(word, add_special_tokens=False)\n    print('sglprof-token', *ids)\nPY\n",
        tpu_cloud::script::sh_quote(model)
    );
    let out = remote.workers().run(Worker::One(0), &script).await?;
    let mut ids = Vec::new();
    for line in out.lines().filter_map(|l| l.strip_prefix("sglprof-token ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() != 1 {
            bail!("\" yes\"/\" no\" are not single tokens in {model}: {line}");
        }
        ids.push(words[0].parse()?);
    }
    Ok(ids)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}
