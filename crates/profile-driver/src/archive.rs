//! Run folders archived in GCS, as every run and command that archives
//! shares it: where a run goes ([`UploadOpts`], from a plan's
//! [`ArchivePlan`]), its address recorded in the run metadata before the
//! report is written, the upload, the script a TPU VM runs to upload its
//! own traces, and the verified download. The work itself is the
//! `gcs-artifacts` crate's.

use std::path::{Path, PathBuf};

use gcs_artifacts::{Auth, Client, ClientConfig, GsUrl, RunAddress, RunKind};
use profile_session::plan::{ArchiveKind, ArchivePlan};

use crate::DriveError;
use crate::events::Progress;

/// How to reach GCS.
#[derive(Clone, Debug)]
pub struct Connection {
    pub endpoint: String,
    /// Send no credentials (emulators only).
    pub anonymous: bool,
    /// Transfers in flight at once.
    pub jobs: usize,
}

/// Where one run is archived and how.
#[derive(Clone, Debug)]
pub struct UploadOpts {
    pub bucket: String,
    pub prefix: String,
    pub kind: RunKind,
    /// Default: from the run metadata or folder name.
    pub date: Option<String>,
    pub run_id: Option<String>,
    pub overwrite: bool,
    pub conn: Connection,
}

impl UploadOpts {
    /// `None` without `--upload`; an error when `--upload` has no bucket.
    pub fn from_plan(plan: &ArchivePlan) -> Result<Option<UploadOpts>, DriveError> {
        if !plan.upload {
            return Ok(None);
        }
        let Some(bucket) = &plan.bucket else {
            return Err(DriveError::Failed(
                "--upload needs a bucket: pass --bucket or set SGLPROF_BUCKET".to_owned(),
            ));
        };
        Ok(Some(UploadOpts {
            bucket: bucket.clone(),
            prefix: plan.prefix.clone(),
            kind: match plan.kind {
                ArchiveKind::Manual => RunKind::Manual,
                ArchiveKind::Nightly => RunKind::Nightly,
            },
            date: None,
            run_id: None,
            overwrite: false,
            conn: connection(plan),
        }))
    }
}

/// The connection of a plan's archive settings.
pub fn connection(plan: &ArchivePlan) -> Connection {
    Connection {
        endpoint: plan.gcs_endpoint.clone(),
        anonymous: plan.gcs_anonymous,
        jobs: plan.gcs_jobs,
    }
}

/// Records in the run metadata where [`upload_run`] will put the run, so
/// that the report written before the upload can name it; returns the
/// `gs://` URL.
pub fn record_archive_target(run_dir: &Path, opts: &UploadOpts) -> Result<String, DriveError> {
    let addr = run_address(run_dir, opts)?;
    record_archive_url(run_dir, &addr.url())?;
    Ok(addr.url())
}

/// Archives `run_dir` and returns its `gs://` URL. Records the URL as
/// `archive_url` in `inputs/run_metadata.json` first, so that the archived
/// metadata says where it lives. `vm_files` are the files a TPU VM
/// uploaded itself (the listing the script of [`vm_upload_script`]
/// prints, parsed by `gcs_artifacts::remote::parse_vm_listing`).
pub async fn upload_run(
    run_dir: &Path,
    opts: &UploadOpts,
    vm_files: &[gcs_artifacts::remote::RemoteFile],
    progress: &dyn Progress,
) -> Result<String, DriveError> {
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
        .map_err(DriveError::archive(format!(
            "cannot archive {}",
            run_dir.display()
        )))?;
    progress.line(
        "artifacts",
        &if summary.already_complete {
            format!("{} is already archived with this content", summary.url)
        } else {
            format!(
                "{}: {} uploaded ({}), {} already there, manifest.json written",
                summary.url,
                summary.uploaded,
                gcs_artifacts::human_bytes(summary.bytes_uploaded),
                summary.skipped
            )
        },
    );
    Ok(summary.url)
}

/// The bash script a TPU VM runs to upload `vm_dir` (the server's profile
/// folder) into `<run>/<subdir>/` of the archive, printing the listing that
/// [`upload_run`] takes as `vm_files`.
pub fn vm_upload_script(
    run_dir: &Path,
    opts: &UploadOpts,
    vm_dir: &str,
    subdir: &str,
) -> Result<String, DriveError> {
    let addr = run_address(run_dir, opts)?;
    gcs_artifacts::remote::vm_upload_script(vm_dir, &addr, subdir)
        .map_err(DriveError::archive("cannot write the VM's upload script"))
}

