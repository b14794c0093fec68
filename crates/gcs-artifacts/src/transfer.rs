//! Whole-run operations: upload a run folder, download it back, list the
//! archived runs. Transfers run in parallel, bounded by
//! [`ClientConfig::concurrency`](crate::ClientConfig::concurrency).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checksum::{self, FileDigest};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::layout::{GsUrl, MANIFEST_NAME, RunAddress};
use crate::manifest::{
    self, Manifest, ManifestEntry, PART_SUFFIX, RUN_METADATA_PATH, path_inside, printable,
};
use crate::remote::RemoteFile;

#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Replace an archived run whose manifest lists different content.
    pub overwrite: bool,
    /// Files already uploaded into the run folder by someone else (the TPU
    /// VM, see [`crate::remote`]); checked and listed in the manifest.
    pub remote_files: Vec<RemoteFile>,
    /// RFC 3339 time recorded in the manifest.
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSummary {
    pub url: String,
    pub uploaded: usize,
    /// Objects that were already there with the same size and crc32c.
    pub skipped: usize,
    pub bytes_uploaded: u64,
    /// The run was already archived with this exact content.
    pub already_complete: bool,
}

/// Uploads `run_dir` to `addr`: every file not already there with the same
/// size and crc32c (that is how an interrupted upload resumes), then
/// `manifest.json`, last.
pub async fn upload_run(
    client: &Client,
    run_dir: &Path,
    addr: &RunAddress,
    opts: &UploadOptions,
) -> Result<UploadSummary> {
    client.require_bucket(&addr.bucket).await?;
    let run_metadata = read_run_metadata(run_dir)?;

    let files = manifest::local_files(run_dir)?;
    let total: u64 = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = client.progress_bar(total, "hashing");
    let digests = run_bounded(client.config().concurrency, files.clone(), {
        let bar = bar.clone();
        move |(rel, path)| {
            let bar = bar.clone();
            async move {
                let digest = tokio::task::spawn_blocking(move || checksum::digest_file(&path))
                    .await
                    .map_err(|e| Error::Service {
                        action: "hash",
                        target: rel.clone(),
                        detail: e.to_string(),
                    })??;
                bar.inc(digest.size);
                Ok((rel, digest))
            }
        }
    })
    .await?;
    bar.finish_and_clear();

    let local_paths: BTreeSet<&str> = files.iter().map(|(rel, _)| rel.as_str()).collect();
    let mut entries: Vec<ManifestEntry> = digests
        .iter()
        .map(|(rel, d)| ManifestEntry::new(rel, d))
        .collect();
    for remote in &opts.remote_files {
        if local_paths.contains(remote.path.as_str()) {
            continue;
        }
        let name = addr.object_name(&remote.path);
        let meta = client
            .object_meta(&addr.bucket, &name)
            .await?
            .ok_or_else(|| Error::MissingObject {
                url: format!("gs://{}/{name}", addr.bucket),
            })?;
        if meta.size != remote.size {
            return Err(Error::ChecksumMismatch {
                object: format!("gs://{}/{name}", addr.bucket),
                algorithm: "size",
                expected: remote.size.to_string(),
                actual: meta.size.to_string(),
            });
        }
        entries.push(ManifestEntry {
            path: remote.path.clone(),
            size: remote.size,
            sha256: remote.sha256.clone(),
            crc32c: meta.crc32c,
        });
    }
    let manifest = Manifest::new(addr, &opts.created_at, entries, run_metadata);

    let url = addr.url();
    if let Some(bytes) = client
        .read_bytes(&addr.bucket, &addr.manifest_name())
        .await?
    {
        let old = Manifest::from_json(&format!("{url}{MANIFEST_NAME}"), &bytes)?;
        if old.same_objects(&manifest) {
            return Ok(UploadSummary {
                url,
                uploaded: 0,
                skipped: digests.len(),
                bytes_uploaded: 0,
                already_complete: true,
            });
        }
        if !opts.overwrite {
            return Err(Error::RunExists { url });
        }
    }

    let bar = client.progress_bar(total, "uploading");
    let outcomes = run_bounded(client.config().concurrency, digests, {
        let client = client.clone();
        let addr = addr.clone();
        let root = run_dir.to_path_buf();
        let bar = bar.clone();
        move |(rel, digest): (String, FileDigest)| {
            let client = client.clone();
            let name = addr.object_name(&rel);
            let bucket = addr.bucket.clone();
            let path = root.join(&rel);
            let bar = bar.clone();
            async move {
                if let Some(meta) = client.object_meta(&bucket, &name).await?
                    && meta.size == digest.size
                    && meta.crc32c == digest.crc32c
                {
                    bar.inc(digest.size);
                    return Ok(None);
                }
                client
                    .upload_file(&bucket, &name, &path, &digest, &bar)
                    .await?;
                Ok(Some(digest.size))
            }
        }
    })
    .await?;
    bar.finish_and_clear();

    client
        .upload_bytes(
            &addr.bucket,
            &addr.manifest_name(),
            manifest.to_json().into_bytes(),
        )
        .await?;
    let uploaded: Vec<u64> = outcomes.iter().flatten().copied().collect();
    Ok(UploadSummary {
        url,
        uploaded: uploaded.len(),
        skipped: outcomes.len() - uploaded.len(),
        bytes_uploaded: uploaded.iter().sum(),
        already_complete: false,
    })
}

