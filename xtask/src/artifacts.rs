//! `cargo xtask artifacts`: archive run folders in Google Cloud Storage,
//! fetch them back, list them, and set up the bucket.
//!
//! The work is done by the `gcs-artifacts` crate; this module turns flags
//! into its calls and records the archive URL in the run metadata. The
//! profile commands call [`upload_run`] (or [`upload_run_async`] from inside
//! their runtime) for `--upload`, with the flags of [`ArchiveFlags`].
//! docs/artifacts.md has the walkthrough.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gcs_artifacts::{Auth, Client, ClientConfig, GsUrl, RunAddress, RunKind};

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
        /// Default: runs/<run-id> in the checkout.
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

/// Where runs go: the bucket, the prefix inside it and the kind of run.
#[derive(clap::Args, Clone, Debug)]
pub struct TargetFlags {
    #[arg(long, env = "SGLPROF_BUCKET")]
    pub bucket: String,
    #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
    pub prefix: String,
    #[arg(long, value_parser = ["manual", "nightly"], default_value = "manual")]
    pub kind: String,
}

/// How to reach GCS. The defaults are production; the endpoint can point
/// at an emulator (with --gcs-anonymous).
#[derive(clap::Args, Clone, Debug)]
pub struct ConnFlags {
    #[arg(long, env = "SGLPROF_GCS_ENDPOINT", default_value = gcs_artifacts::GOOGLE_ENDPOINT)]
    pub gcs_endpoint: String,
    /// Send no credentials (emulators only).
    #[arg(long)]
    pub gcs_anonymous: bool,
    /// Transfers in flight at once.
    #[arg(long, default_value_t = 8)]
    pub gcs_jobs: usize,
}

/// The flags `cargo xtask profile` flattens for `--upload`. The bucket
/// comes from `--bucket` or `SGLPROF_BUCKET`.
#[derive(clap::Args, Clone, Debug)]
pub struct ArchiveFlags {
    /// Archive the run folder in GCS when the session ends.
    #[arg(long)]
    pub upload: bool,
    #[arg(long, env = "SGLPROF_BUCKET")]
    pub bucket: Option<String>,
    #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
    pub bucket_prefix: String,
    /// `manual` or `nightly`.
    #[arg(long = "archive-kind", value_parser = ["manual", "nightly"], default_value = "manual")]
    pub archive_kind: String,
    #[command(flatten)]
    pub conn: ConnFlags,
}

impl ArchiveFlags {
    /// `None` without `--upload`; an error when `--upload` has no bucket.
    pub fn upload_opts(&self) -> anyhow::Result<Option<UploadOpts>> {
        if !self.upload {
            return Ok(None);
        }
        let Some(bucket) = &self.bucket else {
            anyhow::bail!("--upload needs a bucket: pass --bucket or set SGLPROF_BUCKET");
        };
        let target = TargetFlags {
            bucket: bucket.clone(),
            prefix: self.bucket_prefix.clone(),
            kind: self.archive_kind.clone(),
        };
        Ok(Some(UploadOpts::new(&target, &self.conn)))
    }
}

/// Everything [`upload_run`] needs.
#[derive(Clone, Debug)]
pub struct UploadOpts {
    pub bucket: String,
    pub prefix: String,
    pub kind: RunKind,
    /// Default: from the run metadata or folder name.
    pub date: Option<String>,
    pub run_id: Option<String>,
    pub overwrite: bool,
    pub conn: ConnFlags,
}

impl UploadOpts {
    pub fn new(target: &TargetFlags, conn: &ConnFlags) -> UploadOpts {
        UploadOpts {
            bucket: target.bucket.clone(),
            prefix: target.prefix.clone(),
            kind: if target.kind == "nightly" {
                RunKind::Nightly
            } else {
                RunKind::Manual
            },
            date: None,
            run_id: None,
            overwrite: false,
            conn: conn.clone(),
        }
    }
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
                ..UploadOpts::new(&target, &conn)
            };
            let vm_files = match vm_listing {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    gcs_artifacts::remote::parse_vm_listing(&text)?
                }
                None => Vec::new(),
            };
            let url = block_on(upload_run_async(&run, &opts, &vm_files))?;
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
                ..UploadOpts::new(&target, &conn)
            };
            print!("{}", vm_upload_script(&run, &opts, &vm_dir, &subdir)?);
            Ok(())
        }
        Command::Download {
            url,
            dir,
            overwrite,
            conn,
        } => block_on(download(&url, dir, overwrite, &conn)),
        Command::Ls {
            bucket,
            prefix,
            kind,
            model,
            endpoint,
            conn,
        } => block_on(async move {
            let client = connect(&conn).await?;
            let mut listing = gcs_artifacts::list_runs(&client, &bucket, &prefix).await?;
            listing.runs.retain(|r| {
                kind.as_ref().is_none_or(|k| &r.kind == k)
                    && model
                        .as_ref()
                        .is_none_or(|m| r.model.as_deref().is_some_and(|x| x.contains(m.as_str())))
                    && endpoint
                        .as_ref()
                        .is_none_or(|e| r.endpoint.as_deref() == Some(e.as_str()))
            });
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
        } => block_on(promote(run, name, model, accelerator, prefix, conn)),
        Command::Bucket { command } => bucket(command),
    }
}

