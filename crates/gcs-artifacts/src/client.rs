//! The connection to one GCS endpoint: object bytes go through the official
//! `google-cloud-storage` client (multipart below the resumable threshold,
//! resumable above), and the few JSON API calls that client only offers over
//! gRPC (object metadata, listing, bucket get/insert/patch) go through
//! `reqwest`. Both use the same endpoint and the same credentials.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::{AccessTokenCredentials, Credentials};
use google_cloud_gax::retry_policy::{Aip194Strict, NeverRetry, RetryPolicyArg, RetryPolicyExt};
use google_cloud_storage::client::Storage;
use google_cloud_storage::streaming_source::{Seek, SizeHint, StreamingSource};
use indicatif::ProgressBar;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::checksum::{self, FileDigest, Hasher};
use crate::error::{Error, Result, no_credentials, one_line};

/// The production endpoint of the JSON API.
pub const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";

/// The official client's default: single-shot uploads below, resumable at
/// or above.
pub const DEFAULT_RESUMABLE_THRESHOLD: usize = 16 << 20;

/// How to connect. There is deliberately no `Default`: production and the
/// emulator differ in every field that matters.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// [`GOOGLE_ENDPOINT`], or an emulator's `http://host:port`.
    pub endpoint: String,
    pub auth: Auth,
    /// Attempts per request; 1 disables retries (tests: a wrong endpoint
    /// fails at once instead of looking like a hang).
    pub max_attempts: u32,
    /// Files of at least this many bytes use a resumable upload.
    pub resumable_threshold: usize,
    /// Transfers in flight at once.
    pub concurrency: usize,
    /// Draw progress bars on stderr (they stay hidden when it is not a
    /// terminal anyway).
    pub progress: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `gcloud auth application-default login`, or the metadata server.
    ApplicationDefault,
    /// No credentials, for emulators.
    Anonymous,
}

/// Size and crc32c of an object, from its JSON API metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub crc32c: String,
}

/// Cheap to clone; clones share the connection pools.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    storage: Storage,
    http: reqwest::Client,
    token: Option<AccessTokenCredentials>,
}