/// `inputs/run_metadata.json` as JSON, when the run has one.
fn read_run_metadata(run_dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = run_dir.join(RUN_METADATA_PATH);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::BadRunMetadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    Ok(Some(value))
}

#[derive(Clone, Copy, Debug)]
pub struct DownloadOptions {
    /// Replace local files whose content differs from the archive.
    pub overwrite: bool,
}

#[derive(Clone, Debug)]
pub struct DownloadSummary {
    pub manifest: Manifest,
    pub downloaded: usize,
    /// Local files that already had the archived sha256.
    pub already_present: usize,
    pub bytes_downloaded: u64,
}

/// Reads and checks the manifest of the run at `url` (a run folder or its
/// `manifest.json`).
pub async fn read_manifest(client: &Client, url: &GsUrl) -> Result<(GsUrl, Manifest)> {
    let murl = url.manifest();
    let Some(bytes) = client.read_bytes(&murl.bucket, &murl.object).await? else {
        client.require_bucket(&murl.bucket).await?;
        return Err(Error::NoManifest {
            url: format!("gs://{}/{}", murl.bucket, murl.folder()),
        });
    };
    let manifest = Manifest::from_json(&murl.to_string(), &bytes)?;
    Ok((murl, manifest))
}

/// Downloads the run at `url` into `dir`: reads the manifest (no listing),
/// refuses to touch local files that differ unless told, and writes every
/// file through a temporary name that is renamed only once its sha256
/// matches the manifest. The manifest itself is written last.
pub async fn download_run(
    client: &Client,
    url: &GsUrl,
    dir: &Path,
    opts: DownloadOptions,
) -> Result<DownloadSummary> {
    let (murl, manifest) = read_manifest(client, url).await?;
    let folder = murl.folder().to_owned();
    let manifest_bytes = manifest_bytes_of(client, &murl).await?;

    // Decide per file before transferring anything, so that a refusal
    // leaves the folder untouched.
    let checks = run_bounded(client.config().concurrency, manifest.objects.clone(), {
        let dir = dir.to_path_buf();
        move |entry: ManifestEntry| {
            let path = path_inside(&dir, &entry.path);
            async move {
                let path = path?;
                let local = tokio::task::spawn_blocking(move || local_digest(&path))
                    .await
                    .map_err(|e| Error::Service {
                        action: "hash",
                        target: entry.path.clone(),
                        detail: e.to_string(),
                    })??;
                Ok((entry, local))
            }
        }
    })
    .await?;
    let mut todo = Vec::new();
    let mut already_present = 0;
    for (entry, local) in checks {
        match local {
            None => todo.push(entry),
            Some(d) if d.sha256 == entry.sha256 && d.size == entry.size => already_present += 1,
            Some(_) if opts.overwrite => todo.push(entry),
            Some(d) => {
                return Err(Error::LocalFileDiffers {
                    path: dir.join(&entry.path),
                    object: format!("gs://{}/{folder}{}", murl.bucket, entry.path),
                    local: d.sha256,
                    archived: entry.sha256,
                });
            }
        }
    }
    let manifest_path = path_inside(dir, MANIFEST_NAME)?;
    let manifest_digest = checksum::digest_bytes(&manifest_bytes);
    if let Some(d) = local_digest(&manifest_path)?
        && d.sha256 != manifest_digest.sha256
        && !opts.overwrite
    {
        return Err(Error::LocalFileDiffers {
            path: manifest_path,
            object: murl.to_string(),
            local: d.sha256,
            archived: manifest_digest.sha256,
        });
    }

    let total: u64 = todo.iter().map(|e| e.size).sum();
    let bar = client.progress_bar(total, "downloading");
    let sizes = run_bounded(client.config().concurrency, todo, {
        let client = client.clone();
        let dir = dir.to_path_buf();
        let bucket = murl.bucket.clone();
        let folder = folder.clone();
        let bar = bar.clone();
        move |entry: ManifestEntry| {
            let client = client.clone();
            let bucket = bucket.clone();
            let name = format!("{folder}{}", entry.path);
            let dest = path_inside(&dir, &entry.path);
            let bar = bar.clone();
            async move {
                let dest = dest?;
                fetch_verified(&client, &bucket, &name, &entry, &dest, &bar).await?;
                Ok(entry.size)
            }
        }
    })
    .await?;
    bar.finish_and_clear();

    write_atomically(&manifest_path, &manifest_bytes)?;
    Ok(DownloadSummary {
        manifest,
        downloaded: sizes.len(),
        already_present,
        bytes_downloaded: sizes.iter().sum(),
    })
}