async fn promote(
    run: String,
    name: String,
    model: Option<String>,
    accelerator: Option<String>,
    prefix: String,
    conn: ConnFlags,
) -> anyhow::Result<()> {
    let url = GsUrl::parse(&run)?;
    let client = connect(&conn).await?;
    let (_, manifest) = gcs_artifacts::read_manifest(&client, &url).await?;
    let field = |key: &str| manifest.metadata_field(key).map(str::to_owned);
    let model = model
        .or_else(|| field("model"))
        .with_context(|| format!("{run}: the run metadata names no model; pass --model"))?;
    let accelerator = accelerator.or_else(|| field("hardware")).with_context(|| {
        format!("{run}: the run metadata names no hardware; pass --accelerator")
    })?;
    let addr =
        gcs_artifacts::BaselineAddress::new(&url.bucket, &prefix, &model, &accelerator, &name)?;
    let scratch = tempfile::Builder::new()
        .prefix("sglprof-promote-")
        .tempdir()
        .context("cannot create a scratch folder")?;
    let summary = gcs_artifacts::promote(
        &client,
        &url,
        &addr,
        scratch.path(),
        &gcs_artifacts::utc_now().1,
    )
    .await
    .with_context(|| format!("cannot promote {run}"))?;
    eprintln!(
        "[artifacts] {run} is baseline `{name}`: {} objects ({}) verified and copied",
        summary.objects,
        gcs_artifacts::human_bytes(summary.bytes)
    );
    println!("{}", summary.url);
    Ok(())
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
                let body = gcs_artifacts::bucket_insert_body(&bucket, &location, &prefix);
                let project = project.as_deref().unwrap_or("<project>");
                println!(
                    "POST {}/storage/v1/b?project={project}",
                    conn.gcs_endpoint.trim_end_matches('/')
                );
                println!("{}", serde_json::to_string_pretty(&body)?);
                println!();
                println!("lifecycle:");
                println!(
                    "{}",
                    serde_json::to_string_pretty(&gcs_artifacts::lifecycle(&prefix))?
                );
                return Ok(());
            }
            let project =
                project.context("bucket create needs --project or GOOGLE_CLOUD_PROJECT")?;
            block_on(async move {
                let client = connect(&conn).await?;
                gcs_artifacts::create_bucket(&client, &project, &bucket, &location, &prefix)
                    .await?;
                eprintln!(
                    "[artifacts] created gs://{bucket} in {location} with the RFC-011 lifecycle"
                );
                Ok(())
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
            block_on(async move {
                let client = connect(&conn).await?;
                gcs_artifacts::set_lifecycle(&client, &bucket, &prefix).await?;
                eprintln!("[artifacts] set the RFC-011 lifecycle on gs://{bucket}");
                Ok(())
            })
        }
    }
}

/// Archives `run_dir` and returns its `gs://` URL. Records the URL as
/// `archive_url` in `inputs/run_metadata.json` first, so the archived
/// metadata says where it lives. Builds its own runtime: from async code
/// use [`upload_run_async`].
// Called by `profile` once it has `--upload`.
#[allow(dead_code)]
pub fn upload_run(run_dir: &Path, opts: &UploadOpts) -> anyhow::Result<String> {
    block_on(upload_run_async(run_dir, opts, &[]))
}

/// Records in the run metadata where [`upload_run_async`] will put the run,
/// so that the report written before the upload can name it; returns the
/// `gs://` URL.
pub fn record_archive_target(run_dir: &Path, opts: &UploadOpts) -> anyhow::Result<String> {
    let addr = run_address(run_dir, opts)?;
    record_archive_url(run_dir, &addr.url())?;
    Ok(addr.url())
}

