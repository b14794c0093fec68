//! The TPU session on the VM: install, launch, tunnel, the shared session
//! of `profile-session`, and the trace files and server logs copied home.
//! It drives every worker of a [`Slice`]: a real VM over gcloud, or local
//! workers in a rehearsal (`crate::tpu_rehearsal`), where the install is
//! the CPU variant and the servers run on the CPU with the shim.
//!
//! On a multi-host slice every worker runs the launcher with its node rank
//! and the multi-node flags, worker 0 serves HTTP, and the one profile
//! request reaches every host. sglang-jax on the CPU cannot span hosts, so
//! a rehearsal runs one independent server per worker instead and runs the
//! session (warmup, profile, workload, stop) against each of them at once.
//! Either way, py-spy records every worker and the traces of every worker
//! are collected into one JAX run, one `<host>.*` pair per worker.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use profile_session::collect::Collector;
use profile_session::pyspy::{self, SliceRecorder};
use profile_session::session::{self, NoHooks, SessionConfig, Workload};
use profile_session::{Endpoint, Plan as SessionPlan, RunFolder};
use sglang_server::{Client, ClientConfig, LaunchSpec, NoLiveness, ReadyOptions};
use tpu_cloud::gcloud::{Background, Worker};
use tpu_cloud::remote::Slice;
use tpu_cloud::script::{CpuInstall, InstallSpec};

use crate::local_env::LocalEnv;

use crate::tpu_plan::{Plan, RemoteOutcome};

/// The server's port on the VM (only reachable through the tunnel).
const REMOTE_PORT: u16 = 30000;
/// Where worker 0 listens for the other workers of a multi-host server.
const DIST_INIT_PORT: u16 = 10011;

/// A server this side talks to: its worker and the way to its port.
struct Served {
    worker: u32,
    base_url: String,
    local_port: u16,
    tunnel: Background,
}