async fn manifest_bytes_of(client: &Client, murl: &GsUrl) -> Result<Vec<u8>> {
    client
        .read_bytes(&murl.bucket, &murl.object)
        .await?
        .ok_or_else(|| Error::NoManifest {
            url: format!("gs://{}/{}", murl.bucket, murl.folder()),
        })
}

async fn fetch_verified(
    client: &Client,
    bucket: &str,
    name: &str,
    entry: &ManifestEntry,
    dest: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| Error::io("create folder", parent, e))?;
    let part = part_path(dest);
    let got = match client.download_to(bucket, name, &part, bar).await {
        Ok(got) => got,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    let mismatch = if got.sha256 != entry.sha256 {
        Some(("sha256", entry.sha256.clone(), got.sha256))
    } else if got.size != entry.size {
        Some(("size", entry.size.to_string(), got.size.to_string()))
    } else {
        None
    };
    if let Some((algorithm, expected, actual)) = mismatch {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Error::ChecksumMismatch {
            object: format!("gs://{bucket}/{name}"),
            algorithm,
            expected,
            actual,
        });
    }
    tokio::fs::rename(&part, dest)
        .await
        .map_err(|e| Error::io("rename into", dest, e))
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(PART_SUFFIX);
    dest.with_file_name(name)
}

fn local_digest(path: &Path) -> Result<Option<FileDigest>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => checksum::digest_file(path).map(Some),
        Ok(_) => Err(Error::invalid(
            "download target",
            &path.display().to_string(),
            "it exists and is not a file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create folder", parent, e))?;
    }
    let part = part_path(path);
    std::fs::write(&part, bytes).map_err(|e| Error::io("write", &part, e))?;
    std::fs::rename(&part, path).map_err(|e| Error::io("rename into", path, e))
}

/// One archived run, as `ls` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub url: String,
    pub kind: String,
    pub date: String,
    pub run_id: String,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    pub hardware: Option<String>,
    pub objects: usize,
    pub total_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunListing {
    /// Newest date first, then by run id.
    pub runs: Vec<RunSummary>,
    /// Run folders with objects but no manifest: interrupted uploads.
    pub incomplete: Vec<String>,
    /// Manifests that could not be read, with the reason.
    pub unreadable: Vec<String>,
}

impl RunListing {
    /// Keeps the runs of `kind`, whose model contains `model` and whose
    /// endpoint is `endpoint`, each when given.
    pub fn retain_matching(
        &mut self,
        kind: Option<&str>,
        model: Option<&str>,
        endpoint: Option<&str>,
    ) {
        self.runs.retain(|r| {
            kind.is_none_or(|k| r.kind == k)
                && model.is_none_or(|m| r.model.as_deref().is_some_and(|x| x.contains(m)))
                && endpoint.is_none_or(|e| r.endpoint.as_deref() == Some(e))
        });
    }
}

/// Lists the runs under `gs://bucket/prefix/` from their manifests.
pub async fn list_runs(client: &Client, bucket: &str, prefix: &str) -> Result<RunListing> {
    let prefix = format!("{}/", prefix.trim_matches('/'));
    let names = client.list_names(bucket, &prefix).await?;
    let mut folders = BTreeSet::new();
    let mut manifests = Vec::new();
    for name in &names {
        let rest = &name[prefix.len().min(name.len())..];
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        if parts.len() == 4 && matches!(parts[0], "manual" | "nightly") {
            let folder = format!("{prefix}{}/{}/{}/", parts[0], parts[1], parts[2]);
            if parts[3] == MANIFEST_NAME {
                manifests.push(folder.clone());
            }
            folders.insert(folder);
        }
    }
    let manifest_set: BTreeSet<&String> = manifests.iter().collect();
    let incomplete = folders
        .iter()
        .filter(|f| !manifest_set.contains(f))
        .map(|f| format!("gs://{bucket}/{f}"))
        .collect();

    let read = run_bounded(client.config().concurrency, manifests, {
        let client = client.clone();
        let bucket = bucket.to_owned();
        move |folder: String| {
            let client = client.clone();
            let url = GsUrl {
                bucket: bucket.clone(),
                object: format!("{folder}{MANIFEST_NAME}"),
            };
            async move { Ok((folder, read_manifest(&client, &url).await)) }
        }
    })
    .await?;
    let mut listing = RunListing {
        incomplete,
        ..RunListing::default()
    };
    for (folder, res) in read {
        let url = format!("gs://{bucket}/{folder}");
        match res {
            Ok((_, m)) => listing.runs.push(RunSummary {
                url,
                model: m.metadata_field("model").map(str::to_owned),
                endpoint: m.metadata_field("endpoint").map(str::to_owned),
                hardware: m.metadata_field("hardware").map(str::to_owned),
                kind: m.kind,
                date: m.date,
                run_id: m.run_id,
                objects: m.objects.len(),
                total_bytes: m.total_bytes,
            }),
            Err(e) => listing.unreadable.push(format!("{url}: {e}")),
        }
    }
    listing
        .runs
        .sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.run_id.cmp(&b.run_id)));
    Ok(listing)
}