/// Where `run_dir` is archived with `opts`.
pub fn run_address(run_dir: &Path, opts: &UploadOpts) -> Result<RunAddress, DriveError> {
    let metadata = read_metadata_json(run_dir)?;
    let folder = std::path::absolute(run_dir).map_err(|source| DriveError::Io {
        what: "cannot resolve",
        path: run_dir.to_path_buf(),
        source,
    })?;
    let folder_name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    let (today, _) = gcs_artifacts::utc_now();
    let (date, run_id) = gcs_artifacts::infer_run_identity(folder_name, metadata.as_ref(), &today);
    let date = opts.date.clone().unwrap_or(date);
    let run_id = opts.run_id.clone().unwrap_or(run_id);
    RunAddress::new(&opts.bucket, &opts.prefix, opts.kind, &date, &run_id)
        .map_err(DriveError::archive("no archive address for this run"))
}

fn read_metadata_json(run_dir: &Path) -> Result<Option<serde_json::Value>, DriveError> {
    let path = run_dir.join(gcs_artifacts::RUN_METADATA_PATH);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DriveError::Io {
                what: "cannot read",
                path,
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| DriveError::Failed(format!("invalid JSON in {}: {err}", path.display())))
}

/// Sets `archive_url` in the run metadata, when the run has metadata and
/// the URL is not already recorded.
fn record_archive_url(run_dir: &Path, url: &str) -> Result<(), DriveError> {
    let path = run_dir.join(gcs_artifacts::RUN_METADATA_PATH);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut metadata = session_report::RunMetadata::from_json(&text)
        .map_err(|err| DriveError::Failed(format!("cannot read {}: {err}", path.display())))?;
    if metadata.archive_url.as_deref() == Some(url) {
        return Ok(());
    }
    metadata.archive_url = Some(url.to_owned());
    profile_session::run_folder::write_atomic(&path, metadata.to_json().as_bytes())?;
    Ok(())
}

/// Downloads the archived run at `url` into `dir` (by default the folder
/// its manifest names under `default_root`), verified against the
/// manifest; returns the folder.
pub async fn download(
    url: &str,
    dir: Option<PathBuf>,
    default_root: &Path,
    overwrite: bool,
    conn: &Connection,
    progress: &dyn Progress,
) -> Result<PathBuf, DriveError> {
    let url = GsUrl::parse(url).map_err(DriveError::archive(format!("bad address {url}")))?;
    let client = connect(conn).await?;
    let dir =
        match dir {
            Some(dir) => dir,
            None => {
                let (_, manifest) = gcs_artifacts::read_manifest(&client, &url).await.map_err(
                    DriveError::archive(format!("cannot read the manifest of {url}")),
                )?;
                manifest
                    .default_dir(default_root)
                    .map_err(DriveError::archive(format!("no folder for {url}")))?
            }
        };
    let opts = gcs_artifacts::DownloadOptions { overwrite };
    let summary = gcs_artifacts::download_run(&client, &url, &dir, opts)
        .await
        .map_err(DriveError::archive(format!(
            "cannot download {url} into {}",
            dir.display()
        )))?;
    progress.line(
        "artifacts",
        &format!(
            "{}: {} files downloaded ({}), {} already there, all checksums verified",
            dir.display(),
            summary.downloaded,
            gcs_artifacts::human_bytes(summary.bytes_downloaded),
            summary.already_present
        ),
    );
    Ok(dir)
}

/// Downloads the archived run at `url` into `dest` (a scratch folder),
/// verified against its manifest.
pub async fn fetch_run(client: &Client, url: &str, dest: &Path) -> Result<(), DriveError> {
    let parsed = GsUrl::parse(url).map_err(DriveError::archive(format!("bad address {url}")))?;
    gcs_artifacts::download_run(
        client,
        &parsed,
        dest,
        gcs_artifacts::DownloadOptions { overwrite: false },
    )
    .await
    .map_err(DriveError::archive(format!("cannot fetch {url}")))?;
    Ok(())
}

/// Downloads the named baseline at `addr` into `dest`, verified.
pub async fn fetch_baseline(
    client: &Client,
    addr: &gcs_artifacts::BaselineAddress,
    dest: &Path,
) -> Result<(), DriveError> {
    gcs_artifacts::fetch_baseline(client, addr, dest)
        .await
        .map_err(DriveError::archive(format!(
            "cannot fetch baseline {}",
            addr.url()
        )))?;
    Ok(())
}

/// Where [`fetch_history`] looks: the archive's runs of one kind that match
/// `filter`, without `exclude` (the candidate itself, when archived).
pub struct HistoryQuery<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub kind: RunKind,
    pub filter: &'a gcs_artifacts::RunFilter,
    pub exclude: Option<&'a str>,
    pub count: usize,
}

