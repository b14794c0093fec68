//! `cargo xtask tpu` and `cargo xtask cleanup`: the TPU VMs of a zone,
//! and what a killed `profile --tpu` run left behind, as flags of
//! `profile_driver::tpu::admin`, which does the work. The TPU run itself
//! is `profile_driver::tpu`'s.

use std::sync::Arc;

use profile_driver::tpu::Print;
use profile_driver::tpu::admin::{self, Power, Zone, node_table, state_files};

use crate::profile::DEFAULT_ZONE;
use crate::util::Lines;

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

/// The zone of `cloud`; a dry run prints its API calls on standard output.
async fn zone(cloud: &CloudArgs) -> anyhow::Result<Zone> {
    let print: Print = Arc::new(|line: &str| println!("{line}"));
    let project = cloud.project.as_deref();
    Ok(Zone::connect(
        &cloud.tpu_api_url,
        project,
        &cloud.zone,
        cloud.dry_run,
        print,
    )
    .await?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::util::runtime()?.block_on(async move {
        match args.command {
            TpuCommand::List { ours, cloud } => {
                let nodes = zone(&cloud).await?.list(ours).await?;
                println!("{}", node_table(&nodes));
            }
            TpuCommand::Describe { name, cloud } => {
                let zone = zone(&cloud).await?;
                let node = zone.client.get_node(&zone.loc, &name).await?;
                println!("{}", serde_json::to_string_pretty(&node)?);
            }
            TpuCommand::Delete { name, force, cloud } => {
                zone(&cloud).await?.delete(&name, force, &Lines).await?;
            }
            TpuCommand::Stop { name, cloud } => {
                zone(&cloud)
                    .await?
                    .set_power(&name, Power::Stop, &Lines)
                    .await?;
            }
            TpuCommand::Start { name, cloud } => {
                zone(&cloud)
                    .await?
                    .set_power(&name, Power::Start, &Lines)
                    .await?;
            }
        }
        Ok(())
    })
}

pub fn cleanup(args: CleanupArgs) -> anyhow::Result<()> {
    let runs = std::env::current_dir()?.join("runs");
    let paths = state_files(&runs, args.run.as_deref(), args.all)?;
    if paths.is_empty() {
        eprintln!("[cleanup] no run state files found");
        return Ok(());
    }
    let print: Print = Arc::new(|line: &str| println!("{line}"));
    crate::util::runtime()?.block_on(async {
        Ok(admin::cleanup(paths, &args.tpu_api_url, args.dry_run, print, &Lines).await?)
    })
}