/// Install, launch, tunnel, the shared session, then the trace files and
/// the logs copied home. `None` in a dry run (nothing came back).
pub(crate) async fn remote_session(
    args: &crate::profile::Args,
    session_plan: &SessionPlan,
    plan: &Plan,
    remote: &Slice,
    cpu: Option<&LocalEnv>,
    archive: Option<&crate::archive::UploadOpts>,
    dry_run: bool,
) -> anyhow::Result<Option<RemoteOutcome>> {
    let folder = RunFolder::planned(&plan.run_dir)?;
    let hosts = remote.count();
    let every: Vec<u32> = (0..hosts).collect();
    eprintln!(
        "[tpu] installing {} on {} ({hosts} worker(s))",
        profile_session::redact::url(&plan.source.describe()),
        plan.node_id
    );
    let install = InstallSpec {
        source: plan.source.clone(),
        extra_packages: if session_plan.py_spy {
            vec![pyspy::PACKAGE.to_owned()]
        } else {
            Vec::new()
        },
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
    let launches = launch_specs(args, plan, remote, cpu)?;
    let server_line = format!("HF_HOME=/tmp/hf {}", launches[0].1.shell_line());
    eprintln!(
        "[tpu] starting sglang-jax ({}) on {}",
        plan.model, plan.node_id
    );
    for (worker, launch) in &launches {
        let mut env = launch.env.clone();
        env.push(("HF_HOME".to_owned(), "/tmp/hf".to_owned()));
        let launch = tpu_cloud::script::LaunchSpec {
            python_args: launch.argv(),
            env: env.into_iter().collect(),
        };
        remote.launch(*worker, &launch).await?;
    }
    // A rehearsal's servers are independent: this side drives each. One
    // server spanning a real slice answers on worker 0.
    let serving = if cpu.is_some() {
        every.clone()
    } else {
        vec![0]
    };
    let mut served = Vec::new();
    for &worker in &serving {
        let remote_port = launches[worker as usize].1.port;
        let local_port = match (args.port, cpu) {
            (_, Some(_)) => remote_port,
            (Some(port), None) => port,
            (None, None) => free_ports(1)?,
        };
        let reach = remote.reach(worker, local_port, remote_port)?;
        let base_url = format!("http://{}:{}", reach.host, reach.port);
        eprintln!(
            "[tpu] tunnel {base_url} -> {} worker {worker}:{remote_port}",
            plan.node_id
        );
        served.push(Served {
            worker,
            base_url,
            local_port: reach.port,
            tunnel: reach.guard,
        });
    }
    let workload = workload(session_plan, plan, remote, dry_run).await?;
    let config = |worker: u32| SessionConfig {
        workload: workload.clone(),
        warmup: session_plan.warmup,
        profile: session_plan.start_profile(plan.remote_profile_dir.clone()),
        local_output_dir: None,
        trace_wait: Duration::from_secs(300),
        inputs_dir: match worker {
            0 => folder.inputs(),
            i => folder.inputs().join(format!("worker-{i}")),
        },
        progress: worker == 0,
    };
    if dry_run {
        println!(
            "# then through the tunnel at {}: wait for /health_generate, {} warmup request(s), \
             POST /start_profile {}, the {} workload, POST /stop_profile",
            served[0].base_url,
            session_plan.warmup,
            serde_json::to_string(&config(0).profile)?,
            workload.endpoint()
        );
    }
    let (session, py_spy) = if dry_run {
        (None, None)
    } else {
        let mut clients = Vec::new();
        for server in &mut served {
            let client = Client::new(ClientConfig {
                base_url: server.base_url.clone(),
                api_key: args.api_key.clone(),
                request_timeout: Duration::from_secs(120),
                server_log: None,
            })?;
            wait_ready(args, plan, remote, server, &client).await?;
            clients.push((server.worker, client));
        }
        let mut recorder = SliceRecorder::new(session_plan.py_spy, remote, every.clone(), &folder);
        let configs: Vec<SessionConfig> = clients.iter().map(|(w, _)| config(*w)).collect();
        let primary = session::run_session(&clients[0].1, &NoLiveness, &configs[0], &mut recorder);
        let others =
            clients[1..]
                .iter()
                .zip(&configs[1..])
                .map(|((worker, client), config)| async move {
                    let outcome =
                        session::run_session(client, &NoLiveness, config, &mut NoHooks).await;
                    outcome.with_context(|| format!("the session on worker {worker}"))
                });
        let (primary, others) = tokio::join!(primary, futures_util::future::join_all(others));
        let files = recorder.finish().await?;
        let primary = match primary {
            Ok(primary) => primary,
            Err(err) => {
                // Keep the server's log, which says why; and say so if the
                // server is gone.
                keep_server_log(remote, plan).await;
                if let Err(dead) = remote.ensure_alive(0).await {
                    bail!("sglang-jax on {} exited ({err}): {dead}", plan.node_id);
                }
                return Err(err.into());
            }
        };
        for other in others {
            let other = other?;
            eprintln!(
                "[tpu] {}: {} request(s), {} failed",
                other.workload.description, other.workload.requests, other.workload.errors
            );
        }
        if session_plan.py_spy && files.is_none() {
            bail!("py-spy produced no output; see {}", folder.logs().display());
        }
        (Some(primary), files)
    };

    eprintln!("[tpu] collecting the trace files from {}", plan.node_id);
    collect(plan, remote, &folder, archive).await?;
    if let Some(key) = &session_plan.api_key {
        // sglang-jax logs its arguments, the key among them, at start-up;
        // py-spy records the launcher's command line.
        profile_session::redact::in_files(&folder.logs(), key)?;
        profile_session::redact::in_files(&folder.pyspy(), key)?;
    }
    let local_port = served[0].local_port;
    for server in &mut served {
        server.tunnel.kill().await;
    }
    if args.tpu.keep || args.tpu.vm.is_some() {
        for worker in every {
            remote.stop_server(worker).await?;
        }
    }
    Ok(session.map(|session| RemoteOutcome {
        session,
        config: config(0),
        versions,
        server_line,
        local_port,
        py_spy,
    }))
}

/// Waits until the server behind `client` answers; says why when it does
/// not (the tunnel ended, or the server died: its log tail).
async fn wait_ready(
    args: &crate::profile::Args,
    plan: &Plan,
    remote: &Slice,
    server: &mut Served,
    client: &Client,
) -> anyhow::Result<()> {
    let ready = ReadyOptions {
        timeout: Duration::from_secs(args.ready_timeout.max(900)),
        poll: Duration::from_secs(2),
        server_log: None,
        settle: Duration::ZERO,
    };
    let Err(err) = sglang_server::wait_until_ready(client, &ready, &NoLiveness).await else {
        return Ok(());
    };
    if let Some(status) = server.tunnel.exited() {
        bail!("the ssh tunnel to {} ended ({status}): {err}", plan.node_id);
    }
    // The log tail says why the server is not answering.
    keep_server_log(remote, plan).await;
    remote.ensure_alive(server.worker).await?;
    Err(err.into())
}

/// The trace files of every worker (waited for there, copied, placed in
/// one JAX run) and every worker's server log.
async fn collect(
    plan: &Plan,
    remote: &Slice,
    folder: &RunFolder,
    archive: Option<&crate::archive::UploadOpts>,
) -> anyhow::Result<()> {
    let hosts = remote.count();
    if let (Some(opts), 1) = (archive, hosts) {
        // The big trace files go to GCS straight from the VM, which is
        // faster than from a laptop; the archive upload at the end finds
        // them there (same size and crc32c) and skips them. (Several hosts'
        // traces are renamed when collected, so they go from here.)
        let script = crate::archive::vm_upload_script(
            &plan.run_dir,
            opts,
            &plan.remote_profile_dir,
            "artifacts/jax-profile",
        )?;
        remote.workers().run(Worker::One(0), &script).await?;
        eprintln!("[tpu] archived the traces from the VM");
    }
    let mut collector = Collector::new(&folder.jax_profile());
    for worker in 0..hosts {
        let files = remote
            .wait_for_traces(worker, &plan.remote_profile_dir, 300)
            .await?;
        for (size, path) in &files {
            eprintln!("[tpu] worker {worker}: trace file {path} ({size} bytes)");
        }
        let staging = folder.artifacts().join(format!(".worker-{worker}"));
        remote
            .fetch(worker, &plan.remote_profile_dir, &staging, true)
            .await?;
        for placed in collector.place(&staging, worker)? {
            eprintln!("[tpu] worker {worker}: traces of host {}", placed.host);
        }
        let log = match worker {
            0 => folder.server_log(),
            i => folder.logs().join(format!("worker-{i}")).join("server.log"),
        };
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        remote.fetch_log(worker, &log).await?;
    }
    Ok(())
}

/// Copies the server log home (redacted) when the session failed; best
/// effort, as the failure may be the connection itself.
async fn keep_server_log(remote: &Slice, plan: &Plan) {
    let logs = plan.run_dir.join("logs");
    if std::fs::create_dir_all(&logs).is_ok() {
        let _ = remote.fetch_log(0, &logs.join("server.log")).await;
    }
}

/// The launcher of each worker: on a slice, the same server with each
/// worker's node rank; in a rehearsal, one CPU server per worker on ports
/// of its own.
fn launch_specs(
    args: &crate::profile::Args,
    plan: &Plan,
    remote: &Slice,
    cpu: Option<&LocalEnv>,
) -> anyhow::Result<Vec<(u32, LaunchSpec)>> {
    let hosts = remote.count();
    let workers = remote.workers();
    Ok(match cpu {
        Some(env) => {
            // Local workers share this machine's ports.
            let base = free_ports(hosts)?;
            (0..hosts)
                .map(|w| {
                    let port = workers.server_port(w, base);
                    (
                        w,
                        crate::local::launch_spec(env, &plan.model, port, args.api_key.clone()),
                    )
                })
                .collect()
        }
        None => {
            let spec = tpu_launch(args, plan, hosts);
            let dist = format!("{}:{DIST_INIT_PORT}", workers.address(0));
            (0..hosts).zip(spec.per_node(hosts, &dist)).collect()
        }
    })
}

/// The server on a TPU VM: sglang-jax's defaults, the model from the hub;
/// across a multi-host slice, tensor parallel over all of its chips.
fn tpu_launch(args: &crate::profile::Args, plan: &Plan, hosts: u32) -> LaunchSpec {
    LaunchSpec {
        python: PathBuf::from("python"),
        model_path: plan.model.clone(),
        host: "127.0.0.1".to_owned(),
        port: REMOTE_PORT,
        tp_size: if hosts > 1 {
            chips(&args.tpu.accelerator_type).unwrap_or(hosts)
        } else {
            1
        },
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
    Ok(Workload::from_plan(session_plan, &plan.model, ids)?)
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

/// The chips of a slice: the size in the name for v5e/v6e, TensorCores
/// (two per chip) for v2 to v5p.
fn chips(accelerator_type: &str) -> Option<u32> {
    let (family, size) = accelerator_type.rsplit_once('-')?;
    let size: u32 = size.parse().ok()?;
    match family {
        "v5litepod" | "v5e" | "v6e" => Some(size),
        "v2" | "v3" | "v4" | "v5p" => Some(size / 2),
        _ => None,
    }
}

/// `n` consecutive free ports on the loopback interface, the first one
/// picked by the OS.
fn free_ports(n: u32) -> anyhow::Result<u16> {
    for _ in 0..20 {
        let first =
            std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
        let base = first.local_addr()?.port();
        let rest = (1..n).all(|i| {
            base.checked_add(i as u16)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if rest {
            return Ok(base);
        }
    }
    bail!("cannot find {n} consecutive free ports")
}
