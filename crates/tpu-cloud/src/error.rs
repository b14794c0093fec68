//! The one error type of the crate. Every message is a single lowercase
//! line that ends with what to do about it.

use std::path::PathBuf;

use crate::api::{ErrorDetail, Status};

/// The credential sources `gcp_auth` tries, in its order.
pub(crate) const CREDENTIAL_SOURCES: &str = "GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default credentials, \
     the metadata server, gcloud auth print-access-token";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "no Google credentials found (tried {CREDENTIAL_SOURCES}: {detail}): \
         run `gcloud auth application-default login`"
    )]
    NoCredentials { detail: String },

    #[error(
        "could not get an access token ({detail}): run `gcloud auth application-default login`"
    )]
    Token { detail: String },

    #[error(
        "Google rejected the credentials ({message}): \
         run `gcloud auth application-default login` again"
    )]
    Unauthenticated { message: String },

    #[error(
        "permission denied on project `{project}` ({message}): give the account roles/tpu.admin \
         and check the API is on with `gcloud services enable tpu.googleapis.com --project {project}`"
    )]
    PermissionDenied { project: String, message: String },

    #[error(
        "TPU quota exhausted in {zone} ({message}): delete idle VMs (`cargo xtask tpu list --ours`), \
         request more quota in IAM & Admin > Quotas, or use another zone"
    )]
    Quota { zone: String, message: String },

    #[error(
        "no TPU capacity in {zone} right now ({message}): try another zone, retry later, \
         or ask for spot capacity through a queued resource"
    )]
    NoCapacity { zone: String, message: String },

    #[error(
        "{name} already exists ({message}): pick another name, reuse it with --vm, \
         or delete it with `cargo xtask tpu delete`"
    )]
    AlreadyExists { name: String, message: String },

    #[error(
        "zone `{zone}` is not valid for Cloud TPU ({message}): \
         list zones with `gcloud compute tpus locations list`"
    )]
    InvalidZone { zone: String, message: String },

    #[error(
        "the accelerator type or runtime version is not offered in {zone} ({message}): \
         see `gcloud compute tpus accelerator-types list --zone {zone}` and \
         `gcloud compute tpus tpu-vm versions list --zone {zone}`"
    )]
    InvalidType { zone: String, message: String },

    #[error("{what} not found ({message}): check the name, project and zone")]
    NotFound { what: String, message: String },

    #[error(
        "{method} {url} failed with HTTP {status} {reason} ({message}): fix the request; it is not retried"
    )]
    Rejected {
        method: String,
        url: String,
        status: u16,
        reason: String,
        message: String,
    },

    #[error(
        "{method} {url} still failed after {attempts} attempts (last: {last}): \
         the TPU API is unavailable or throttling, retry later"
    )]
    Unavailable {
        method: String,
        url: String,
        attempts: u32,
        last: String,
    },

    #[error("{method} {url}: {detail}: check the network and the API URL")]
    Transport {
        method: String,
        url: String,
        detail: String,
    },

    #[error(
        "{what} did not finish within {waited_s} s: it may still be running; \
         see `cargo xtask tpu list --ours` and delete leftovers with `cargo xtask cleanup`"
    )]
    Deadline { what: String, waited_s: u64 },

    #[error(
        "{what} failed with code {code} ({message}): see the message; nothing was left running"
    )]
    OperationFailed {
        what: String,
        code: i32,
        message: String,
    },

    #[error(
        "node `{name}` is {state} instead of READY: spot and preemptible VMs can be taken back; \
         rerun, or use on-demand capacity"
    )]
    NodeLost { name: String, state: String },

    #[error("queued resource `{name}` failed ({message}): try another zone or provisioning model")]
    QueuedResourceFailed { name: String, message: String },

    #[error("cancelled: the node is deleted unless --keep was given")]
    Cancelled,

    #[error(
        "no runtime version is known for accelerator type `{accelerator_type}` (known families: \
         {known}): give one with --runtime-version (see `gcloud compute tpus tpu-vm versions list`)"
    )]
    UnknownAccelerator {
        accelerator_type: String,
        known: String,
    },

    #[error("{action} `{}`", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid {what} `{path}`: {detail}: fix or delete the file")]
    BadFile {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error("`{command}` failed ({detail}){hint}", hint = gcloud_hint(command))]
    Command { command: String, detail: String },

    #[error("invalid price table ({detail}): expected {{\"source\": ..., \"prices\": [...]}}")]
    BadPriceTable { detail: String },
}