/// Downloads the last `query.count` archived runs that match `query`, the
/// newest first, into `scratch/history-<i>`, verified; returns each
/// folder with the run's address. No matching run is an error.
pub async fn fetch_history(
    client: &Client,
    query: &HistoryQuery<'_>,
    scratch: &Path,
) -> Result<Vec<(PathBuf, String)>, DriveError> {
    let runs = gcs_artifacts::last_runs(
        client,
        query.bucket,
        query.prefix,
        query.kind,
        query.filter,
        query.exclude,
        query.count,
    )
    .await
    .map_err(DriveError::archive(format!(
        "cannot list the archived runs in gs://{}/{}/",
        query.bucket, query.prefix
    )))?;
    if runs.is_empty() {
        return Err(DriveError::Failed(format!(
            "--history {}: no archived {} runs of the same model, hardware and endpoint in gs://{}/{}/",
            query.count, query.kind, query.bucket, query.prefix
        )));
    }
    let mut dirs = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let dest = scratch.join(format!("history-{i}"));
        fetch_run(client, &run.url, &dest).await?;
        dirs.push((dest, run.url.clone()));
    }
    Ok(dirs)
}

/// A compare input as a local folder: a local path as it is, a `gs://`
/// run downloaded into `dest` (a scratch folder), verified.
pub async fn fetch_input(
    input: &str,
    dest: &Path,
    conn: &Connection,
) -> Result<PathBuf, DriveError> {
    if !input.starts_with("gs://") {
        return Ok(PathBuf::from(input));
    }
    fetch_run(&connect(conn).await?, input, dest).await?;
    Ok(dest.to_path_buf())
}

/// Where a candidate's baselines are archived: a named baseline of its
/// model and accelerator, or the last runs like it. The model and the
/// accelerator are the candidate's run metadata's unless given.
pub struct Baselines<'a> {
    pub bucket: Option<&'a str>,
    pub prefix: &'a str,
    pub model: Option<&'a str>,
    pub accelerator: Option<&'a str>,
    pub conn: &'a Connection,
}

impl Baselines<'_> {
    fn bucket(&self, what: &str) -> Result<&str, DriveError> {
        self.bucket.ok_or_else(|| {
            DriveError::Failed(format!(
                "{what} needs a bucket: pass --bucket or set SGLPROF_BUCKET"
            ))
        })
    }

    /// Downloads the baseline `name` of the candidate's model and
    /// accelerator into `scratch/baseline`; returns the folder and the
    /// baseline's address.
    pub async fn named(
        &self,
        name: &str,
        candidate_dir: &Path,
        scratch: &Path,
    ) -> Result<(PathBuf, String), DriveError> {
        let bucket = self.bucket("--baseline")?;
        let field = candidate_field(candidate_dir)?;
        let missing = |what: &str, flag: &str| {
            DriveError::Failed(format!(
                "--baseline {name}: the candidate has no {what} in its run metadata; pass --{flag}"
            ))
        };
        let model = (self.model.map(str::to_owned))
            .or_else(|| field("model"))
            .ok_or_else(|| missing("model", "model"))?;
        let accelerator = (self.accelerator.map(str::to_owned))
            .or_else(|| field("hardware"))
            .ok_or_else(|| missing("hardware", "accelerator"))?;
        let addr =
            gcs_artifacts::BaselineAddress::new(bucket, self.prefix, &model, &accelerator, name)
                .map_err(|err| DriveError::Gcs(Box::new(err)))?;
        let dest = scratch.join("baseline");
        fetch_baseline(&connect(self.conn).await?, &addr, &dest).await?;
        Ok((dest, addr.url().to_string()))
    }

    /// Downloads the last `count` archived runs of `kind` with the
    /// candidate's model, hardware and endpoint (not the candidate itself)
    /// as [`fetch_history`] does.
    pub async fn history(
        &self,
        kind: RunKind,
        count: usize,
        candidate_dir: &Path,
        candidate_input: &str,
        scratch: &Path,
    ) -> Result<Vec<(PathBuf, String)>, DriveError> {
        let bucket = self.bucket("--history")?;
        let field = candidate_field(candidate_dir)?;
        let filter = gcs_artifacts::RunFilter {
            model: self.model.map(str::to_owned).or_else(|| field("model")),
            hardware: (self.accelerator.map(str::to_owned)).or_else(|| field("hardware")),
            endpoint: field("endpoint"),
        };
        let exclude = candidate_input
            .starts_with("gs://")
            .then(|| candidate_input.to_owned())
            .or_else(|| field("archive_url"));
        let query = HistoryQuery {
            bucket,
            prefix: self.prefix,
            kind,
            filter: &filter,
            exclude: exclude.as_deref(),
            count,
        };
        fetch_history(&connect(self.conn).await?, &query, scratch).await
    }
}

