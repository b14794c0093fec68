//! The sglprof artifact store: run folders archived in Google Cloud Storage,
//! findable and verified.
//!
//! A run lives at `gs://<bucket>/<prefix>/{manual,nightly}/<date>/<run-id>/`
//! (RFC-011's layout, see [`RunAddress`]). [`upload_run`] sends every file
//! that is not already there (so an interrupted upload resumes), in
//! parallel, large files by resumable upload, and writes `manifest.json`
//! last: every object with its size, sha256 and crc32c, plus the run
//! metadata. A run folder without a manifest is an incomplete upload.
//! [`download_run`] reads only the manifest (no listing), verifies every
//! file and never replaces a differing local file unless told.
//! [`list_runs`] builds the `ls` table from the manifests.
//!
//! Object bytes go through the official `google-cloud-storage` client.
//! Its listing, metadata and bucket calls are gRPC-only, so those few calls
//! use the JSON API over `reqwest`, against the same endpoint and with the
//! same credentials (see [`Client`]); both work against a local emulator.
//!
//! This crate does not spawn processes, parse traces or know about TPUs; the
//! xtask drives it, and [`remote`] only renders the script a TPU VM runs to
//! upload from there. It does not delete objects or sign URLs.

pub mod baseline;
mod checksum;
mod client;
mod error;
mod layout;
mod manifest;
pub mod remote;
mod transfer;

pub use baseline::{
    BASELINE_RECORD, BaselineAddress, BaselineRecord, PromoteSummary, RunFilter, fetch_baseline,
    last_runs, promote, slug,
};
pub use checksum::{
    FileDigest, Hasher, crc32c_base64, crc32c_from_base64, digest_bytes, digest_file,
};
pub use client::{
    Auth, Client, ClientConfig, DEFAULT_RESUMABLE_THRESHOLD, GOOGLE_ENDPOINT, ObjectMeta,
};
pub use error::{Error, Result};
pub use layout::{
    BucketInsert, DEFAULT_PREFIX, GsUrl, Lifecycle, MANIFEST_NAME, RunAddress, RunKind,
    bucket_create_text, bucket_insert_body, infer_run_identity, lifecycle, utc_now,
    validate_bucket,
};
pub use manifest::{
    MANIFEST_SCHEMA, Manifest, ManifestEntry, RUN_METADATA_PATH, local_files, path_inside,
    printable,
};
pub use transfer::{
    DownloadOptions, DownloadSummary, RunListing, RunSummary, UploadOptions, UploadSummary,
    download_run, human_bytes, list_runs, read_manifest, render_listing, upload_run,
};

/// Creates an artifact bucket with its location and the RFC-011 lifecycle.
pub async fn create_bucket(
    client: &Client,
    project: &str,
    bucket: &str,
    location: &str,
    prefix: &str,
) -> Result<()> {
    validate_bucket(bucket)?;
    let body =
        serde_json::to_value(bucket_insert_body(bucket, location, prefix)).unwrap_or_default();
    client.insert_bucket(project, &body).await
}

/// Sets the RFC-011 lifecycle on an existing bucket.
pub async fn set_lifecycle(client: &Client, bucket: &str, prefix: &str) -> Result<()> {
    validate_bucket(bucket)?;
    let body = serde_json::to_value(lifecycle(prefix)).unwrap_or_default();
    client.patch_bucket(bucket, &body).await
}
