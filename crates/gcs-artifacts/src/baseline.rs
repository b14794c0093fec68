//! Named baselines: an archived run copied, verified, to
//! `<prefix>/baselines/<model>/<accelerator>/<name>/`, so that regression
//! checks compare against a run that no lifecycle rule deletes; and the
//! last N archived runs of a kind, for the history rule.
//!
//! A baseline folder has the layout of a run folder: the run's files, a
//! `baseline.json` saying where it came from, and `manifest.json` written
//! last, so [`crate::download_run`] fetches and verifies it like any run.
//! Promoting again under the same name replaces the manifest (objects the
//! new run lacks stay behind unlisted; this crate deletes nothing).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checksum;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::layout::{GsUrl, MANIFEST_NAME, RunKind, validate_bucket};
use crate::manifest::{Manifest, ManifestEntry};
use crate::transfer::{DownloadOptions, DownloadSummary, RunSummary, download_run, list_runs};

/// The object a baseline folder holds besides the run's files.
pub const BASELINE_RECORD: &str = "baseline.json";

/// Where a named baseline lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineAddress {
    pub bucket: String,
    pub prefix: String,
    /// [`slug`]s of the run metadata's `model` and `hardware`.
    pub model: String,
    pub accelerator: String,
    pub name: String,
}

impl BaselineAddress {
    /// Slugs `model` and `accelerator` (see [`slug`]) and checks the rest.
    pub fn new(
        bucket: &str,
        prefix: &str,
        model: &str,
        accelerator: &str,
        name: &str,
    ) -> Result<BaselineAddress> {
        validate_bucket(bucket)?;
        let plain = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let prefix = prefix.trim_matches('/');
        if !prefix.split('/').all(plain) {
            return Err(Error::invalid(
                "prefix",
                prefix,
                "use non-empty segments of letters, digits, `-`, `_`, `.`",
            ));
        }
        if !plain(name) {
            return Err(Error::invalid(
                "baseline name",
                name,
                "use letters, digits, `-`, `_`, `.` only",
            ));
        }
        let (model, accelerator) = (slug(model), slug(accelerator));
        if model.is_empty() || accelerator.is_empty() {
            return Err(Error::invalid(
                "baseline address",
                name,
                "the model and the accelerator must not be empty",
            ));
        }
        Ok(BaselineAddress {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            model,
            accelerator,
            name: name.to_owned(),
        })
    }

    /// The folder's object-name prefix, with its trailing slash.
    pub fn folder(&self) -> String {
        format!(
            "{}/baselines/{}/{}/{}/",
            self.prefix, self.model, self.accelerator, self.name
        )
    }

    pub fn url(&self) -> GsUrl {
        GsUrl {
            bucket: self.bucket.clone(),
            object: self.folder(),
        }
    }
}

/// A name made safe for one path segment: runs of anything but ASCII
/// letters, digits, `.`, `_` and `-` become one `-`, trimmed at both ends.
/// `Qwen/Qwen3-0.6B` gives `Qwen-Qwen3-0.6B`; `TPU v6e-1 (single chip)`
/// gives `TPU-v6e-1-single-chip`.
pub fn slug(text: &str) -> String {
    let mut res = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            res.push(c);
        } else if !res.ends_with('-') {
            res.push('-');
        }
    }
    let res = res.trim_matches('-');
    if res.chars().all(|c| c == '.') {
        String::new()
    } else {
        res.to_owned()
    }
}

/// `baseline.json`: where a baseline came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineRecord {
    /// The archived run's folder URL.
    pub source: String,
    /// RFC 3339 UTC time of the promotion.
    pub promoted_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoteSummary {
    pub url: String,
    pub objects: usize,
    pub bytes: u64,
}

