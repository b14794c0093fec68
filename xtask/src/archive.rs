//! Archiving a run folder in GCS, as every command that does it shares it:
//! the flags (`--upload`, the bucket, the connection), the upload and its
//! record in the run metadata, the script a TPU VM runs to upload from
//! where the traces are, and the verified download. `crate::artifacts`
//! (the `artifacts` subcommand), the profile drivers and `compare` use it;
//! the work itself is the `gcs-artifacts` crate's.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gcs_artifacts::{Auth, Client, ClientConfig, GsUrl, RunAddress, RunKind};

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

/// Everything [`upload_run_async`] needs.
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

/// Records in the run metadata where [`upload_run_async`] will put the run,
/// so that the report written before the upload can name it; returns the
/// `gs://` URL.
pub fn record_archive_target(run_dir: &Path, opts: &UploadOpts) -> anyhow::Result<String> {
    let addr = run_address(run_dir, opts)?;
    record_archive_url(run_dir, &addr.url())?;
    Ok(addr.url())
}

/// Archives `run_dir` and returns its `gs://` URL. Records the URL as
/// `archive_url` in `inputs/run_metadata.json` first, so that the archived
/// metadata says where it lives.
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
    crate::runtime()?.block_on(fut)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