/// `ls` output: one aligned row per run, then the incomplete folders.
pub fn render_listing(listing: &RunListing) -> String {
    let header = [
        "DATE", "KIND", "RUN", "MODEL", "ENDPOINT", "FILES", "SIZE", "URL",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_owned)];
    // Manifest strings are anyone's who can write to the bucket: no
    // terminal escapes or line breaks reach the terminal.
    for r in &listing.runs {
        rows.push([
            printable(&r.date),
            printable(&r.kind),
            printable(&r.run_id),
            printable(r.model.as_deref().unwrap_or("-")),
            printable(r.endpoint.as_deref().unwrap_or("-")),
            r.objects.to_string(),
            human_bytes(r.total_bytes),
            printable(&r.url),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut res = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                // Padded by hand: `format!`'s width stops at 65535 and
                // panics beyond it, and a manifest string can be longer.
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        res.push_str(line.trim_end());
        res.push('\n');
    }
    if listing.runs.is_empty() {
        res.push_str("(no archived runs)\n");
    }
    for url in &listing.incomplete {
        res.push_str(&format!(
            "incomplete (no manifest.json): {}\n",
            printable(url)
        ));
    }
    for problem in &listing.unreadable {
        res.push_str(&format!("unreadable: {}\n", printable(problem)));
    }
    res
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Runs `f` over `items` with at most `limit` in flight and returns the
/// results in input order. After the first error no new item starts, but
/// the ones in flight run to their end, so each can clean up after itself
/// (a cancelled download would leave its `.sglprof-part` file behind); then
/// the first error is returned.
async fn run_bounded<T, R, F, Fut>(limit: usize, items: Vec<T>, f: F) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut set = JoinSet::new();
    let n = items.len();
    for (idx, item) in items.into_iter().enumerate() {
        let fut = f(item);
        let sem = sem.clone();
        let failed = failed.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return (idx, None);
            }
            let out = fut.await;
            if out.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            (idx, Some(out))
        });
    }
    let mut res: Vec<Option<R>> = (0..n).map(|_| None).collect();
    let mut first_err = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((idx, Some(Ok(out)))) => res[idx] = Some(out),
            Ok((_, Some(Err(err)))) => {
                first_err.get_or_insert(err);
            }
            Ok((_, None)) => {}
            Err(err) => {
                first_err.get_or_insert(Error::Service {
                    action: "run",
                    target: "a transfer task".to_owned(),
                    detail: err.to_string(),
                });
            }
        }
    }
    match first_err {
        Some(err) => Err(err),
        None => Ok(res.into_iter().flatten().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_table() {
        let run = |date: &str, id: &str, model: Option<&str>| RunSummary {
            url: format!("gs://sglprof-runs/sglang-profiles/manual/{date}/{id}/"),
            kind: "manual".to_owned(),
            date: date.to_owned(),
            run_id: id.to_owned(),
            model: model.map(str::to_owned),
            endpoint: model.map(|_| "/v1/score".to_owned()),
            hardware: None,
            objects: 7,
            total_bytes: 505_123_456,
        };
        let listing = RunListing {
            runs: vec![
                run("2026-02-06", "r2", Some("Qwen/Qwen3-0.6B")),
                run("2026-02-05", "r1", None),
            ],
            incomplete: vec![
                "gs://sglprof-runs/sglang-profiles/nightly/2026-02-07/abc1234/".to_owned(),
            ],
            unreadable: vec![],
        };
        insta::assert_snapshot!(render_listing(&listing));
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(87_000_000), "87.0 MB");
    }
}
