//! The one error type of the crate: single lowercase lines that say what
//! failed and, where there is one, what to do.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid job: {0}")]
    Config(String),

    /// The run the Job was for cannot go on, in one line.
    #[error("{0}")]
    Plan(String),

    #[error("no Kubernetes configuration ({detail}): set KUBECONFIG or run in a pod")]
    NoConfig { detail: String },

    #[error("kubernetes api: cannot {action} {target}: {detail}")]
    Api {
        action: &'static str,
        target: String,
        detail: String,
    },

    #[error("pod {pod} cannot pull image {image}: {message}")]
    ImagePull {
        pod: String,
        image: String,
        message: String,
    },

    #[error("pod {pod} cannot start its container ({reason}): {message}")]
    ContainerStart {
        pod: String,
        reason: String,
        message: String,
    },

    #[error(
        "pod {pod} still pending after {} s: {explanation}",
        waited.as_secs()
    )]
    PendingTimeout {
        pod: String,
        waited: Duration,
        explanation: String,
    },

    #[error("job {job} failed ({reason}){}", tail_text(log_tail))]
    Failed {
        job: String,
        reason: String,
        /// The last lines of the failed pod's log.
        log_tail: Vec<String>,
    },

    #[error("interrupted; job {job} deleted")]
    Interrupted { job: String },
}

fn tail_text(tail: &[String]) -> String {
    match tail.last() {
        // The last line is usually the error; the rest was streamed.
        Some(last) => format!("; last log line: {}", last.trim()),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn api(action: &'static str, target: &str, err: kube::Error) -> Error {
        let detail = match &err {
            kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
            other => other.to_string(),
        };
        Error::Api {
            action,
            target: target.to_owned(),
            detail: detail.replace('\n', " "),
        }
    }
}
