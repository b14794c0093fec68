//! The sglprof profiling run as a Kubernetes Job on GKE TPU nodes.
//!
//! - [`job`]: the Job from typed `k8s-openapi` structs (TPU node selectors
//!   and resources, spot, `SYS_PTRACE`, in-memory `/dev/shm`, a GCS FUSE
//!   bucket, Workload Identity) and its YAML; a sweep becomes one Indexed
//!   Job with one variant's command line per index.
//! - [`dockerfile`]: the image the Job runs.
//! - [`runner`]: create the Job under a unique name, follow its pods, stream
//!   their logs, explain a pending pod from its events, and delete the Job
//!   on every exit path.
//!
//! - [`profile`]: `profile --k8s`: the Job of a plan (each pod runs
//!   `profile-driver`'s local host with the plan's own flags), and the
//!   variants' runs downloaded from the bucket, with a sweep's index.
//!
//! The manifest and Dockerfile modules are pure. Only [`runner`] talks to
//! the API server, through a `kube::Client`, and [`profile`] to the bucket,
//! through `profile-driver`. This crate does not build images or read trace
//! files.

pub mod dockerfile;
mod error;
pub mod job;
pub mod profile;
pub mod runner;

pub use dockerfile::{ImageConfig, render_dockerfile};
pub use error::Error;
pub use job::{JobConfig, build_job, job_name, to_yaml};
pub use runner::{JobOutcome, Progress, RunOptions, delete_job, explain_event, run_job};

/// Makes ring rustls' process-wide crypto provider, the one the workspace
/// builds (see the root `Cargo.toml`). Installing is a no-op when a provider
/// is already installed.
fn use_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client from the environment: `KUBECONFIG` or `~/.kube/config` (its
/// current context, or `context`), else the in-cluster service account.
pub async fn client_from_env(context: Option<&str>) -> Result<kube::Client, Error> {
    let no_config = |e: &dyn std::fmt::Display| Error::NoConfig {
        detail: e.to_string(),
    };
    use_ring_provider();
    match context {
        None => kube::Client::try_default().await.map_err(|e| no_config(&e)),
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context.to_owned()),
                ..Default::default()
            };
            let config = kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| no_config(&format!("context {context}: {e}")))?;
            kube::Client::try_from(config).map_err(|e| no_config(&e))
        }
    }
}

/// A client for an API server at `url` without authentication (a local
/// proxy such as `kubectl proxy`, or a test server).
pub fn client_for_url(url: &str, namespace: &str) -> Result<kube::Client, Error> {
    let uri = url.parse().map_err(|e| Error::NoConfig {
        detail: format!("{url}: {e}"),
    })?;
    use_ring_provider();
    let mut config = kube::Config::new(uri);
    config.default_namespace = namespace.to_owned();
    kube::Client::try_from(config).map_err(|e| Error::NoConfig {
        detail: e.to_string(),
    })
}
