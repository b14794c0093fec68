//! `cargo xtask tpu`, `cargo xtask cleanup`, and the TPU half of
//! `cargo xtask profile --tpu`.
//!
//! The TPU session: write `runs/<run>/tpu-state.json`, create the VM (or
//! reuse `--vm`), wait for READY, install sglang-jax on it, launch the
//! server detached, open an ssh tunnel to its port, and hand the tunnel's
//! URL to [`crate::profile::run_session`] (readiness, warmup, profile,
//! workload, stop). The trace files are waited for on the VM, copied home
//! with the server log, the VM is deleted, and the report gets a Cost
//! Summary from the billed time. The VM is deleted on every exit path
//! (error, Ctrl-C, SIGTERM) unless `--keep`; a run killed outright leaves
//! its state file for `cargo xtask cleanup`.
//!
//! `--dry-run` prints every API call and gcloud command in order and needs
//! no credentials: the API client and gcloud runner record instead of act.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use sglang_server::{Client, ClientConfig, LaunchSpec, NoLiveness, ReadyOptions, StartProfile};
use tpu_cloud::api::{NetworkConfig, Node, NodeState, Provisioning};
use tpu_cloud::clock::NoWaitClock;
use tpu_cloud::cost::{self, PriceTable};
use tpu_cloud::gcloud::{Gcloud, Target};
use tpu_cloud::lease::{self, CleanupOutcome, Deadlines, Failure, NodeRequest};
use tpu_cloud::remote::Remote;
use tpu_cloud::script::{InstallSpec, PackageSource};
use tpu_cloud::state::{Ledger, Phase, RunState, STATE_FILE};
use tpu_cloud::{Location, SystemClock, Timing, TpuClient, Transcript};

use crate::profile::{Endpoint, SessionConfig, Workload};

const DEFAULT_ZONE: &str = "us-east5-b";
const DEFAULT_MODEL: &str = "TinyLlama/TinyLlama-1.1B-Chat-v1.0";
/// The server's port on the VM (only reachable through the tunnel).
const REMOTE_PORT: u16 = 30000;
/// Where the server writes the trace on the VM.
const REMOTE_PROFILE_ROOT: &str = "/tmp/sglprof-profile";

/// Where and how to reach the TPU API.
#[derive(clap::Args, Clone, Debug)]
pub struct CloudArgs {
    /// The Google Cloud project.
    #[arg(long, env = "CLOUDSDK_CORE_PROJECT")]
    pub project: Option<String>,
    #[arg(long, default_value = DEFAULT_ZONE)]
    pub zone: String,
    /// Print the API calls and commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
    /// The TPU API endpoint (tests point it at a fake).
    #[arg(long, env = "SGLPROF_TPU_API_URL", default_value = tpu_cloud::GOOGLE_API_URL, hide = true)]
    pub tpu_api_url: String,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TpuCommand,
}

