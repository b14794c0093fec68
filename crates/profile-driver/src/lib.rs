//! The whole profiling run, the same on every host: [`drive`] takes a
//! [`Plan`](profile_session::Plan) and a [`Host`](host::Host) and does, once
//! for every host, what a run is made of: the run id and run folder, the
//! session against the host's servers, secrets kept out of what they left,
//! the run metadata and its reproduction line, checksums, the report and the
//! archive. Hosts own the scope their servers live in: [`local::LocalHost`]
//! (a server started on this machine, its Python environment from
//! [`pyenv`]), [`local::Running`] (a server that already runs: `--attach`,
//! a local sweep's variants), and [`tpu::TpuHost`] (a Cloud TPU VM, or its
//! rehearsal here: the simulated API and local workers). [`sweep`] runs one
//! plan per variant on one server; [`serve`] holds a server for sessions
//! that attach to it; [`archive`] puts runs in GCS and fetches them back;
//! [`compare`] judges a run against a baseline or the archived history;
//! [`tpu::admin`] lists, stops, starts and deletes VMs outside a run.
//!
//! The driver never prints: it reports [`events`], which a command line
//! shows. It spawns processes only through `sglang-server`'s supervisor
//! (servers), `tpu-cloud`'s gcloud and workers (VMs) and [`pyenv`]'s
//! installs. It knows nothing of command lines: plans are built by the
//! caller. Kubernetes Jobs are another crate's (`k8s-job`), whose pods run
//! this crate's local host.

pub mod archive;
pub mod compare;
mod drive;
pub mod events;
pub mod host;
pub mod local;
pub mod pyenv;
pub mod serve;
pub mod sweep;
pub mod tpu;

use std::path::PathBuf;

pub use drive::{RunOutcome, drive, folder_bytes, run_dir, run_id};

/// Why a run failed. Each is one line; the cause, where there is one, is
/// the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriveError {
    #[error(transparent)]
    Plan(#[from] profile_session::PlanError),
    #[error(transparent)]
    Env(#[from] pyenv::EnvError),
    #[error(transparent)]
    RunFolder(#[from] profile_session::RunFolderError),
    #[error(transparent)]
    Session(Box<profile_session::session::SessionError>),
    #[error(transparent)]
    Tpu(Box<tpu_cloud::Error>),
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Server {
        what: String,
        #[source]
        source: Box<sglang_server::Error>,
    },
    #[error("{what}")]
    Cloud {
        what: String,
        #[source]
        source: Box<tpu_cloud::Error>,
    },
    #[error("{what}")]
    Archive {
        what: String,
        #[source]
        source: Box<gcs_artifacts::Error>,
    },
    #[error("the run folder {} is complete but the report failed", .run_dir.display())]
    Report {
        run_dir: PathBuf,
        #[source]
        source: profile_report::Error,
    },
    /// A run folder or its metadata could not be read.
    #[error(transparent)]
    Read(#[from] profile_report::Error),
    #[error(transparent)]
    Gcs(Box<gcs_artifacts::Error>),
    /// A held server ended by itself.
    #[error(transparent)]
    Died(Box<sglang_server::Error>),
    #[error("py-spy produced no output; see {}", .0.display())]
    NoPySpy(PathBuf),
    /// A whole line already: what failed with its causes, and what became
    /// of what the run had started.
    #[error("{0}")]
    Failed(String),
}

// The causes from other crates are boxed: they are large, and a run's
// error is returned on every path.
impl From<profile_session::session::SessionError> for DriveError {
    fn from(err: profile_session::session::SessionError) -> Self {
        DriveError::Session(Box::new(err))
    }
}

impl From<tpu_cloud::Error> for DriveError {
    fn from(err: tpu_cloud::Error) -> Self {
        DriveError::Tpu(Box::new(err))
    }
}

impl DriveError {
    pub(crate) fn server(what: impl Into<String>) -> impl FnOnce(sglang_server::Error) -> Self {
        let what = what.into();
        move |source| DriveError::Server {
            what,
            source: Box::new(source),
        }
    }
    pub(crate) fn cloud(what: impl Into<String>) -> impl FnOnce(tpu_cloud::Error) -> Self {
        let what = what.into();
        move |source| DriveError::Cloud {
            what,
            source: Box::new(source),
        }
    }
    pub(crate) fn archive(what: impl Into<String>) -> impl FnOnce(gcs_artifacts::Error) -> Self {
        let what = what.into();
        move |source| DriveError::Archive {
            what,
            source: Box::new(source),
        }
    }
}

/// Runs `plan` on the host it names: a local sweep when `variants` (from
/// [`profile_session::sweep::grid`]) is not empty, else one [`drive`] on a
/// [`local::LocalHost`], a [`local::AttachHost`] or a [`tpu::TpuHost`]
/// (whose dry run prints through `print`). Kubernetes plans are the
/// `k8s-job` crate's, and refused here.
pub async fn run(
    plan: &profile_session::Plan,
    variants: &[sweep::Variant],
    progress: std::sync::Arc<dyn events::Progress>,
    cancel: host::Cancel,
    print: tpu::Print,
) -> Result<(), DriveError> {
    use profile_session::plan::HostPlan;
    let mut host: Box<dyn host::Host> = match &plan.host {
        HostPlan::Local(local) if !variants.is_empty() => {
            sweep::run_local(plan, local.device, variants, progress, cancel).await?;
            return Ok(());
        }
        _ if !variants.is_empty() => {
            return Err(DriveError::Failed(format!(
                "--sweep with {} is not supported",
                plan.host.kind().flag()
            )));
        }
        HostPlan::Local(local) => Box::new(local::LocalHost {
            device: local.device,
        }),
        HostPlan::Attach(attach) => Box::new(local::AttachHost {
            url: attach.url.clone(),
        }),
        HostPlan::Tpu(tpu) => Box::new(tpu::TpuHost {
            options: tpu.clone(),
            print,
        }),
        HostPlan::K8s(_) => {
            return Err(DriveError::Failed(
                "a --k8s plan runs as a Job of the k8s-job crate, not on a host here".to_owned(),
            ));
        }
    };
    drive(plan, &mut *host, progress, cancel).await?;
    Ok(())
}

/// An error and its causes on one line, `: `-separated, as a run's last
/// line shows them.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut res = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !res.ends_with(&text) {
            res.push_str(": ");
            res.push_str(&text);
        }
        source = cause.source();
    }
    res
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use profile_session::Plan;
    use profile_session::plan::{AttachOptions, HostPlan, K8sOptions};

    use super::*;

    #[tokio::test]
    async fn run_refuses_what_no_host_here_runs() {
        let silent = || Arc::new(events::Silent) as Arc<dyn events::Progress>;
        let print: tpu::Print = Arc::new(|_: &str| {});
        let k8s = Plan::new(HostPlan::K8s(K8sOptions::default()));
        let err = run(&k8s, &[], silent(), host::never(), print.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("k8s-job"), "{err}");
        let attach = Plan::new(HostPlan::Attach(AttachOptions {
            url: "http://127.0.0.1:9".into(),
        }));
        let variant = sweep::Variant {
            slug: "concurrency-1".into(),
            plan: attach.clone(),
        };
        let err = run(&attach, &[variant], silent(), host::never(), print)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "--sweep with --attach is not supported");
    }
}