/// Characters kept as they are in an object name inside a URL path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Client {
    pub async fn new(config: ClientConfig) -> Result<Client> {
        // reqwest and the storage client have no TLS provider of their own
        // in this workspace; one already installed stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        let config = ClientConfig { endpoint, ..config };
        let (token, credentials): (Option<AccessTokenCredentials>, Credentials) = match config.auth
        {
            Auth::Anonymous => (
                None,
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            ),
            Auth::ApplicationDefault => {
                let creds = google_cloud_auth::credentials::Builder::default()
                    .build_access_token_credentials()
                    .map_err(|e| no_credentials(&e))?;
                (Some(creds.clone()), creds.into())
            }
        };
        let retry: RetryPolicyArg = if config.max_attempts <= 1 {
            NeverRetry.into()
        } else {
            Aip194Strict.with_attempt_limit(config.max_attempts).into()
        };
        let storage = Storage::builder()
            .with_endpoint(config.endpoint.clone())
            .with_credentials(credentials)
            .with_retry_policy(retry)
            .with_resumable_upload_threshold(config.resumable_threshold)
            .build()
            .await
            .map_err(|e| Error::Service {
                action: "connect to",
                target: config.endpoint.clone(),
                detail: one_line(&e),
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Service {
                action: "set up HTTP for",
                target: config.endpoint.clone(),
                detail: one_line(&e),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                storage,
                http,
                token,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn endpoint(&self) -> &str {
        &self.inner.config.endpoint
    }

    pub(crate) fn progress_bar(&self, total: u64, message: &str) -> ProgressBar {
        if !self.inner.config.progress {
            return ProgressBar::hidden();
        }
        let bar =
            ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        bar
    }

    // ---- JSON API (reqwest) ----

    /// Sends one JSON API request, retrying connection failures, 429 and
    /// 5xx answers up to `max_attempts`. Returns the status and body.
    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
        action: &'static str,
        target: &str,
    ) -> Result<(u16, bytes::Bytes)> {
        let url = format!("{}{path_and_query}", self.endpoint());
        let attempts = self.inner.config.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.inner.http.request(method.clone(), &url);
            if let Some(creds) = &self.inner.token {
                let token = creds.access_token().await.map_err(|e| no_credentials(&e))?;
                req = req.bearer_auth(token.token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let retry_wait = Duration::from_millis(500 << attempt.min(6));
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if (status == 429 || status >= 500) && attempt < attempts {
                        tokio::time::sleep(retry_wait).await;
                        continue;
                    }
                    let bytes = resp.bytes().await.map_err(|e| Error::Service {
                        action,
                        target: target.to_owned(),
                        detail: one_line(&e),
                    })?;
                    return Ok((status, bytes));
                }
                Err(e) if attempt < attempts && (e.is_connect() || e.is_timeout()) => {
                    tokio::time::sleep(retry_wait).await;
                }
                Err(e) => {
                    return Err(Error::Service {
                        action,
                        target: target.to_owned(),
                        detail: format!("{} ({})", one_line(&e), self.endpoint()),
                    });
                }
            }
        }
    }

    /// Turns a non-success answer into an error.
    fn status_error(&self, status: u16, body: &[u8], action: &'static str, target: &str) -> Error {
        let detail = error_message(body);
        if status == 401 || status == 403 {
            return Error::PermissionDenied {
                target: target.to_owned(),
                status,
                endpoint: self.endpoint().to_owned(),
                detail,
            };
        }
        Error::Service {
            action,
            target: target.to_owned(),
            detail: format!("{status} from {}: {detail}", self.endpoint()),
        }
    }

    /// The object's size and crc32c, or `None` when it does not exist.
    pub async fn object_meta(&self, bucket: &str, name: &str) -> Result<Option<ObjectMeta>> {
        let target = format!("gs://{bucket}/{name}");
        let path = format!("/storage/v1/b/{}/o/{}", enc(bucket), enc(name));
        let (status, body) = self
            .send(reqwest::Method::GET, &path, None, "stat", &target)
            .await?;
        match status {
            200 => {
                #[derive(Deserialize)]
                struct Raw {
                    size: String,
                    #[serde(default)]
                    crc32c: String,
                }
                let raw: Raw = serde_json::from_slice(&body).map_err(|e| Error::Service {
                    action: "stat",
                    target: target.clone(),
                    detail: format!("unexpected answer: {e}"),
                })?;
                let size = raw.size.parse().map_err(|_| Error::Service {
                    action: "stat",
                    target: target.clone(),
                    detail: format!("unexpected size `{}`", raw.size),
                })?;
                Ok(Some(ObjectMeta {
                    size,
                    crc32c: raw.crc32c,
                }))
            }
            404 => Ok(None),
            _ => Err(self.status_error(status, &body, "stat", &target)),
        }
    }

    /// Whether the bucket exists. A 403 counts as "exists": writers often
    /// may not read bucket metadata, and the object calls will tell.
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let path = format!("/storage/v1/b/{}", enc(bucket));
        let target = format!("bucket {bucket}");
        let (status, body) = self
            .send(reqwest::Method::GET, &path, None, "look up", &target)
            .await?;
        match status {
            200 | 403 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(status, &body, "look up", &target)),
        }
    }

    pub async fn require_bucket(&self, bucket: &str) -> Result<()> {
        if self.bucket_exists(bucket).await? {
            Ok(())
        } else {
            Err(self.bucket_not_found(bucket))
        }
    }

    pub(crate) fn bucket_not_found(&self, bucket: &str) -> Error {
        Error::BucketNotFound {
            bucket: bucket.to_owned(),
            endpoint: self.endpoint().to_owned(),
        }
    }

    /// Names of all objects under `prefix`, in the order the service gives.
    pub async fn list_names(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            items: Vec<Item>,
            #[serde(rename = "nextPageToken")]
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Item {
            name: String,
        }
        let target = format!("gs://{bucket}/{prefix}");
        let mut res = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/storage/v1/b/{}/o?prefix={}&fields=items(name),nextPageToken&maxResults=1000",
                enc(bucket),
                enc(prefix)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&pageToken={}", enc(t)));
            }
            let (status, body) = self
                .send(reqwest::Method::GET, &path, None, "list", &target)
                .await?;
            match status {
                200 => {}
                404 => return Err(self.bucket_not_found(bucket)),
                _ => return Err(self.status_error(status, &body, "list", &target)),
            }
            let page: Page = serde_json::from_slice(&body).map_err(|e| Error::Service {
                action: "list",
                target: target.clone(),
                detail: format!("unexpected answer: {e}"),
            })?;
            res.extend(page.items.into_iter().map(|i| i.name));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(res),
            }
        }
    }

    /// `buckets.insert` in `project` with the given body.
    pub async fn insert_bucket(&self, project: &str, body: &serde_json::Value) -> Result<()> {
        let bucket = body
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned();
        let target = format!("bucket {bucket}");
        let path = format!("/storage/v1/b?project={}", enc(project));
        let (status, resp) = self
            .send(reqwest::Method::POST, &path, Some(body), "create", &target)
            .await?;
        match status {
            200 => Ok(()),
            409 => Err(Error::BucketExists {
                bucket,
                endpoint: self.endpoint().to_owned(),
            }),
            _ => Err(self.status_error(status, &resp, "create", &target)),
        }
    }

    /// `buckets.patch` of an existing bucket.
    pub async fn patch_bucket(&self, bucket: &str, body: &serde_json::Value) -> Result<()> {
        let target = format!("bucket {bucket}");
        let path = format!("/storage/v1/b/{}", enc(bucket));
        let (status, resp) = self
            .send(reqwest::Method::PATCH, &path, Some(body), "update", &target)
            .await?;
        match status {
            200 => Ok(()),
            404 => Err(self.bucket_not_found(bucket)),
            _ => Err(self.status_error(status, &resp, "update", &target)),
        }
    }

    // ---- object bytes (google-cloud-storage) ----

    fn gax_error(
        &self,
        err: google_cloud_storage::Error,
        action: &'static str,
        target: &str,
    ) -> Error {
        if err.is_authentication() {
            return no_credentials(&err);
        }
        match err.http_status_code() {
            Some(status @ (401 | 403)) => Error::PermissionDenied {
                target: target.to_owned(),
                status,
                endpoint: self.endpoint().to_owned(),
                detail: err
                    .http_payload()
                    .map(|b| error_message(b))
                    .unwrap_or_else(|| one_line(&err)),
            },
            _ => Error::Service {
                action,
                target: target.to_owned(),
                detail: one_line(&err),
            },
        }
    }

    /// Uploads `path` as `bucket/name`, telling the service its crc32c so
    /// that it rejects corrupted bytes, and checks what the service stored.
    pub async fn upload_file(
        &self,
        bucket: &str,
        name: &str,
        path: &Path,
        expected: &FileDigest,
        bar: &ProgressBar,
    ) -> Result<ObjectMeta> {
        let target = format!("gs://{bucket}/{name}");
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::io("open", path, e))?;
        let source = ProgressFile {
            file,
            size: expected.size,
            pos: 0,
            bar: bar.clone(),
        };
        let crc = checksum::crc32c_from_base64(&expected.crc32c).unwrap_or_default();
        let written = self
            .inner
            .storage
            .write_object(format!("projects/_/buckets/{bucket}"), name, source)
            .set_content_type(content_type(name))
            .with_known_crc32c(crc)
            .with_idempotency(true)
            .send_unbuffered()
            .await;
        self.verify_written(written, bucket, &target, expected)
    }

    /// Uploads a small in-memory object (the manifest).
    pub async fn upload_bytes(
        &self,
        bucket: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<ObjectMeta> {
        let target = format!("gs://{bucket}/{name}");
        let digest = checksum::digest_bytes(&bytes);
        let written = self
            .inner
            .storage
            .write_object(
                format!("projects/_/buckets/{bucket}"),
                name,
                bytes::Bytes::from(bytes),
            )
            .set_content_type(content_type(name))
            .with_known_crc32c(checksum::crc32c_from_base64(&digest.crc32c).unwrap_or_default())
            .with_idempotency(true)
            .send_unbuffered()
            .await;
        self.verify_written(written, bucket, &target, &digest)
    }

    /// Turns the answer to a write into the stored object's size and crc32c,
    /// checked against what was sent.
    fn verify_written(
        &self,
        written: std::result::Result<
            google_cloud_storage::model::Object,
            google_cloud_storage::Error,
        >,
        bucket: &str,
        target: &str,
        expected: &FileDigest,
    ) -> Result<ObjectMeta> {
        let object = match written {
            Ok(object) => object,
            Err(e) if e.http_status_code() == Some(404) => {
                return Err(self.bucket_not_found(bucket));
            }
            Err(e) => return Err(self.gax_error(e, "upload", target)),
        };
        let stored = ObjectMeta {
            size: u64::try_from(object.size).unwrap_or_default(),
            crc32c: object
                .checksums
                .and_then(|c| c.crc32c)
                .map(checksum::crc32c_base64)
                .unwrap_or_default(),
        };
        check_stored(target, expected, &stored)?;
        Ok(stored)
    }

    /// Reads a whole (small) object; `None` when it does not exist.
    pub async fn read_bytes(&self, bucket: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let target = format!("gs://{bucket}/{name}");
        let mut resp = match self
            .inner
            .storage
            .read_object(format!("projects/_/buckets/{bucket}"), name)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(self.gax_error(e, "download", &target)),
        };
        let mut res = Vec::new();
        while let Some(chunk) = resp.next().await {
            let chunk = chunk.map_err(|e| self.gax_error(e, "download", &target))?;
            res.extend_from_slice(&chunk);
        }
        Ok(Some(res))
    }

    /// Streams `bucket/name` into `dest` (created or truncated) and returns
    /// the digests of what was written.
    pub async fn download_to(
        &self,
        bucket: &str,
        name: &str,
        dest: &Path,
        bar: &ProgressBar,
    ) -> Result<FileDigest> {
        let target = format!("gs://{bucket}/{name}");
        let mut resp = match self
            .inner
            .storage
            .read_object(format!("projects/_/buckets/{bucket}"), name)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.http_status_code() == Some(404) => {
                return Err(Error::MissingObject { url: target });
            }
            Err(e) => return Err(self.gax_error(e, "download", &target)),
        };
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Error::io("create", dest, e))?;
        let mut hasher = Hasher::new();
        while let Some(chunk) = resp.next().await {
            let chunk = chunk.map_err(|e| self.gax_error(e, "download", &target))?;
            hasher.update(&chunk);
            bar.inc(chunk.len() as u64);
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io("write", dest, e))?;
        }
        file.flush()
            .await
            .map_err(|e| Error::io("write", dest, e))?;
        file.sync_all()
            .await
            .map_err(|e| Error::io("sync", dest, e))?;
        Ok(hasher.finish())
    }
}