/// [`upload_run`] for callers already inside a tokio runtime.
/// `vm_files` are the files the TPU VM uploaded itself (the output of the
/// script from [`vm_upload_script`], parsed by
/// `gcs_artifacts::remote::parse_vm_listing`); pass `&[]` otherwise.
pub async fn upload_run_async(
    run_dir: &Path,
    opts: &UploadOpts,
    vm_files: &[gcs_artifacts::remote::RemoteFile],
) -> anyhow::Result<String> {
    let addr = run_address(run_dir, opts)?;
    record_archive_url(run_dir, &addr.url())?;
    let client = connect(&opts.conn).await?;
    let upload = gcs_artifacts::UploadOptions {
        overwrite: opts.overwrite,
        remote_files: vm_files.to_vec(),
        created_at: gcs_artifacts::utc_now().1,
    };
    let summary = gcs_artifacts::upload_run(&client, run_dir, &addr, &upload)
        .await
        .with_context(|| format!("cannot archive {}", run_dir.display()))?;
    if summary.already_complete {
        eprintln!(
            "[artifacts] {} is already archived with this content",
            summary.url
        );
    } else {
        eprintln!(
            "[artifacts] {}: {} uploaded ({}), {} already there, manifest.json written",
            summary.url,
            summary.uploaded,
            gcs_artifacts::human_bytes(summary.bytes_uploaded),
            summary.skipped
        );
    }
    Ok(summary.url)
}

/// The bash script a TPU VM runs to upload `vm_dir` (for example the
/// server's `/tmp/profile`) into `<run>/<subdir>/` of the archive, and to
/// print the listing that [`upload_run_async`] takes as `vm_files`.
pub fn vm_upload_script(
    run_dir: &Path,
    opts: &UploadOpts,
    vm_dir: &str,
    subdir: &str,
) -> anyhow::Result<String> {
    let addr = run_address(run_dir, opts)?;
    Ok(gcs_artifacts::remote::vm_upload_script(
        vm_dir, &addr, subdir,
    )?)
}

/// Where `run_dir` is archived with `opts`.
pub fn run_address(run_dir: &Path, opts: &UploadOpts) -> anyhow::Result<RunAddress> {
    let metadata = read_metadata_json(run_dir)?;
    let folder = absolute(run_dir)?;
    let folder_name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    let (today, _) = gcs_artifacts::utc_now();
    let (date, run_id) = gcs_artifacts::infer_run_identity(folder_name, metadata.as_ref(), &today);
    let date = opts.date.clone().unwrap_or(date);
    let run_id = opts.run_id.clone().unwrap_or(run_id);
    Ok(RunAddress::new(
        &opts.bucket,
        &opts.prefix,
        opts.kind,
        &date,
        &run_id,
    )?)
}

fn read_metadata_json(run_dir: &Path) -> anyhow::Result<Option<serde_json::Value>> {
    let path = run_dir.join(gcs_artifacts::RUN_METADATA_PATH);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| {
        format!("invalid JSON in {}", path.display())
    })?))
}

/// Sets `archive_url` in the run metadata, when the run has metadata and
/// the URL is not already recorded.
fn record_archive_url(run_dir: &Path, url: &str) -> anyhow::Result<()> {
    let path = run_dir.join(gcs_artifacts::RUN_METADATA_PATH);
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut metadata = session_report::RunMetadata::from_json(&text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.archive_url.as_deref() == Some(url) {
        return Ok(());
    }
    metadata.archive_url = Some(url.to_owned());
    std::fs::write(&path, metadata.to_json())
        .with_context(|| format!("cannot write {}", path.display()))
}

pub(crate) async fn download(
    url: &str,
    dir: Option<PathBuf>,
    overwrite: bool,
    conn: &ConnFlags,
) -> anyhow::Result<()> {
    let url = GsUrl::parse(url)?;
    let client = connect(conn).await?;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            let (_, manifest) = gcs_artifacts::read_manifest(&client, &url).await?;
            manifest.default_dir(&crate::project_root().join("runs"))?
        }
    };
    let opts = gcs_artifacts::DownloadOptions { overwrite };
    let summary = gcs_artifacts::download_run(&client, &url, &dir, opts)
        .await
        .with_context(|| format!("cannot download {url} into {}", dir.display()))?;
    eprintln!(
        "[artifacts] {}: {} files downloaded ({}), {} already there, all checksums verified",
        dir.display(),
        summary.downloaded,
        gcs_artifacts::human_bytes(summary.bytes_downloaded),
        summary.already_present
    );
    println!("{}", dir.display());
    Ok(())
}

pub(crate) async fn connect(conn: &ConnFlags) -> anyhow::Result<Client> {
    let config = ClientConfig {
        endpoint: conn.gcs_endpoint.clone(),
        auth: if conn.gcs_anonymous {
            Auth::Anonymous
        } else {
            Auth::ApplicationDefault
        },
        max_attempts: 5,
        resumable_threshold: gcs_artifacts::DEFAULT_RESUMABLE_THRESHOLD,
        concurrency: conn.gcs_jobs.max(1),
        progress: true,
    };
    Ok(Client::new(config).await?)
}

pub(crate) fn block_on<T>(
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    runtime.block_on(fut)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