#[derive(clap::Subcommand)]
enum TpuCommand {
    /// List the TPU VMs of a zone.
    List {
        /// Only VMs created by sglprof (label created-by=sglprof).
        #[arg(long)]
        ours: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Show one TPU VM.
    Describe {
        name: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Delete a TPU VM and wait until it is gone.
    Delete {
        name: String,
        /// Also delete VMs that sglprof did not create.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Stop a TPU VM (it keeps its disk; billing for the chips stops).
    Stop {
        name: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
    /// Start a stopped TPU VM.
    Start {
        name: String,
        #[command(flatten)]
        cloud: CloudArgs,
    },
}

#[derive(clap::Args)]
pub struct CleanupArgs {
    /// A run id (under runs/), a run folder, or a tpu-state.json file.
    run: Option<String>,
    /// Every run under runs/ whose VM may still be alive.
    #[arg(long, conflicts_with = "run")]
    all: bool,
    /// Print the API calls instead of sending them.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, env = "SGLPROF_TPU_API_URL", default_value = tpu_cloud::GOOGLE_API_URL, hide = true)]
    tpu_api_url: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProvisioningArg {
    #[default]
    OnDemand,
    Spot,
    Preemptible,
}

impl From<ProvisioningArg> for Provisioning {
    fn from(arg: ProvisioningArg) -> Provisioning {
        match arg {
            ProvisioningArg::OnDemand => Provisioning::OnDemand,
            ProvisioningArg::Spot => Provisioning::Spot,
            ProvisioningArg::Preemptible => Provisioning::Preemptible,
        }
    }
}

/// The flags of `cargo xtask profile` that only matter with `--tpu`;
/// flattened into `profile::Args`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TpuProfileArgs {
    /// The Google Cloud project (--tpu).
    #[arg(long, env = "CLOUDSDK_CORE_PROJECT")]
    pub project: Option<String>,
    /// The zone of the TPU VM (--tpu).
    #[arg(long, default_value = DEFAULT_ZONE)]
    pub zone: String,
    /// The TPU slice (--tpu).
    #[arg(long, default_value = "v6e-1")]
    pub accelerator_type: String,
    /// The TPU VM image (--tpu).
    #[arg(long, default_value = "v6e-ubuntu-2404")]
    pub runtime_version: String,
    /// How the VM is billed (--tpu).
    #[arg(long, value_enum, default_value_t = ProvisioningArg::OnDemand)]
    pub provisioning: ProvisioningArg,
    /// Ask for the VM through a queued resource, which waits for capacity
    /// instead of failing on a stockout (--tpu).
    #[arg(long)]
    pub queued: bool,
    /// Use this existing VM instead of creating one; it is not deleted (--tpu).
    #[arg(long)]
    pub vm: Option<String>,
    /// Leave the VM running at the end; `cargo xtask cleanup <run>` deletes it (--tpu).
    #[arg(long)]
    pub keep: bool,
    /// Install sglang-jax from this git repository instead of PyPI (--tpu).
    #[arg(long, requires = "sglang_jax_commit")]
    pub sglang_jax_git: Option<String>,
    /// The commit of --sglang-jax-git (--tpu).
    #[arg(long, requires = "sglang_jax_git")]
    pub sglang_jax_commit: Option<String>,
    /// Prices: a JSON file {"source", "prices": [{"accelerator_type", "provisioning", "usd_per_hour"}]} (--tpu).
    #[arg(long)]
    pub price_file: Option<PathBuf>,
    /// The VM price in dollars per hour, overriding the price table (--tpu).
    #[arg(long)]
    pub usd_per_hour: Option<f64>,
    /// GCS standard storage price, dollars per GB-month (--tpu).
    #[arg(long, default_value_t = cost::GCS_USD_PER_GB_MONTH)]
    pub gcs_usd_per_gb_month: f64,
    /// Extra flag for every gcloud ssh/scp, e.g. --tunnel-through-iap (--tpu).
    #[arg(long = "gcloud-flag", allow_hyphen_values = true)]
    pub gcloud_flags: Vec<String>,
    /// Print every API call and command of the session without running any
    /// (--tpu), or the Job and the Dockerfile (--k8s).
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, env = "SGLPROF_TPU_API_URL", default_value = tpu_cloud::GOOGLE_API_URL, hide = true)]
    pub tpu_api_url: String,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn project(project: &Option<String>, dry_run: bool) -> anyhow::Result<String> {
    match project {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ if dry_run => Ok("PROJECT_ID".to_owned()),
        _ => bail!("no Google Cloud project: pass --project or set CLOUDSDK_CORE_PROJECT"),
    }
}

/// A live client with Google credentials, or a recording one for dry runs
/// (which prints each line as it is recorded).
async fn api_client(url: &str, dry_run: bool) -> anyhow::Result<(TpuClient, Option<Transcript>)> {
    let config = tpu_cloud::ClientConfig {
        base_url: url.to_owned(),
        timing: Timing::production(),
    };
    if dry_run {
        let transcript = Transcript::with_sink(Arc::new(|line: &str| println!("{line}")));
        let client = TpuClient::dry_run(config, Arc::new(NoWaitClock), transcript.clone());
        return Ok((client, Some(transcript)));
    }
    let tokens = tpu_cloud::auth::default_token_provider().await?;
    Ok((TpuClient::new(config, tokens, Arc::new(SystemClock))?, None))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    let what = tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    };
    eprintln!("[tpu] {what}: stopping the session and deleting the VM (unless --keep)");
}

pub fn run(args: Args) -> anyhow::Result<()> {
    runtime()?.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    match args.command {
        TpuCommand::List { ours, cloud } => {
            let (client, _) = api_client(&cloud.tpu_api_url, cloud.dry_run).await?;
            let loc = Location::new(&project(&cloud.project, cloud.dry_run)?, &cloud.zone);
            let nodes = client.list_nodes(&loc).await?;
            let nodes: Vec<&Node> = nodes.iter().filter(|n| !ours || n.is_ours()).collect();
            println!("{}", node_table(&nodes));
        }
        TpuCommand::Describe { name, cloud } => {
            let (client, _) = api_client(&cloud.tpu_api_url, cloud.dry_run).await?;
            let loc = Location::new(&project(&cloud.project, cloud.dry_run)?, &cloud.zone);
            let node = client.get_node(&loc, &name).await?;
            println!("{}", serde_json::to_string_pretty(&node)?);
        }
        TpuCommand::Delete { name, force, cloud } => {
            let (client, _) = api_client(&cloud.tpu_api_url, cloud.dry_run).await?;
            let loc = Location::new(&project(&cloud.project, cloud.dry_run)?, &cloud.zone);
            if !cloud.dry_run {
                let node = client.get_node(&loc, &name).await?;
                if !node.is_ours() && !force {
                    bail!(
                        "`{name}` was not created by sglprof (no created-by=sglprof label); pass --force to delete it anyway"
                    );
                }
            }
            let op = client.delete_node(&loc, &name).await?;
            client
                .wait_operation(
                    &loc,
                    op,
                    &format!("deleting `{name}`"),
                    Deadlines::production().delete,
                )
                .await?;
            eprintln!("[tpu] deleted {name}");
        }
        TpuCommand::Stop { name, cloud } => set_power(&cloud, &name, Power::Stop).await?,
        TpuCommand::Start { name, cloud } => set_power(&cloud, &name, Power::Start).await?,
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Power {
    Stop,
    Start,
}

/// `tpu stop` and `tpu start`: nothing to do when the node is already in
/// the wanted state, otherwise the call and its operation.
async fn set_power(cloud: &CloudArgs, name: &str, power: Power) -> anyhow::Result<()> {
    let (client, _) = api_client(&cloud.tpu_api_url, cloud.dry_run).await?;
    let loc = Location::new(&project(&cloud.project, cloud.dry_run)?, &cloud.zone);
    let (wanted, label, verb, done) = match power {
        Power::Stop => (NodeState::Stopped, "STOPPED", "stopping", "stopped"),
        Power::Start => (NodeState::Ready, "READY", "starting", "started"),
    };
    if !cloud.dry_run && client.get_node(&loc, name).await?.state == Some(wanted) {
        eprintln!("[tpu] {name} is already {label}");
        return Ok(());
    }
    let (op, deadline) = match power {
        Power::Stop => (
            client.stop_node(&loc, name).await?,
            Deadlines::production().delete,
        ),
        Power::Start => (
            client.start_node(&loc, name).await?,
            Deadlines::production().ready,
        ),
    };
    client
        .wait_operation(&loc, op, &format!("{verb} `{name}`"), deadline)
        .await?;
    eprintln!("[tpu] {done} {name}");
    Ok(())
}

fn node_table(nodes: &[&Node]) -> String {
    let mut rows = vec![["NAME", "STATE", "TYPE", "RUN", "CREATED", "IP"].map(str::to_owned)];
    for node in nodes {
        rows.push([
            node.id().to_owned(),
            node.state
                .map(|s| format!("{s:?}").to_uppercase())
                .unwrap_or_default(),
            node.accelerator_type.clone(),
            node.run_label().unwrap_or("-").to_owned(),
            node.create_time.clone().unwrap_or_default(),
            node.internal_ip().unwrap_or("-").to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect();
    lines.join("\n")
}

pub fn cleanup(args: CleanupArgs) -> anyhow::Result<()> {
    let paths = state_files(&args)?;
    if paths.is_empty() {
        eprintln!("[cleanup] no run state files found");
        return Ok(());
    }
    runtime()?.block_on(async {
        let mut client = None;
        let mut failures = 0;
        for path in paths {
            let mut ledger = Ledger::open(&path)?;
            if args.dry_run {
                // Rehearse without touching the state file.
                ledger = Ledger::in_memory(ledger.state);
            }
            let s = &ledger.state;
            if !s.owned || !s.may_be_alive() {
                eprintln!("[cleanup] {}: nothing to do ({:?})", s.run_id, s.phase);
                continue;
            }
            if client.is_none() {
                client = Some(api_client(&args.tpu_api_url, args.dry_run).await?.0);
            }
            let client = client.as_ref().unwrap();
            eprintln!("[cleanup] {}: deleting {} in {}/{}", s.run_id, s.node_id, s.project, s.zone);
            match lease::cleanup(client, &mut ledger, Deadlines::production().delete).await {
                Ok(CleanupOutcome::Deleted) => {
                    let billed = ledger.state.billed(SystemTime::now()).unwrap_or_default();
                    eprintln!("[cleanup] deleted; billed about {}", cost::human_duration(billed));
                }
                Ok(CleanupOutcome::NothingToDo(phase)) => eprintln!("[cleanup] nothing to do ({phase:?})"),
                Err(err) => {
                    eprintln!("[cleanup] {}: {err}", ledger.state.run_id);
                    failures += 1;
                }
            }
        }
        if failures > 0 {
            bail!("{failures} run(s) could not be cleaned up; see the messages above and rerun `cargo xtask cleanup`");
        }
        Ok(())
    })
}

fn state_files(args: &CleanupArgs) -> anyhow::Result<Vec<PathBuf>> {
    let runs = std::env::current_dir()?.join("runs");
    if args.all {
        let mut res = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&runs) {
            for entry in entries {
                let path = entry?.path().join(STATE_FILE);
                if path.is_file() {
                    res.push(path);
                }
            }
        }
        res.sort();
        return Ok(res);
    }
    let Some(run) = &args.run else {
        bail!("name a run (`cargo xtask cleanup <run-id>`) or pass --all")
    };
    let given = Path::new(run);
    let candidates = [
        given.to_path_buf(),
        given.join(STATE_FILE),
        runs.join(run).join(STATE_FILE),
    ];
    match candidates.into_iter().find(|p| p.is_file()) {
        Some(path) => Ok(vec![path]),
        None => bail!("no {STATE_FILE} for `{run}` (looked in the path itself and under runs/)"),
    }
}

/// Runs `cargo xtask profile --tpu`.
pub fn profile_tpu(args: &crate::profile::Args) -> anyhow::Result<()> {
    runtime()?.block_on(profile_tpu_async(args))
}

/// Everything the TPU session decided before it started.
struct Plan {
    run_id: String,
    run_dir: PathBuf,
    location: Location,
    node_id: String,
    provisioning: Provisioning,
    model: String,
    source: PackageSource,
    remote_profile_dir: String,
    prices: PriceTable,
}

fn plan(args: &crate::profile::Args, now: SystemTime) -> anyhow::Result<Plan> {
    let tpu = &args.tpu;
    let endpoint = match args.endpoint {
        Endpoint::Generate => "generate",
        Endpoint::Score => "score",
    };
    let run_id = format!(
        "{}-{endpoint}-tpu",
        tpu_cloud::time::compact_stamp(now).replace('-', "T") + "Z"
    );
    let run_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("runs").join(&run_id),
    };
    let run_dir = if run_dir.is_absolute() {
        run_dir
    } else {
        std::env::current_dir()?.join(run_dir)
    };
    let source = match (&tpu.sglang_jax_git, &tpu.sglang_jax_commit) {
        (Some(url), Some(commit)) => PackageSource::Git {
            url: url.clone(),
            commit: commit.clone(),
        },
        _ => PackageSource::PyPi {
            version: Some(args.sglang_jax_version.clone()),
        },
    };
    let mut prices = match &tpu.price_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            PriceTable::from_json(&text)?
        }
        None => PriceTable::runbook_defaults(),
    };
    if let Some(usd) = tpu.usd_per_hour {
        prices = PriceTable {
            source: format!("--usd-per-hour {usd} on the command line"),
            prices: vec![cost::Price {
                accelerator_type: tpu.accelerator_type.clone(),
                provisioning: tpu.provisioning.into(),
                usd_per_hour: usd,
            }],
        };
    }
    Ok(Plan {
        location: Location::new(&project(&tpu.project, tpu.dry_run)?, &tpu.zone),
        node_id: tpu.vm.clone().unwrap_or_else(|| lease::node_name_for(now)),
        provisioning: tpu.provisioning.into(),
        model: args
            .model_path
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        remote_profile_dir: format!("{REMOTE_PROFILE_ROOT}/{run_id}"),
        source,
        prices,
        run_id,
        run_dir,
    })
}

fn node_request(args: &crate::profile::Args, plan: &Plan) -> NodeRequest {
    let tpu = &args.tpu;
    NodeRequest {
        location: plan.location.clone(),
        node_id: plan.node_id.clone(),
        run_id: plan.run_id.clone(),
        accelerator_type: tpu.accelerator_type.clone(),
        runtime_version: tpu.runtime_version.clone(),
        provisioning: plan.provisioning,
        queued: tpu.queued,
        queued_valid_for: tpu.queued.then(|| Duration::from_secs(3600)),
        labels: Default::default(),
        metadata: Default::default(),
        network: NetworkConfig {
            enable_external_ips: true,
            ..NetworkConfig::default()
        },
        service_account: None,
        deadlines: Deadlines::production(),
    }
}

/// What the remote session brings home.
struct RemoteOutcome {
    session: crate::profile::SessionOutcome,
    config: SessionConfig,
    versions: std::collections::BTreeMap<String, String>,
}

async fn profile_tpu_async(args: &crate::profile::Args) -> anyhow::Result<()> {
    let tpu = &args.tpu;
    // A bad --upload (no bucket) fails before a VM is created.
    let archive = args.archive.upload_opts()?;
    let started_at = SystemTime::now();
    let plan = plan(args, started_at)?;
    // The VM and the laptop must archive under the same address.
    let archive = archive.map(|mut opts| {
        opts.run_id.get_or_insert_with(|| plan.run_id.clone());
        opts
    });
    let dry_run = tpu.dry_run;
    if !dry_run {
        if plan.run_dir.join("inputs").exists() {
            bail!(
                "{} already holds a run; choose another --out",
                plan.run_dir.display()
            );
        }
        for sub in ["inputs/requests", "artifacts", "logs"] {
            std::fs::create_dir_all(plan.run_dir.join(sub))
                .with_context(|| format!("cannot create {}", plan.run_dir.display()))?;
        }
        eprintln!("[tpu] run folder {}", plan.run_dir.display());
    }
    let (client, transcript) = api_client(&tpu.tpu_api_url, dry_run).await?;
    let gcloud = match &transcript {
        Some(transcript) => Gcloud::dry_run(transcript.clone()),
        None => Gcloud::new(),
    };
    let target = Target {
        project: plan.location.project.clone(),
        zone: plan.location.zone.clone(),
        node: plan.node_id.clone(),
        extra_flags: tpu.gcloud_flags.clone(),
    };
    let remote = Remote::new(gcloud, target);
    let req = node_request(args, &plan);

    // The state file exists before anything is asked of Google.
    let state_path = plan.run_dir.join(STATE_FILE);
    let mut ledger = match (&tpu.vm, dry_run) {
        (Some(_), _) => {
            let mut state = req.planned_state();
            state.owned = false;
            state.phase = Phase::Reused;
            state.queued_resource = None;
            if dry_run {
                Ledger::in_memory(state)
            } else {
                Ledger::create(&state_path, state)?
            }
        }
        (None, true) => Ledger::in_memory(req.planned_state()),
        (None, false) => Ledger::create(&state_path, req.planned_state())?,
    };

    let session = |_node: Node| remote_session(args, &plan, &remote, archive.as_ref(), dry_run);
    let (outcome, release) = if tpu.vm.is_some() {
        let work = async {
            let node = client
                .get_node(&plan.location, &plan.node_id)
                .await
                .map_err(Failure::Provision)?;
            if node.state != Some(NodeState::Ready) {
                return Err(Failure::Provision(tpu_cloud::Error::NodeLost {
                    name: plan.node_id.clone(),
                    state: format!("{:?}", node.state),
                }));
            }
            session(node).await.map_err(Failure::Session)
        };
        let res = tokio::select! {
            res = work => res,
            () = shutdown_signal() => Err(Failure::Cancelled),
        };
        (res, None)
    } else {
        let leased = lease::with_node(
            &client,
            &req,
            &mut ledger,
            tpu.keep,
            shutdown_signal(),
            session,
        )
        .await;
        (leased.outcome, leased.release)
    };
    let finished_at = SystemTime::now();

    // Report the delete first: a leaked VM matters more than a failed run.
    match &release {
        Some(Ok(())) => eprintln!("[tpu] deleted {}", plan.node_id),
        Some(Err(err)) => eprintln!(
            "[tpu] could not delete {}: {err}; run `cargo xtask cleanup {}`",
            plan.node_id,
            plan.run_dir.display()
        ),
        None if tpu.vm.is_some() => eprintln!("[tpu] left the reused VM {} running", plan.node_id),
        None => eprintln!(
            "[tpu] kept {} running (--keep); delete it with `cargo xtask cleanup {}`",
            plan.node_id,
            plan.run_dir.display()
        ),
    }
    let remote_outcome = match outcome {
        Ok(res) => res,
        Err(Failure::Provision(err)) => return Err(err.into()),
        Err(Failure::Session(err)) => {
            return Err(err.context(format!("the TPU session on {} failed", plan.node_id)));
        }
        Err(Failure::Cancelled) => bail!("interrupted; the VM was handled as reported above"),
    };
    if let Some(Err(err)) = release {
        return Err(
            anyhow::Error::from(err).context("the session succeeded but the VM was not deleted")
        );
    }
    if dry_run {
        return Ok(());
    }
    let Some(remote_outcome) = remote_outcome else {
        return Ok(());
    };

    let uploaded = match &archive {
        Some(opts) => Some((
            crate::artifacts::record_archive_target(&plan.run_dir, opts)?,
            folder_bytes(&plan.run_dir)?,
        )),
        None => None,
    };
    let metadata = run_metadata(
        args,
        &plan,
        &ledger.state,
        &remote_outcome,
        started_at,
        finished_at,
        uploaded,
    );
    crate::profile::write_atomic(
        &plan.run_dir.join("inputs").join("run_metadata.json"),
        &metadata.to_json(),
    )?;
    let n_files = crate::profile::write_checksums(&plan.run_dir)?;
    eprintln!("[tpu] checksums.txt lists {n_files} artifact files");
    crate::report::generate(&plan.run_dir, &plan.run_dir, 15).with_context(|| {
        format!(
            "the run folder {} is complete but the report failed",
            plan.run_dir.display()
        )
    })?;
    eprintln!("[tpu] report: {}", plan.run_dir.join("report.md").display());
    if let Some(opts) = &archive {
        let url = crate::artifacts::upload_run_async(&plan.run_dir, opts, &[]).await?;
        eprintln!("[tpu] archived: {url}");
    }
    Ok(())
}

/// The bytes of every file under `dir`: what the archive will store, for the
/// GCS row of the Cost Summary.
fn folder_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for file in crate::report::list_files(dir)? {
        total += std::fs::metadata(&file)
            .with_context(|| format!("cannot stat {}", file.display()))?
            .len();
    }
    Ok(total)
}

/// Install, launch, tunnel, the shared session, then the trace files and
/// the log copied home. `None` in a dry run (nothing came back).
async fn remote_session(
    args: &crate::profile::Args,
    plan: &Plan,
    remote: &Remote,
    archive: Option<&crate::artifacts::UploadOpts>,
    dry_run: bool,
) -> anyhow::Result<Option<RemoteOutcome>> {
    eprintln!(
        "[tpu] installing {} on {}",
        plan.source.describe(),
        plan.node_id
    );
    let install = InstallSpec {
        source: plan.source.clone(),
        extra_packages: Vec::new(),
    };
    let versions = remote.install(&install).await?;
    let launch = LaunchSpec {
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
        extra_args: Vec::new(),
        env: Vec::new(),
    };
    let launch = tpu_cloud::script::LaunchSpec {
        python_args: launch.argv(),
        env: [("HF_HOME".to_owned(), "/tmp/hf".to_owned())].into(),
    };
    eprintln!(
        "[tpu] starting sglang-jax ({}) on {}",
        plan.model, plan.node_id
    );
    remote.launch(&launch).await?;
    let local_port = match args.port {
        Some(port) => port,
        None => free_port()?,
    };
    let mut tunnel = remote.tunnel(local_port, REMOTE_PORT)?;
    let base_url = format!("http://127.0.0.1:{local_port}");
    eprintln!("[tpu] tunnel {base_url} -> {}:{REMOTE_PORT}", plan.node_id);

    let workload = workload(args, plan, remote, dry_run).await?;
    let config = SessionConfig {
        workload,
        warmup: args.warmup_requests(),
        profile: StartProfile {
            output_dir: Some(plan.remote_profile_dir.clone()),
            num_steps: args.num_steps,
            host_tracer_level: Some(args.host_tracer_level),
            python_tracer_level: args.python_tracer_level,
            ..StartProfile::default()
        },
        local_output_dir: None,
        trace_wait: Duration::from_secs(300),
        inputs_dir: plan.run_dir.join("inputs"),
        progress: true,
    };
    if dry_run {
        println!(
            "# then through the tunnel at {base_url}: wait for /health_generate, {} warmup request(s), \
             POST /start_profile {}, the {} workload, POST /stop_profile",
            args.warmup_requests(),
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
            remote.ensure_alive().await?;
            return Err(err.into());
        }
        let outcome = crate::profile::run_session(
            &client,
            &NoLiveness,
            &config,
            &mut crate::profile::NoHooks,
        )
        .await;
        Some(outcome?)
    };

    // The trace files are on the VM: wait for them there, then copy them.
    let files = remote
        .wait_for_traces(&plan.remote_profile_dir, 300)
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
        remote
            .gcloud
            .run(&tpu_cloud::gcloud::ssh_argv(
                &remote.target,
                tpu_cloud::gcloud::Worker::One(0),
                &script,
            ))
            .await?;
    }
    let local_profile = plan.run_dir.join("artifacts").join("jax-profile");
    remote
        .fetch(&plan.remote_profile_dir, &local_profile, true)
        .await?;
    remote
        .fetch_log(&plan.run_dir.join("logs").join("server.log"))
        .await?;
    tunnel.kill().await;
    if args.tpu.keep || args.tpu.vm.is_some() {
        remote.stop_server().await?;
    }
    Ok(session.map(|session| RemoteOutcome {
        session,
        config,
        versions,
    }))
}

/// The profiled workload. Score label ids come from the model's tokenizer
/// on the VM, which has transformers installed with sglang-jax.
async fn workload(
    args: &crate::profile::Args,
    plan: &Plan,
    remote: &Remote,
    dry_run: bool,
) -> anyhow::Result<Workload> {
    use sglang_server::workload::{GenerateWorkload, ScoreMix};
    Ok(match args.endpoint {
        Endpoint::Generate => Workload::Generate(GenerateWorkload {
            count: args.requests.max(1),
            concurrency: args.concurrency.max(1),
            prompt: args.prompt.clone(),
            max_new_tokens: args.max_new_tokens,
            stream: false,
        }),
        Endpoint::Score => {
            let ids = label_token_ids(remote, &plan.model).await?;
            let ids = if dry_run { vec![0, 0] } else { ids };
            if ids.len() != 2 {
                bail!(
                    "the tokenizer of {} gave {ids:?} for \" yes\"/\" no\", expected one id each",
                    plan.model
                );
            }
            Workload::Score(ScoreMix {
                model: plan.model.clone(),
                label_token_ids: ids,
                rounds: args.requests.max(1).div_ceil(3),
                concurrency: args.concurrency.max(1),
            })
        }
    })
}

async fn label_token_ids(remote: &Remote, model: &str) -> anyhow::Result<Vec<u32>> {
    let script = format!(
        "cd \"$HOME\"\nHF_HOME=/tmp/hf sglprof/venv/bin/python - {} <<'PY'\n\
         import sys\nfrom transformers import AutoTokenizer\n\
         tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)\n\
         for word in (' yes', ' no'):\n    ids = tok.encode(word, add_special_tokens=False)\n    print('sglprof-token', *ids)\nPY\n",
        tpu_cloud::script::sh_quote(model)
    );
    let argv =
        tpu_cloud::gcloud::ssh_argv(&remote.target, tpu_cloud::gcloud::Worker::One(0), &script);
    let out = remote.gcloud.run(&argv).await?;
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

fn run_metadata(
    args: &crate::profile::Args,
    plan: &Plan,
    state: &RunState,
    remote: &RemoteOutcome,
    started_at: SystemTime,
    finished_at: SystemTime,
    uploaded: Option<(String, u64)>,
) -> session_report::RunMetadata {
    let tpu = &args.tpu;
    let mut res = session_report::RunMetadata::new();
    res.run_id = Some(plan.run_id.clone());
    res.date = Some(tpu_cloud::time::rfc3339(started_at)[..10].to_owned());
    res.started_at = Some(tpu_cloud::time::rfc3339(started_at));
    res.finished_at = Some(tpu_cloud::time::rfc3339(finished_at));
    res.model = Some(plan.model.clone());
    res.hardware = Some(hardware_label(&tpu.accelerator_type));
    res.zone = Some(plan.location.zone.clone());
    res.endpoint = Some(args.endpoint.path().to_owned());
    res.jax_version = remote.versions.get("jax").cloned();
    res.jaxlib_version = remote.versions.get("jaxlib").cloned();
    res.sglang_jax_version = remote.versions.get("sglang-jax").cloned();
    res.python_version = remote.versions.get("python").cloned();
    res.profile = Some(crate::profile::profile_config(
        &remote.config.profile,
        &plan.run_dir,
    ));
    res.workload = Some(crate::profile::workload_summary(&remote.session.workload));
    res.reproduction = reproduction(args, plan);
    let (cost, source) = cost_rows(
        tpu,
        plan,
        state,
        finished_at,
        uploaded.as_ref().map(|u| u.1),
    );
    res.cost = cost;
    res.cost_source = Some(source);
    res.archive_url = uploaded.map(|u| u.0);
    res
}

/// `TPU v6e-1 (single chip)`, as in the seed report.
fn hardware_label(accelerator_type: &str) -> String {
    match accelerator_type.rsplit_once('-') {
        Some((_, "1")) => format!("TPU {accelerator_type} (single chip)"),
        _ => format!("TPU {accelerator_type}"),
    }
}

/// The Cost Summary rows and the note on where the prices come from.
fn cost_rows(
    tpu: &TpuProfileArgs,
    plan: &Plan,
    state: &RunState,
    now: SystemTime,
    uploaded_bytes: Option<u64>,
) -> (Vec<session_report::CostRow>, String) {
    let mut rows = Vec::new();
    let mut source = plan.prices.source.clone();
    let billed = match tpu.vm {
        // A reused VM bills whether or not we run; count the session only.
        Some(_) => state
            .create_requested_at
            .as_deref()
            .and_then(tpu_cloud::time::parse_rfc3339)
            .map(|start| now.duration_since(start).unwrap_or_default()),
        None => state.billed(now),
    };
    match (
        billed,
        plan.prices
            .usd_per_hour(&tpu.accelerator_type, plan.provisioning),
    ) {
        (Some(billed), Some(usd)) => {
            let line = cost::tpu_line(&tpu.accelerator_type, plan.provisioning, billed, usd);
            rows.push(session_report::CostRow {
                resource: line.resource,
                duration: line.duration,
                cost_usd: line.cost_usd,
                unit: line.unit,
            });
            source.push_str(&format!(
                "; billed time from the create call to the end of the delete, at ${usd:.2}/h"
            ));
            if state.phase == Phase::Kept {
                source.push_str("; the VM was kept, so the time runs on until it is deleted");
            }
        }
        (Some(_), None) => {
            source = format!(
                "no price for {} ({}); pass --usd-per-hour or --price-file",
                tpu.accelerator_type,
                plan.provisioning.as_str()
            )
        }
        (None, _) => {}
    }
    if let Some(bytes) = uploaded_bytes {
        let line = cost::gcs_line(bytes, tpu.gcs_usd_per_gb_month);
        rows.push(session_report::CostRow {
            resource: line.resource,
            duration: line.duration,
            cost_usd: line.cost_usd,
            unit: line.unit,
        });
        source.push_str(&format!(
            "; GCS standard storage at ${}/GB-month",
            tpu.gcs_usd_per_gb_month
        ));
    }
    (rows, source)
}

fn reproduction(args: &crate::profile::Args, plan: &Plan) -> Vec<String> {
    let tpu = &args.tpu;
    let mut cmd = format!(
        "cargo xtask profile --tpu --project {} --zone {} --accelerator-type {} --runtime-version {} --provisioning {} --model-path {} --endpoint {} --requests {} --concurrency {} --warmup {} --host-tracer-level {}",
        plan.location.project,
        plan.location.zone,
        tpu.accelerator_type,
        tpu.runtime_version,
        plan.provisioning.as_str(),
        tpu_cloud::script::sh_quote(&plan.model),
        match args.endpoint {
            Endpoint::Generate => "generate",
            Endpoint::Score => "score",
        },
        args.requests,
        args.concurrency,
        args.warmup_requests(),
        args.host_tracer_level,
    );
    match &plan.source {
        PackageSource::Git { url, commit } => cmd.push_str(&format!(
            " --sglang-jax-git {url} --sglang-jax-commit {commit}"
        )),
        PackageSource::PyPi { version: Some(v) } => {
            cmd.push_str(&format!(" --sglang-jax-version {v}"))
        }
        PackageSource::PyPi { version: None } => {}
    }
    if let Some(n) = args.num_steps {
        cmd.push_str(&format!(" --num-steps {n}"));
    }
    if tpu.queued {
        cmd.push_str(" --queued");
    }
    vec![cmd]
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(create: &str, deleted: Option<&str>) -> RunState {
        let mut res = RunState {
            schema: tpu_cloud::state::STATE_SCHEMA.to_owned(),
            run_id: "r".to_owned(),
            project: "p".to_owned(),
            zone: DEFAULT_ZONE.to_owned(),
            node_id: "sglprof-20260205-184819".to_owned(),
            queued_resource: None,
            accelerator_type: "v6e-1".to_owned(),
            runtime_version: "v6e-ubuntu-2404".to_owned(),
            provisioning: Provisioning::OnDemand,
            owned: true,
            phase: Phase::Deleted,
            create_requested_at: Some(create.to_owned()),
            ready_at: None,
            delete_requested_at: None,
            deleted_at: deleted.map(str::to_owned),
            internal_ip: None,
            last_error: None,
        };
        if deleted.is_none() {
            res.phase = Phase::Kept;
        }
        res
    }

    fn plan() -> Plan {
        Plan {
            run_id: "r".to_owned(),
            run_dir: PathBuf::from("runs/r"),
            location: Location::new("p", DEFAULT_ZONE),
            node_id: "n".to_owned(),
            provisioning: Provisioning::OnDemand,
            model: DEFAULT_MODEL.to_owned(),
            source: PackageSource::PyPi {
                version: Some("0.0.2".to_owned()),
            },
            remote_profile_dir: "/tmp/x".to_owned(),
            prices: PriceTable::runbook_defaults(),
        }
    }

    fn tpu_args() -> TpuProfileArgs {
        TpuProfileArgs {
            accelerator_type: "v6e-1".to_owned(),
            gcs_usd_per_gb_month: cost::GCS_USD_PER_GB_MONTH,
            ..TpuProfileArgs::default()
        }
    }

    /// The seed's Cost Summary: 45 minutes of v6e-1 on demand and 87 MB in GCS.
    #[test]
    fn seed_cost_summary() {
        let state = state("2026-02-05T18:48:19Z", Some("2026-02-05T19:33:19Z"));
        let (rows, source) = cost_rows(
            &tpu_args(),
            &plan(),
            &state,
            SystemTime::now(),
            Some(87_000_000),
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].resource, "TPU v6e-1 (on-demand)");
        assert_eq!(rows[0].duration, "45 minutes");
        // 0.75 h x $1.90 = $1.425, which the seed shows as ~$1.43.
        assert!((rows[0].cost_usd - 1.425).abs() < 1e-9);
        assert_eq!(rows[1].resource, "GCS storage");
        assert_eq!(rows[1].duration, "87 MB");
        assert_eq!(rows[1].unit, "/month");
        assert_eq!(format!("{:.3}", rows[1].cost_usd), "0.002");
        assert!(
            source.starts_with("upstream runbook profiling-infrastructure-setup.md"),
            "{source}"
        );
        assert!(source.contains("$1.90/h"), "{source}");
    }

    #[test]
    fn unknown_price_says_what_to_pass() {
        let mut args = tpu_args();
        args.accelerator_type = "v5p-8".to_owned();
        let state = state("2026-02-05T18:48:19Z", Some("2026-02-05T19:33:19Z"));
        let (rows, source) = cost_rows(&args, &plan(), &state, SystemTime::now(), None);
        assert!(rows.is_empty());
        assert_eq!(
            source,
            "no price for v5p-8 (on-demand); pass --usd-per-hour or --price-file"
        );
    }

    #[test]
    fn hardware_labels() {
        assert_eq!(hardware_label("v6e-1"), "TPU v6e-1 (single chip)");
        assert_eq!(hardware_label("v6e-8"), "TPU v6e-8");
    }
}
