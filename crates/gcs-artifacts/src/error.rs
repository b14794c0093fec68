//! The one error type of the crate: a lowercase line that names the object,
//! bucket or file and the cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("bucket {bucket} does not exist (404 from {endpoint})")]
    BucketNotFound { bucket: String, endpoint: String },
    #[error("bucket {bucket} already exists (409 from {endpoint})")]
    BucketExists { bucket: String, endpoint: String },
    #[error("no Google credentials found: {0}")]
    NoCredentials(String),
    #[error("permission denied on {target} ({status} from {endpoint}): {detail}")]
    PermissionDenied {
        target: String,
        status: u16,
        endpoint: String,
        detail: String,
    },
    #[error("{url} has no manifest.json: the run is incomplete or the address is wrong")]
    NoManifest { url: String },
    #[error("object {url} is listed in the manifest but does not exist (404)")]
    MissingObject { url: String },
    #[error("checksum mismatch for {object}: expected {algorithm} {expected}, got {actual}")]
    ChecksumMismatch {
        object: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "refusing to overwrite {path}: it differs from {object} (local sha256 {local}, archived {archived})"
    )]
    LocalFileDiffers {
        path: PathBuf,
        object: String,
        local: String,
        archived: String,
    },
    #[error("{url} is already archived with different content (manifest.json differs)")]
    RunExists { url: String },
    #[error("invalid manifest {url}: {detail}")]
    BadManifest { url: String, detail: String },
    #[error("invalid run metadata {path}: {detail}")]
    BadRunMetadata { path: PathBuf, detail: String },
    #[error("invalid {what} `{value}`: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to {action} {target}: {detail}")]
    Service {
        action: &'static str,
        target: String,
        detail: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: &str, why: &'static str) -> Error {
        Error::Invalid {
            what,
            value: value.to_owned(),
            why,
        }
    }
}

/// A missing-credentials error: the hint, then the innermost cause (the
/// auth crate's own chain repeats itself at every level).
pub(crate) fn no_credentials(err: &dyn std::error::Error) -> Error {
    let mut cur = err;
    while let Some(src) = cur.source() {
        cur = src;
    }
    Error::NoCredentials(format!(
        "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS (last error: {})",
        cur.to_string().replace('\n', " ")
    ))
}

/// Flattens an error and its sources into one line.
pub(crate) fn one_line(err: &dyn std::error::Error) -> String {
    let mut res = err.to_string();
    let mut cur = err.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !res.contains(&text) {
            res.push_str(": ");
            res.push_str(&text);
        }
        cur = src.source();
    }
    res.replace('\n', " ")
}