/// Copies the archived run at `run` to `addr`: downloads it into `scratch`
/// (an empty folder), verifying every file against the run's manifest,
/// uploads each file (the service checks its crc32c, and what it stored is
/// checked), adds `baseline.json`, and writes the manifest last with the
/// run's metadata.
pub async fn promote(
    client: &Client,
    run: &GsUrl,
    addr: &BaselineAddress,
    scratch: &Path,
    created_at: &str,
) -> Result<PromoteSummary> {
    client.require_bucket(&addr.bucket).await?;
    let fetched = download_run(client, run, scratch, DownloadOptions { overwrite: false }).await?;
    let source = fetched.manifest;
    let run_folder = format!("gs://{}/{}", run.bucket, run.manifest().folder());
    let record = BaselineRecord {
        source: run_folder,
        promoted_at: created_at.to_owned(),
    };
    let record_bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    let folder = addr.folder();
    let mut entries = Vec::with_capacity(source.objects.len() + 1);
    let bar = client.progress_bar(source.total_bytes, "promoting");
    for entry in &source.objects {
        if entry.path == BASELINE_RECORD {
            continue;
        }
        let path = scratch.join(&entry.path);
        let digest = checksum::digest_file(&path)?;
        if digest.sha256 != entry.sha256 {
            return Err(Error::ChecksumMismatch {
                object: path.display().to_string(),
                algorithm: "sha256",
                expected: entry.sha256.clone(),
                actual: digest.sha256,
            });
        }
        client
            .upload_file(
                &addr.bucket,
                &format!("{folder}{}", entry.path),
                &path,
                &digest,
                &bar,
            )
            .await?;
        entries.push(entry.clone());
    }
    bar.finish_and_clear();
    client
        .upload_bytes(
            &addr.bucket,
            &format!("{folder}{BASELINE_RECORD}"),
            record_bytes.clone(),
        )
        .await?;
    entries.push(ManifestEntry::new(
        BASELINE_RECORD,
        &checksum::digest_bytes(&record_bytes),
    ));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        created_at: created_at.to_owned(),
        total_bytes: entries.iter().map(|it| it.size).sum(),
        objects: entries,
        ..source
    };
    client
        .upload_bytes(
            &addr.bucket,
            &format!("{folder}{MANIFEST_NAME}"),
            manifest.to_json().into_bytes(),
        )
        .await?;
    Ok(PromoteSummary {
        url: addr.url().to_string(),
        objects: manifest.objects.len(),
        bytes: manifest.total_bytes,
    })
}

/// Downloads the baseline at `addr` into `dir`, every file verified
/// against its manifest.
pub async fn fetch_baseline(
    client: &Client,
    addr: &BaselineAddress,
    dir: &Path,
) -> Result<DownloadSummary> {
    download_run(
        client,
        &addr.url(),
        dir,
        DownloadOptions { overwrite: false },
    )
    .await
}

/// What the history rule compares with: the runs of one configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub model: Option<String>,
    pub hardware: Option<String>,
    pub endpoint: Option<String>,
}

/// The `n` newest archived runs of `kind` under `prefix` whose run metadata
/// matches `filter` exactly (a filter field left `None` matches anything),
/// newest first, skipping `exclude` (the candidate's own folder URL).
pub async fn last_runs(
    client: &Client,
    bucket: &str,
    prefix: &str,
    kind: RunKind,
    filter: &RunFilter,
    exclude: Option<&str>,
    n: usize,
) -> Result<Vec<RunSummary>> {
    let listing = list_runs(client, bucket, prefix).await?;
    let same = |want: &Option<String>, got: &Option<String>| {
        want.as_ref().is_none_or(|w| got.as_ref() == Some(w))
    };
    let mut runs: Vec<RunSummary> = listing
        .runs
        .into_iter()
        .filter(|r| {
            r.kind == kind.as_str()
                && same(&filter.model, &r.model)
                && same(&filter.hardware, &r.hardware)
                && same(&filter.endpoint, &r.endpoint)
                && exclude
                    .is_none_or(|url| url.trim_end_matches('/') != r.url.trim_end_matches('/'))
        })
        .collect();
    // Newest first: by date, then by run id (ids start with the time).
    runs.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.run_id.cmp(&a.run_id)));
    runs.truncate(n);
    Ok(runs)
}
