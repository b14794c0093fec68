//! `cargo xtask artifacts`: archive run folders in Google Cloud Storage,
//! fetch them back, list them, and set up the bucket.
//!
//! The work is done by the `gcs-artifacts` crate and
//! `profile_driver::archive` (what `profile --upload` shares with it: the
//! upload and its record in the run metadata, the verified download); this
//! module turns flags into their calls. docs/artifacts.md has the
//! walkthrough.

use std::path::PathBuf;

use anyhow::Context;

use profile_driver::archive::{
    UploadOpts, connect, download, promote, set_up_bucket, upload_run, vm_upload_script,
};

use crate::archive::{ConnFlags, TargetFlags, block_on, upload_opts};
use crate::util::Lines;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Upload a run folder; only what is missing is sent, manifest.json last.
    Upload {
        /// The run folder (the one with inputs/, artifacts/, report.md).
        run: PathBuf,
        #[command(flatten)]
        target: TargetFlags,
        /// The date folder (YYYY-MM-DD); default: the run metadata's date,
        /// a date at the start of the run id, or today (UTC).
        #[arg(long)]
        date: Option<String>,
        /// Default: the run metadata's run_id, else the folder name.
        #[arg(long)]
        run_id: Option<String>,
        /// Replace a run archived under the same id with other content.
        #[arg(long)]
        overwrite: bool,
        /// The saved output of the `vm-script` script: files the TPU VM
        /// uploaded itself, to list in the manifest.
        #[arg(long)]
        vm_listing: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Print the bash script a TPU VM runs to upload a folder into this
    /// run's archive (faster than from a laptop); save its output for
    /// `upload --vm-listing`.
    VmScript {
        /// The local run folder (for the run id and date).
        run: PathBuf,
        /// The folder on the VM, for example /tmp/profile.
        #[arg(long)]
        vm_dir: String,
        /// Where it goes inside the run folder.
        #[arg(long, default_value = "artifacts/raw")]
        subdir: String,
        #[command(flatten)]
        target: TargetFlags,
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Download an archived run and verify every file against its manifest.
    Download {
        /// gs://bucket/prefix/kind/date/run-id/ (or its manifest.json).
        url: String,
        /// Default: runs/<run-id> in the current directory.
        dir: Option<PathBuf>,
        /// Replace local files that differ from the archive.
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// List archived runs (newest first) from their manifests.
    Ls {
        #[arg(long, env = "SGLPROF_BUCKET")]
        bucket: String,
        #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
        prefix: String,
        /// Only runs of this kind.
        #[arg(long, value_parser = ["manual", "nightly"])]
        kind: Option<String>,
        /// Only runs whose model contains this text.
        #[arg(long)]
        model: Option<String>,
        /// Only runs of this endpoint (`/generate`, `/v1/score`).
        #[arg(long)]
        endpoint: Option<String>,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Record an archived run as a named baseline: copy it, verified, to
    /// `baselines/<model>/<accelerator>/<name>/` (kept by the lifecycle).
    Promote {
        /// gs://bucket/prefix/kind/date/run-id/ of an archived run.
        run: String,
        /// The baseline's name, e.g. `main` (`compare --baseline main`).
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// Default: the run metadata's model.
        #[arg(long)]
        model: Option<String>,
        /// Default: the run metadata's hardware.
        #[arg(long)]
        accelerator: Option<String>,
        #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
        prefix: String,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Create the bucket or set its lifecycle.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
}

#[derive(clap::Subcommand)]
enum BucketCommand {
    /// Create the bucket with a location and the RFC-011 lifecycle (nightly
    /// runs: COLDLINE after 7 days, deleted after 30).
    Create {
        #[arg(long, env = "SGLPROF_BUCKET")]
        bucket: String,
        /// For example US, US-EAST5 (next to the v6e zones).
        #[arg(long)]
        location: String,
        #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
        project: Option<String>,
        #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
        prefix: String,
        /// Print the request and the lifecycle JSON instead of sending it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
    /// Set the RFC-011 lifecycle on an existing bucket.
    Lifecycle {
        #[arg(long, env = "SGLPROF_BUCKET")]
        bucket: String,
        #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
        prefix: String,
        /// Print the lifecycle JSON instead of sending it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        conn: ConnFlags,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Upload {
            run,
            target,
            date,
            run_id,
            overwrite,
            vm_listing,
            conn,
        } => {
            let opts = UploadOpts {
                date,
                run_id,
                overwrite,
                ..upload_opts(&target, &conn)
            };
            let vm_files = match vm_listing {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    gcs_artifacts::remote::parse_vm_listing(&text)?
                }
                None => Vec::new(),
            };
            let url = block_on(async { Ok(upload_run(&run, &opts, &vm_files, &Lines).await?) })?;
            println!("{url}");
            Ok(())
        }
        Command::VmScript {
            run,
            vm_dir,
            subdir,
            target,
            date,
            run_id,
        } => {
            let conn = ConnFlags {
                gcs_endpoint: gcs_artifacts::GOOGLE_ENDPOINT.to_owned(),
                gcs_anonymous: false,
                gcs_jobs: 1,
            };
            let opts = UploadOpts {
                date,
                run_id,
                ..upload_opts(&target, &conn)
            };
            print!("{}", vm_upload_script(&run, &opts, &vm_dir, &subdir)?);
            Ok(())
        }
        Command::Download {
            url,
            dir,
            overwrite,
            conn,
        } => {
            let root = std::env::current_dir()?.join("runs");
            let conn = conn.connection();
            let dir = block_on(async {
                Ok(download(&url, dir, &root, overwrite, &conn, &Lines).await?)
            })?;
            println!("{}", dir.display());
            Ok(())
        }
        Command::Ls {
            bucket,
            prefix,
            kind,
            model,
            endpoint,
            conn,
        } => block_on(async move {
            let client = connect(&conn.connection()).await?;
            let mut listing = gcs_artifacts::list_runs(&client, &bucket, &prefix).await?;
            listing.retain_matching(kind.as_deref(), model.as_deref(), endpoint.as_deref());
            print!("{}", gcs_artifacts::render_listing(&listing));
            Ok(())
        }),
        Command::Promote {
            run,
            name,
            model,
            accelerator,
            prefix,
            conn,
        } => {
            let url = block_on(async {
                let conn = conn.connection();
                Ok(promote(&conn, &run, &name, model, accelerator, &prefix, &Lines).await?)
            })?;
            println!("{url}");
            Ok(())
        }
        Command::Bucket { command } => bucket(command),
    }
}

fn bucket(command: BucketCommand) -> anyhow::Result<()> {
    match command {
        BucketCommand::Create {
            bucket,
            location,
            project,
            prefix,
            dry_run,
            conn,
        } => {
            gcs_artifacts::validate_bucket(&bucket)?;
            if dry_run {
                let endpoint = &conn.gcs_endpoint;
                let project = project.as_deref();
                print!(
                    "{}",
                    gcs_artifacts::bucket_create_text(
                        endpoint, project, &bucket, &location, &prefix
                    )
                );
                return Ok(());
            }
            let project =
                project.context("bucket create needs --project or GOOGLE_CLOUD_PROJECT")?;
            let create = Some((project.as_str(), location.as_str()));
            block_on(async {
                Ok(set_up_bucket(&conn.connection(), &bucket, create, &prefix, &Lines).await?)
            })
        }
        BucketCommand::Lifecycle {
            bucket,
            prefix,
            dry_run,
            conn,
        } => {
            if dry_run {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&gcs_artifacts::lifecycle(&prefix))?
                );
                return Ok(());
            }
            block_on(async {
                Ok(set_up_bucket(&conn.connection(), &bucket, None, &prefix, &Lines).await?)
            })
        }
    }
}
