//! The TPU run on the VM: install, launch, tunnel, the driver's session,
//! and the trace files and server logs copied home. It drives every worker
//! of a [`Slice`]: a real VM over gcloud, or local workers in a rehearsal
//! (`super::rehearsal`), where the install is the CPU variant and the
//! servers run on the CPU with the shim.
//!
//! On a multi-host slice every worker runs the launcher with its node rank
//! and the multi-node flags, worker 0 serves HTTP, and the one profile
//! request reaches every host. sglang-jax on the CPU cannot span hosts, so
//! a rehearsal runs one independent server per worker instead, and the
//! session runs against each of them at once. Either way, py-spy records
//! every worker and the traces of every worker are collected into one JAX
//! run, one `<host>.*` pair per worker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use profile_session::collect::Collector;
use profile_session::plan::{Plan, TpuOptions};
use profile_session::pyspy::{self, SliceRecorder};
use profile_session::session::SessionOutcome;
use profile_session::{Endpoint, RunFolder};
use sglang_server::{Client, ClientConfig, LaunchSpec, NoLiveness, ReadyOptions};
use tpu_cloud::gcloud::{Background, Worker};
use tpu_cloud::remote::Slice;
use tpu_cloud::script::{CpuInstall, InstallSpec};

use super::plan::TpuRun;
use crate::DriveError;
use crate::host::{RunContext, Server, Servers, Session};
use crate::pyenv::LocalEnv;

/// The server's port on the VM (only reachable through the tunnel).
pub const REMOTE_PORT: u16 = 30000;
/// Where worker 0 listens for the other workers of a multi-host server.
const DIST_INIT_PORT: u16 = 10011;

/// A server this side talks to: its worker and the way to its port.
struct Served {
    worker: u32,
    base_url: String,
    local_port: u16,
    remote_port: u16,
    tunnel: Background,
}

/// What the VM's part of a run brings home besides the session.
pub struct RemoteFacts {
    pub versions: BTreeMap<String, String>,
    /// The server's command line on the VM, the API key as a variable.
    pub server_line: String,
    /// The local end of the ssh tunnel, and the port it reaches.
    pub local_port: u16,
    pub remote_port: u16,
    /// Worker 0's py-spy files, with `--py-spy`.
    pub py_spy: Option<pyspy::Files>,
}

/// What a rehearsal changes: its CPU environment and how the dry-run lines
/// are printed.
pub struct Env<'a> {
    pub cpu: Option<&'a LocalEnv>,
    pub dry_run: Option<&'a (dyn Fn(&str) + Send + Sync)>,
}

