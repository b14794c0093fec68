//! `cargo xtask tpu` and `cargo xtask cleanup`: the TPU VMs of a zone,
//! and what a killed `profile --tpu` run left behind. The TPU run itself
//! is `profile_driver::tpu`'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::bail;
use tpu_cloud::api::{Node, NodeState};
use tpu_cloud::cost;
use tpu_cloud::lease::{self, CleanupOutcome, Deadlines};
use tpu_cloud::state::{Ledger, STATE_FILE};
use tpu_cloud::{Location, TpuClient, Transcript};

use crate::profile::DEFAULT_ZONE;

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

fn project(project: &Option<String>, dry_run: bool) -> anyhow::Result<String> {
    Ok(profile_driver::tpu::plan::project(
        project.as_deref(),
        dry_run,
    )?)
}

/// A live client, or for a dry run one that prints each call.
async fn api_client(url: &str, dry_run: bool) -> anyhow::Result<(TpuClient, Option<Transcript>)> {
    let print: profile_driver::tpu::Print = Arc::new(|line: &str| println!("{line}"));
    Ok(profile_driver::tpu::api_client(url, dry_run.then_some(print)).await?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::util::runtime()?.block_on(run_async(args))
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
    crate::util::runtime()?.block_on(async {
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
                    let note = ledger.unsaved_note().map(|it| format!("; {it}")).unwrap_or_default();
                    eprintln!("[cleanup] deleted; billed about {}{note}", cost::human_duration(billed));
                }
                Ok(CleanupOutcome::NothingToDo(phase)) => eprintln!("[cleanup] nothing to do ({phase:?})"),
                Err(err) => {
                    let note = ledger.unsaved_note().map(|it| format!("; {it}")).unwrap_or_default();
                    eprintln!("[cleanup] {}: {err}{note}", ledger.state.run_id);
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