/// A text field of the run metadata in `dir`.
fn candidate_field(dir: &Path) -> Result<impl Fn(&str) -> Option<String>, DriveError> {
    let meta = profile_report::compare_side::run_metadata(dir)?;
    Ok(move |key: &str| {
        meta.as_ref()
            .and_then(|m| m.get(key)?.as_str().map(str::to_owned))
    })
}

/// Makes the archived run at `run` the baseline `name` (see
/// [`gcs_artifacts::promote`]) of its model and accelerator (the run
/// metadata's unless given) under `prefix`; returns its address.
pub async fn promote(
    conn: &Connection,
    run: &str,
    name: &str,
    model: Option<String>,
    accelerator: Option<String>,
    prefix: &str,
    progress: &dyn Progress,
) -> Result<String, DriveError> {
    let gcs = |err| DriveError::Gcs(Box::new(err));
    let url = GsUrl::parse(run).map_err(gcs)?;
    let client = connect(conn).await?;
    let (_, manifest) = gcs_artifacts::read_manifest(&client, &url)
        .await
        .map_err(gcs)?;
    let field = |key: &str| manifest.metadata_field(key).map(str::to_owned);
    let missing = |what: &str, flag: &str| {
        DriveError::Failed(format!(
            "{run}: the run metadata names no {what}; pass --{flag}"
        ))
    };
    let model = model
        .or_else(|| field("model"))
        .ok_or_else(|| missing("model", "model"))?;
    let accelerator = accelerator
        .or_else(|| field("hardware"))
        .ok_or_else(|| missing("hardware", "accelerator"))?;
    let addr = gcs_artifacts::BaselineAddress::new(&url.bucket, prefix, &model, &accelerator, name)
        .map_err(gcs)?;
    let scratch = scratch_dir("sglprof-promote-")?;
    let summary = gcs_artifacts::promote(
        &client,
        &url,
        &addr,
        scratch.path(),
        &gcs_artifacts::utc_now().1,
    )
    .await
    .map_err(DriveError::archive(format!("cannot promote {run}")))?;
    progress.line(
        "artifacts",
        &format!(
            "{run} is baseline `{name}`: {} objects ({}) verified and copied",
            summary.objects,
            gcs_artifacts::human_bytes(summary.bytes)
        ),
    );
    Ok(summary.url)
}

/// Creates `bucket` with the RFC-011 lifecycle of `prefix` when `create`
/// gives its project and location, else sets that lifecycle on the
/// existing `bucket`.
pub async fn set_up_bucket(
    conn: &Connection,
    bucket: &str,
    create: Option<(&str, &str)>,
    prefix: &str,
    progress: &dyn Progress,
) -> Result<(), DriveError> {
    let gcs = |err| DriveError::Gcs(Box::new(err));
    let client = connect(conn).await?;
    let text = match create {
        Some((project, location)) => {
            gcs_artifacts::create_bucket(&client, project, bucket, location, prefix)
                .await
                .map_err(gcs)?;
            format!("created gs://{bucket} in {location} with the RFC-011 lifecycle")
        }
        None => {
            gcs_artifacts::set_lifecycle(&client, bucket, prefix)
                .await
                .map_err(gcs)?;
            format!("set the RFC-011 lifecycle on gs://{bucket}")
        }
    };
    progress.line("artifacts", &text);
    Ok(())
}

/// A client for `conn`.
pub async fn connect(conn: &Connection) -> Result<Client, DriveError> {
    let config = ClientConfig {
        endpoint: conn.endpoint.clone(),
        auth: if conn.anonymous {
            Auth::Anonymous
        } else {
            Auth::ApplicationDefault
        },
        max_attempts: 5,
        resumable_threshold: gcs_artifacts::DEFAULT_RESUMABLE_THRESHOLD,
        concurrency: conn.jobs.max(1),
        progress: true,
    };
    Client::new(config)
        .await
        .map_err(DriveError::archive("cannot reach Google Cloud Storage"))
}

/// A temporary folder for fetched runs, removed when dropped.
pub(crate) fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, DriveError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| DriveError::Io {
            what: "cannot create a scratch folder in",
            path: std::env::temp_dir(),
            source,
        })
}

#[cfg(test)]
mod tests {
    /// The plan's archive defaults are the archive's own.
    #[test]
    fn plan_defaults_are_the_archives() {
        use profile_session::plan::defaults;
        assert_eq!(defaults::BUCKET_PREFIX, gcs_artifacts::DEFAULT_PREFIX);
        assert_eq!(defaults::GCS_ENDPOINT, gcs_artifacts::GOOGLE_ENDPOINT);
    }
}