fn check_stored(target: &str, expected: &FileDigest, stored: &ObjectMeta) -> Result<()> {
    if stored.crc32c != expected.crc32c {
        return Err(Error::ChecksumMismatch {
            object: target.to_owned(),
            algorithm: "crc32c",
            expected: expected.crc32c.clone(),
            actual: stored.crc32c.clone(),
        });
    }
    if stored.size != expected.size {
        return Err(Error::ChecksumMismatch {
            object: target.to_owned(),
            algorithm: "size",
            expected: expected.size.to_string(),
            actual: stored.size.to_string(),
        });
    }
    Ok(())
}

fn enc(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// The `error.message` of a JSON API error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    let text = parsed.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.trim().replace('\n', " ");
    if text.len() > 300 {
        format!("{}...", &text[..text.floor_char_boundary(300)])
    } else {
        text
    }
}

/// Content types for the files a run folder holds. Compressed traces are
/// stored as `application/gzip` without `Content-Encoding`, so that GCS
/// never transcodes them and downloads stay byte-identical.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    match ext {
        "json" => "application/json",
        "md" => "text/markdown",
        "txt" | "log" | "csv" | "tsv" => "text/plain",
        "gz" => "application/gzip",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "html" => "text/html",
        _ => "application/octet-stream",
    }
}

/// A file as an upload source that advances a progress bar.
struct ProgressFile {
    file: tokio::fs::File,
    size: u64,
    pos: u64,
    bar: ProgressBar,
}

impl StreamingSource for ProgressFile {
    type Error = std::io::Error;

    async fn next(&mut self) -> Option<Result<bytes::Bytes, Self::Error>> {
        let mut buf = vec![0u8; 1 << 20];
        match self.file.read(&mut buf).await {
            Err(e) => Some(Err(e)),
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                self.pos += n as u64;
                self.bar.inc(n as u64);
                Some(Ok(bytes::Bytes::from(buf)))
            }
        }
    }

    async fn size_hint(&self) -> Result<SizeHint, Self::Error> {
        Ok(SizeHint::with_exact(self.size))
    }
}

impl Seek for ProgressFile {
    type Error = std::io::Error;

    async fn seek(&mut self, offset: u64) -> Result<(), Self::Error> {
        use tokio::io::AsyncSeekExt;
        self.file.seek(std::io::SeekFrom::Start(offset)).await?;
        if offset < self.pos {
            self.bar.dec(self.pos - offset);
        } else {
            self.bar.inc(offset - self.pos);
        }
        self.pos = offset;
        Ok(())
    }
}
