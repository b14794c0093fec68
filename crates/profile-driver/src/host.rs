//! The host abstraction: a place where sglang-jax servers exist for the
//! length of one scope. A host prepares its environment (an install, a
//! VM), starts its servers, hands them to the driver's [`Session`], brings
//! the traces and logs into the run folder, and ends everything it started
//! before [`Host::run`] returns, on every path: success, error, or the
//! cancel future firing on a signal.
//!
//! The hosts of this crate are [`crate::local::LocalHost`] (a server started
//! on this machine), [`crate::local::Running`] (a server that already runs:
//! `--attach`, and each variant of a local sweep), and
//! [`crate::tpu::TpuHost`] (a Cloud TPU VM, or its rehearsal on this
//! machine).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use profile_session::RunFolder;
use profile_session::manual::ManualSteps;
use profile_session::plan::{HostKind, Plan};
use profile_session::pyspy;
use profile_session::session::{SessionError, SessionOutcome, WorkloadHooks};
use sglang_server::{Client, Liveness};

use crate::DriveError;
use crate::events::Progress;

/// Resolves, with the signal's name, when the user asks the run to stop.
pub type Cancel = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// A cancel future that never fires.
pub fn never() -> Cancel {
    Box::pin(std::future::pending())
}

/// What a host knows about the run it serves.
pub struct RunContext<'a> {
    pub plan: &'a Plan,
    pub run_id: &'a str,
    pub folder: &'a RunFolder,
    /// Where the run is archived, with `--upload`.
    pub archive: Option<&'a crate::archive::UploadOpts>,
    pub progress: Arc<dyn Progress>,
}

/// One server the session talks to, while it exists.
pub struct Server<'a> {
    /// Which host of a slice it runs on (0 for a single host).
    pub worker: u32,
    pub client: Client,
    /// Polled during the workload: a server that dies ends it at once.
    pub liveness: &'a dyn Liveness,
    /// The `/start_profile` output folder, as a path on the server.
    pub profile_dir: String,
    /// Where that folder is visible from here, when it is.
    pub local_profile_dir: Option<PathBuf>,
    /// How long to wait for complete trace files after the stop.
    pub trace_wait: Duration,
}

/// The servers of a host, ready.
pub struct Servers<'a> {
    /// The model as the servers name it (`--model-path`).
    pub model: String,
    /// The token ids of [`profile_session::session::SCORE_LABELS`] in the
    /// model's tokenizer, for the score workload (empty otherwise).
    pub label_token_ids: Vec<u32>,
    /// The first is the primary: its results are the run's. The others are
    /// independent servers driven at once (a rehearsal of a slice).
    pub servers: Vec<Server<'a>>,
    /// Where a reader reaches the primary server, for the report's
    /// Profiling Workflow (`http://127.0.0.1:PORT`).
    pub base_url: String,
}

/// The driver's part, run by a host while its servers exist.
#[async_trait::async_trait]
pub trait Session: Send {
    /// Runs the session against `servers`; `hooks` wrap the primary
    /// server's profiled workload (py-spy).
    async fn run(
        &mut self,
        servers: &Servers<'_>,
        hooks: &mut dyn WorkloadHooks,
    ) -> Result<SessionOutcome, SessionError>;
}

/// What the run's metadata and closing line need to know of its host.
#[derive(Debug, Default)]
pub struct HostFacts {
    /// The model, short (`tiny-qwen1`, or a hub name).
    pub model: String,
    pub hardware: String,
    pub zone: String,
    pub python_version: Option<String>,
    pub jax_version: Option<String>,
    pub jaxlib_version: Option<String>,
    pub sglang_jax_version: Option<String>,
    /// The host's commands in the report's Reproduction block; the
    /// Profiling Workflow is the driver's.
    pub manual: ManualSteps,
    /// The primary server as the workflow block reaches it.
    pub base_url: String,
    /// The plan as it ran (a TPU host resolves the model, say).
    pub resolved: Option<Plan>,
    pub py_spy: Option<pyspy::Files>,
    pub cost: Vec<session_report::CostRow>,
    pub cost_source: Option<String>,
    /// What the host did with what it started, for the closing line
    /// (`deleted sglprof-...`).
    pub closing: Vec<String>,
}

/// What a host's run gave.
pub struct HostOutcome {
    /// `None` when nothing ran (a dry run).
    pub session: Option<SessionOutcome>,
    pub facts: HostFacts,
}

/// A place where servers exist for one scope.
#[async_trait::async_trait]
pub trait Host: Send {
    fn kind(&self) -> HostKind;

    /// Refuses, in one line and before anything is created (the run folder
    /// included), what this host cannot do for `plan`.
    fn check(&self, plan: &Plan) -> Result<(), DriveError> {
        let _ = plan;
        Ok(())
    }

    /// Prepares, starts the servers, runs `session` once they answer,
    /// collects traces and logs into `run.folder`, and ends everything it
    /// started before returning, on every path. `cancel` fires on a
    /// signal; the host then stops as fast as it safely can.
    async fn run(
        &mut self,
        run: &RunContext<'_>,
        session: &mut dyn Session,
        cancel: Cancel,
    ) -> Result<HostOutcome, DriveError>;
}
