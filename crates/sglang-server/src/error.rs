//! The one error type of the crate.
//!
//! Messages are one lowercase line naming what failed and where (URL, path,
//! program). A server log tail, when there is one, follows on its own lines:
//! it is usually the only place sglang-jax says why it failed.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{method} {url} failed: {detail}{}", tail(.log_tail))]
    Transport {
        method: &'static str,
        url: String,
        detail: String,
        log_tail: Option<String>,
    },
    #[error("{method} {url} timed out after {:.1} s{}", .after.as_secs_f64(), tail(.log_tail))]
    Timeout {
        method: &'static str,
        url: String,
        after: Duration,
        log_tail: Option<String>,
    },
    #[error("{method} {url} answered HTTP {status}: {body}{}", tail(.log_tail))]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
        log_tail: Option<String>,
    },
    #[error("{method} {url} answered HTTP 200 with unexpected content ({detail}): {body}")]
    Decode {
        method: &'static str,
        url: String,
        detail: String,
        body: String,
    },
    #[error("server at {url} not ready after {:.0} s (last probe: {last}){}", .waited.as_secs_f64(), tail(.log_tail))]
    NotReady {
        url: String,
        waited: Duration,
        last: String,
        log_tail: Option<String>,
    },
    #[error("{name} (pid {pid}) exited with {status} {during}{}", tail(&Some(.log_tail.clone())))]
    Died {
        name: String,
        pid: u32,
        status: String,
        during: String,
        log_tail: String,
    },
    #[error("cannot start {}", .program.display())]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no complete trace under {} after {:.0} s: {detail}", .dir.display(), .waited.as_secs_f64())]
    TraceIncomplete {
        dir: PathBuf,
        waited: Duration,
        detail: String,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(
        "server at {url} lacks {feature}: it has no GET /profile_status, so it is an sglang-jax 0.0.x that would ignore it (use a newer sglang-jax or drop the option)"
    )]
    Unsupported { url: String, feature: String },
    #[error("capture failed: {}: {reason}", .path.display())]
    CaptureFailed { path: PathBuf, reason: String },
}

fn tail(log_tail: &Option<String>) -> String {
    match log_tail {
        Some(text) if !text.trim().is_empty() => format!("\nserver log tail:\n{text}"),
        _ => String::new(),
    }
}

impl Error {
    /// True when the error means the server went away (process exit or
    /// refused/reset connection), as opposed to an answer the server gave.
    pub fn is_server_gone(&self) -> bool {
        matches!(self, Error::Died { .. } | Error::Transport { .. })
    }

    /// The HTTP status of an error answer, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Shortens an answer body for an error message: one line, at most 300 chars.
pub(crate) fn snippet(body: &str) -> String {
    let flat: String = body
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}...")
    } else if flat.is_empty() {
        "(empty body)".to_owned()
    } else {
        flat
    }
}
