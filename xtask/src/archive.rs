//! The flags every command that archives shares (`--upload` of `profile`,
//! `artifacts`, `compare`'s `gs://` inputs), turned into the types of
//! `profile_driver::archive`, which does the work.

use gcs_artifacts::RunKind;
use profile_driver::archive::{Connection, UploadOpts};
use profile_session::plan::{ArchiveKind, ArchivePlan};

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

impl ConnFlags {
    pub fn connection(&self) -> Connection {
        Connection {
            endpoint: self.gcs_endpoint.clone(),
            anonymous: self.gcs_anonymous,
            jobs: self.gcs_jobs,
        }
    }
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
    pub fn plan(&self) -> ArchivePlan {
        ArchivePlan {
            upload: self.upload,
            bucket: self.bucket.clone(),
            prefix: self.bucket_prefix.clone(),
            kind: if self.archive_kind == "nightly" {
                ArchiveKind::Nightly
            } else {
                ArchiveKind::Manual
            },
            gcs_endpoint: self.conn.gcs_endpoint.clone(),
            gcs_anonymous: self.conn.gcs_anonymous,
            gcs_jobs: self.conn.gcs_jobs,
        }
    }
}

/// The upload of a run into `target`.
pub fn upload_opts(target: &TargetFlags, conn: &ConnFlags) -> UploadOpts {
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
        conn: conn.connection(),
    }
}

/// Runs `fut` on the command's runtime.
pub fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    crate::util::runtime()?.block_on(fut)
}