/// The advice for a failed gcloud command; none for a local worker's
/// (its bash has nothing to do with gcloud).
fn gcloud_hint(command: &str) -> &'static str {
    if command.starts_with("gcloud") {
        ": check that gcloud is installed and logged in"
    } else {
        ""
    }
}

/// Where a failed call was aimed, for messages that name it.
#[derive(Clone, Debug)]
pub(crate) struct CallContext {
    pub project: String,
    pub zone: String,
    /// `node sglprof-...`, `operation ...`.
    pub what: String,
}

impl Error {
    /// The message and every cause, joined by `: `, for text kept in the
    /// state file (an [`Error::Io`] names its cause only as its source).
    pub fn chain(&self) -> String {
        chain(self)
    }

    /// A `map_err` adapter: an IO failure of `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error + use<> {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// Turns an HTTP error answer into an error that says what to do.
    pub(crate) fn from_http(
        method: &str,
        url: &str,
        status: u16,
        body: &ErrorDetail,
        ctx: &CallContext,
    ) -> Error {
        let message = one_line(&body.message);
        let text = message.to_lowercase();
        match (status, body.status.as_str()) {
            (401, _) | (_, "UNAUTHENTICATED") => Error::Unauthenticated { message },
            (409, _) | (_, "ALREADY_EXISTS") => Error::AlreadyExists {
                name: ctx.what.clone(),
                message,
            },
            (_, "RESOURCE_EXHAUSTED") | (429, _) if is_stockout(&text) => Error::NoCapacity {
                zone: ctx.zone.clone(),
                message,
            },
            (_, "RESOURCE_EXHAUSTED") | (403, _) | (429, _) if text.contains("quota") => {
                Error::Quota {
                    zone: ctx.zone.clone(),
                    message,
                }
            }
            (403, _) | (_, "PERMISSION_DENIED") => Error::PermissionDenied {
                project: ctx.project.clone(),
                message,
            },
            (400, _)
                if text.contains("accelerator")
                    || text.contains("runtime")
                    || text.contains("version") =>
            {
                Error::InvalidType {
                    zone: ctx.zone.clone(),
                    message,
                }
            }
            (400 | 404, _)
                if !text.contains("resource '")
                    && (text.contains("location") || text.contains("zone")) =>
            {
                Error::InvalidZone {
                    zone: ctx.zone.clone(),
                    message,
                }
            }
            (404, _) => Error::NotFound {
                what: ctx.what.clone(),
                message,
            },
            _ => Error::Rejected {
                method: method.to_owned(),
                url: url.to_owned(),
                status,
                reason: if body.status.is_empty() {
                    "error".to_owned()
                } else {
                    body.status.clone()
                },
                message,
            },
        }
    }

    /// Turns the `error` of a finished operation into an error.
    pub(crate) fn from_operation(status: &Status, ctx: &CallContext) -> Error {
        let message = one_line(&status.message);
        let text = message.to_lowercase();
        // google.rpc.Code numbers.
        match status.code {
            8 if is_stockout(&text) => Error::NoCapacity {
                zone: ctx.zone.clone(),
                message,
            },
            8 if text.contains("quota") => Error::Quota {
                zone: ctx.zone.clone(),
                message,
            },
            8 => Error::NoCapacity {
                zone: ctx.zone.clone(),
                message,
            },
            6 => Error::AlreadyExists {
                name: ctx.what.clone(),
                message,
            },
            7 => Error::PermissionDenied {
                project: ctx.project.clone(),
                message,
            },
            3 if text.contains("accelerator")
                || text.contains("runtime")
                || text.contains("version") =>
            {
                Error::InvalidType {
                    zone: ctx.zone.clone(),
                    message,
                }
            }
            code => Error::OperationFailed {
                what: ctx.what.clone(),
                code,
                message,
            },
        }
    }

    /// Whether the error means "the thing is already gone".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Google's wording for a stockout ("There is no more capacity in the zone").
fn is_stockout(lower_message: &str) -> bool {
    lower_message.contains("no more capacity")
        || lower_message.contains("stockout")
        || lower_message.contains("insufficient capacity")
        || lower_message.contains("not enough resources")
}

pub(crate) fn one_line(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "no message".to_owned()
    } else {
        text
    }
}

/// An error and every cause, joined by `: `.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut res = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        res.push_str(": ");
        res.push_str(&err.to_string());
        cause = err.source();
    }
    res
}