/// Install, launch, tunnel, the driver's session, then the trace files and
/// the logs copied home. `None` in a dry run (nothing came back).
pub async fn remote_session(
    ctx: &RunContext<'_>,
    tpu: &TpuOptions,
    run: &TpuRun,
    remote: &Slice,
    env: &Env<'_>,
    session: &mut dyn Session,
) -> Result<Option<(SessionOutcome, RemoteFacts)>, DriveError> {
    let plan = ctx.plan;
    let folder = ctx.folder;
    let progress = &*ctx.progress;
    let hosts = remote.count();
    let every: Vec<u32> = (0..hosts).collect();
    progress.line(
        "tpu",
        &format!(
            "installing {} on {} ({hosts} worker(s))",
            profile_session::redact::url(&run.source.describe()),
            run.node_id
        ),
    );
    let install = InstallSpec {
        source: run.source.clone(),
        extra_packages: if plan.py_spy {
            vec![pyspy::PACKAGE.to_owned()]
        } else {
            Vec::new()
        },
        cpu: env.cpu.map(|env| CpuInstall {
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
        plan.check_server(version)?;
    }
    let launches = launch_specs(plan, tpu, run, remote, env.cpu)?;
    let server_line = format!("HF_HOME=/tmp/hf {}", launches[0].1.shell_line());
    progress.line(
        "tpu",
        &format!("starting sglang-jax ({}) on {}", run.model, run.node_id),
    );
    for (worker, launch) in &launches {
        let mut vars = launch.env.clone();
        vars.push(("HF_HOME".to_owned(), "/tmp/hf".to_owned()));
        let launch = tpu_cloud::script::LaunchSpec {
            python_args: launch.argv(),
            env: vars.into_iter().collect(),
        };
        remote.launch(*worker, &launch).await?;
    }
    // A rehearsal's servers are independent: this side drives each. One
    // server spanning a real slice answers on worker 0.
    let serving = if env.cpu.is_some() {
        every.clone()
    } else {
        vec![0]
    };
    let mut served = Vec::new();
    for &worker in &serving {
        let remote_port = launches[worker as usize].1.port;
        let local_port = match (plan.port, env.cpu) {
            (_, Some(_)) => remote_port,
            (Some(port), None) => port,
            (None, None) => free_ports(1)?,
        };
        let reach = remote.reach(worker, local_port, remote_port)?;
        let base_url = format!("http://{}:{}", reach.host, reach.port);
        progress.line(
            "tpu",
            &format!(
                "tunnel {base_url} -> {} worker {worker}:{remote_port}",
                run.node_id
            ),
        );
        served.push(Served {
            worker,
            base_url,
            local_port: reach.port,
            remote_port,
            tunnel: reach.guard,
        });
    }
    let label_token_ids = label_token_ids(plan, run, remote, env.dry_run.is_some()).await?;
    if let Some(print) = env.dry_run {
        print(&format!(
            "# then through the tunnel at {}: wait for /health_generate, {} warmup request(s), \
             POST /start_profile {}, the {} workload, POST /stop_profile",
            served[0].base_url,
            plan.warmup_requests(),
            serde_json::to_string(&plan.start_profile(run.remote_profile_dir.clone()))
                .unwrap_or_default(),
            plan.endpoint.path()
        ));
        for server in &mut served {
            server.tunnel.kill().await;
        }
        return Ok(None);
    }
    let mut servers = Vec::new();
    for server in &mut served {
        let client = Client::new(ClientConfig {
            base_url: server.base_url.clone(),
            api_key: plan.api_key.clone(),
            request_timeout: Duration::from_secs(120),
            server_log: None,
        })
        .map_err(DriveError::server("cannot make the HTTP client"))?;
        wait_ready(plan, run, remote, server, &client, folder).await?;
        servers.push(Server {
            worker: server.worker,
            client,
            liveness: &NoLiveness,
            profile_dir: run.remote_profile_dir.clone(),
            local_profile_dir: None,
            trace_wait: Duration::from_secs(300),
        });
    }
    let servers = Servers {
        model: run.model.clone(),
        label_token_ids,
        servers,
        base_url: format!("http://127.0.0.1:{}", served[0].local_port),
    };
    let mut recorder = SliceRecorder::new(plan.py_spy, remote, every.clone(), folder);
    let outcome = session.run(&servers, &mut recorder).await;
    let py_spy = recorder.finish().await?;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => {
            // Keep the server's log, which says why; and say so if the
            // server is gone.
            keep_server_log(remote, folder).await;
            if let Err(dead) = remote.ensure_alive(0).await {
                // What failed, in brackets; the cause is the server's exit
                // and its log, which follow.
                return Err(DriveError::Failed(format!(
                    "sglang-jax on {} exited ({err}): {dead}",
                    run.node_id
                )));
            }
            return Err(err.into());
        }
    };

    progress.line(
        "tpu",
        &format!("collecting the trace files from {}", run.node_id),
    );
    collect(ctx, run, remote).await?;
    let local_port = served[0].local_port;
    let remote_port = served[0].remote_port;
    for server in &mut served {
        server.tunnel.kill().await;
    }
    if tpu.keep || tpu.vm.is_some() {
        for worker in every {
            remote.stop_server(worker).await?;
        }
    }
    Ok(Some((
        outcome,
        RemoteFacts {
            versions,
            server_line,
            local_port,
            remote_port,
            py_spy,
        },
    )))
}

/// Waits until the server behind `client` answers; says why when it does
/// not (the tunnel ended, or the server died: its log tail).
async fn wait_ready(
    plan: &Plan,
    run: &TpuRun,
    remote: &Slice,
    server: &mut Served,
    client: &Client,
    folder: &RunFolder,
) -> Result<(), DriveError> {
    let ready = ReadyOptions {
        timeout: Duration::from_secs(plan.ready_timeout_s.max(900)),
        poll: Duration::from_secs(2),
        server_log: None,
        settle: Duration::ZERO,
    };
    let Err(err) = sglang_server::wait_until_ready(client, &ready, &NoLiveness).await else {
        return Ok(());
    };
    if let Some(status) = server.tunnel.exited() {
        return Err(DriveError::Failed(format!(
            "the ssh tunnel to {} ended ({status}): {}",
            run.node_id,
            crate::one_line(&err)
        )));
    }
    // The log tail says why the server is not answering.
    keep_server_log(remote, folder).await;
    remote.ensure_alive(server.worker).await?;
    Err(DriveError::server(
        "the server on the VM did not become ready",
    )(err))
}

/// The trace files of every worker (waited for there, copied, placed in
/// one JAX run) and every worker's server log.
async fn collect(ctx: &RunContext<'_>, run: &TpuRun, remote: &Slice) -> Result<(), DriveError> {
    let folder = ctx.folder;
    let hosts = remote.count();
    if let (Some(opts), 1) = (ctx.archive, hosts) {
        // The big trace files go to GCS straight from the VM, which is
        // faster than from a laptop; the archive upload at the end finds
        // them there (same size and crc32c) and skips them. (Several hosts'
        // traces are renamed when collected, so they go from here.)
        let script = crate::archive::vm_upload_script(
            folder.root(),
            opts,
            &run.remote_profile_dir,
            "artifacts/jax-profile",
        )?;
        remote.workers().run(Worker::One(0), &script).await?;
        ctx.progress.line("tpu", "archived the traces from the VM");
    }
    let mut collector = Collector::new(&folder.jax_profile());
    for worker in 0..hosts {
        let files = remote
            .wait_for_traces(worker, &run.remote_profile_dir, 300)
            .await?;
        for (size, path) in &files {
            ctx.progress.line(
                "tpu",
                &format!("worker {worker}: trace file {path} ({size} bytes)"),
            );
        }
        let staging = folder.artifacts().join(format!(".worker-{worker}"));
        remote
            .fetch(worker, &run.remote_profile_dir, &staging, true)
            .await?;
        for placed in collector.place(&staging, worker)? {
            ctx.progress.line(
                "tpu",
                &format!("worker {worker}: traces of host {}", placed.host),
            );
        }
        let log = match worker {
            0 => folder.server_log(),
            i => folder.logs().join(format!("worker-{i}")).join("server.log"),
        };
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DriveError::Io {
                what: "cannot create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        remote.fetch_log(worker, &log).await?;
    }
    Ok(())
}

/// Copies the server log home when the session failed; best effort, as
/// the failure may be the connection itself.
async fn keep_server_log(remote: &Slice, folder: &RunFolder) {
    let logs = folder.logs();
    if std::fs::create_dir_all(&logs).is_ok() {
        let _ = remote.fetch_log(0, &logs.join("server.log")).await;
    }
}

/// The launcher of each worker: on a slice, the same server with each
/// worker's node rank; in a rehearsal, one CPU server per worker on ports
/// of its own.
fn launch_specs(
    plan: &Plan,
    tpu: &TpuOptions,
    run: &TpuRun,
    remote: &Slice,
    cpu: Option<&LocalEnv>,
) -> Result<Vec<(u32, LaunchSpec)>, DriveError> {
    let hosts = remote.count();
    let workers = remote.workers();
    Ok(match cpu {
        Some(env) => {
            // Local workers share this machine's ports.
            let base = free_ports(hosts)?;
            (0..hosts)
                .map(|w| {
                    let port = workers.server_port(w, base);
                    let spec = crate::pyenv::device::launch_spec(
                        env,
                        &run.model,
                        port,
                        plan.api_key.clone(),
                    );
                    (w, spec)
                })
                .collect()
        }
        None => {
            let spec = tpu_launch(plan, tpu, run, hosts);
            let dist = format!("{}:{DIST_INIT_PORT}", workers.address(0));
            (0..hosts).zip(spec.per_node(hosts, &dist)).collect()
        }
    })
}

/// The server on a TPU VM: sglang-jax's defaults, the model from the hub;
/// across a multi-host slice, tensor parallel over all of its chips.
fn tpu_launch(plan: &Plan, tpu: &TpuOptions, run: &TpuRun, hosts: u32) -> LaunchSpec {
    LaunchSpec {
        python: PathBuf::from("python"),
        model_path: run.model.clone(),
        host: "127.0.0.1".to_owned(),
        port: REMOTE_PORT,
        tp_size: if hosts > 1 {
            chips(&tpu.accelerator_type).unwrap_or(hosts)
        } else {
            1
        },
        dtype: None,
        device: None,
        attention_backend: None,
        precompile: None,
        api_key: plan.api_key.clone(),
        multi_node: None,
        extra_args: Vec::new(),
        env: Vec::new(),
    }
}

/// The token ids of the score labels. They come from the model's tokenizer
/// on the VM, which has transformers installed with sglang-jax.
async fn label_token_ids(
    plan: &Plan,
    run: &TpuRun,
    remote: &Slice,
    dry_run: bool,
) -> Result<Vec<u32>, DriveError> {
    if plan.endpoint != Endpoint::Score {
        return Ok(Vec::new());
    }
    let ids = lookup_labels(remote, &run.model).await?;
    let ids = if dry_run { vec![0, 0] } else { ids };
    if ids.len() != 2 {
        return Err(DriveError::Failed(format!(
            "the tokenizer of {} gave {ids:?} for \" yes\"/\" no\", expected one id each",
            run.model
        )));
    }
    Ok(ids)
}

async fn lookup_labels(remote: &Slice, model: &str) -> Result<Vec<u32>, DriveError> {
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
        let id = match words[..] {
            [id] => id.parse().ok(),
            _ => None,
        };
        match id {
            Some(id) => ids.push(id),
            None => {
                return Err(DriveError::Failed(format!(
                    "\" yes\"/\" no\" are not single tokens in {model}: {line}"
                )));
            }
        }
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
fn free_ports(n: u32) -> Result<u16, DriveError> {
    for _ in 0..20 {
        let base = crate::local::free_port()?;
        let rest = (1..n).all(|i| {
            base.checked_add(i as u16)
                .is_some_and(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if rest {
            return Ok(base);
        }
    }
    Err(DriveError::Failed(format!(
        "cannot find {n} consecutive free ports"
    )))
}
