//! `cargo xtask profile`: the flags of a profiling session, turned into a
//! [`profile_session::Plan`] and handed to the driver of the chosen host:
//! `crate::local` (the server on this machine's CPU, the default) or
//! `crate::tpu` (a Cloud TPU VM), which `main` chooses between. The session
//! itself, the run folder and the reproduction line are `profile-session`'s,
//! and [`finish_run`] is the tail both drivers end with; this module uses
//! neither driver, so the modules form no cycle.

use std::path::PathBuf;

use anyhow::Context;
use profile_session::plan::HostKind;
use profile_session::{Plan, RunFolder};

use tpu_cloud::api::Provisioning;
use tpu_cloud::cost;

use crate::local_env::DEFAULT_VERSION;

pub const DEFAULT_ZONE: &str = "us-east5-b";

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Read flags from this TOML file, one key per long flag without its
    /// dashes (`endpoint = "score"`, `py-spy = true`); flags given on the
    /// command line win. See docs/ARCHITECTURE.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run the server on this machine's CPU (the default unless --tpu).
    #[arg(long, conflicts_with = "use_tpu")]
    pub local: bool,
    /// Run the server on a Cloud TPU VM.
    #[arg(long = "tpu")]
    pub use_tpu: bool,
    /// What the local server runs on: this machine's CPU (with the CPU
    /// shim) or its TPU chips (jax[tpu], refused when no TPU is visible)
    /// [default: cpu; tpu in the pod of --k8s].
    #[arg(long, value_enum)]
    pub device: Option<crate::device::Device>,
    /// The profiled endpoint.
    #[arg(long, value_enum, default_value_t = Endpoint::Generate)]
    pub endpoint: Endpoint,
    /// Profiled requests. For `score`, rounded up to whole rounds of the
    /// three-request RFC-010 mix.
    #[arg(long, default_value_t = 12)]
    pub requests: usize,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// `max_new_tokens` of each /generate request.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: u32,
    /// Stream the /generate answers (server-sent events).
    #[arg(long)]
    pub stream: bool,
    /// The prompt of each /generate request.
    #[arg(long, default_value = "hello world, what is the capital of france ?")]
    pub prompt: String,
    /// Let the server stop the trace after N forward passes (it records
    /// N-1); by default the trace is stopped with /stop_profile.
    #[arg(long)]
    pub num_steps: Option<u32>,
    #[arg(long, default_value_t = 2)]
    pub host_tracer_level: u32,
    /// Left out by default (the server's default is 1; sglang-jax 0.0.x
    /// ignores 0).
    #[arg(long)]
    pub python_tracer_level: Option<u32>,
    /// Start the trace at this forward pass; needs a server with the later
    /// profiling API (refused on sglang-jax 0.0.x).
    #[arg(long)]
    pub start_step: Option<u64>,
    /// Trace prefill and decode separately (`prefill/`, `decode/`); needs a
    /// server with the later profiling API (refused on sglang-jax 0.0.x).
    #[arg(long)]
    pub profile_by_stage: bool,
    /// The sglang-jax release installed (--tpu: unless --sglang-jax-git).
    #[arg(long, default_value = DEFAULT_VERSION)]
    pub sglang_jax_version: String,
    /// Server port; a free one by default.
    #[arg(long)]
    pub port: Option<u16>,
    /// Also record the whole server with py-spy during the workload.
    #[arg(long)]
    pub py_spy: bool,
    /// Requests sent before profiling starts (not profiled), at the
    /// workload's concurrency so that the batch shapes the workload will
    /// produce are compiled before the trace starts [default: twice the
    /// concurrency].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// The run folder; `runs/<run-id>` in the current directory by default.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bearer token for a server started with --api-key.
    #[arg(long, env = "SGLPROF_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model to serve; the locally built tiny model by default.
    #[arg(long)]
    pub model_path: Option<String>,
    /// Seconds to wait for the server to become ready (at least 900 on a
    /// TPU, which compiles its shapes first).
    #[arg(long, default_value_t = 300)]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub tpu: TpuProfileArgs,
    #[command(flatten)]
    pub archive: crate::archive::ArchiveFlags,
    #[command(flatten)]
    pub k8s: crate::k8s::K8sArgs,
}

impl TpuProfileArgs {
    /// `--runtime-version`, or Google's for the family of
    /// `--accelerator-type`; an unknown family is refused in one line.
    pub fn runtime_version(&self) -> anyhow::Result<String> {
        Ok(tpu_cloud::runtime::runtime_version(
            &self.accelerator_type,
            self.runtime_version.as_deref(),
        )?)
    }
}

impl Args {
    /// `--warmup`, or twice the concurrency.
    pub fn warmup_requests(&self) -> usize {
        self.warmup.unwrap_or(2 * self.concurrency.max(1))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Generate,
    Score,
}

impl From<Endpoint> for profile_session::Endpoint {
    fn from(endpoint: Endpoint) -> profile_session::Endpoint {
        match endpoint {
            Endpoint::Generate => profile_session::Endpoint::Generate,
            Endpoint::Score => profile_session::Endpoint::Score,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProvisioningArg {
    #[default]
    OnDemand,
    Spot,
    Preemptible,
}

impl From<ProvisioningArg> for Provisioning {
    fn from(arg: ProvisioningArg) -> Provisioning {
        match arg {
            ProvisioningArg::OnDemand => Provisioning::OnDemand,
            ProvisioningArg::Spot => Provisioning::Spot,
            ProvisioningArg::Preemptible => Provisioning::Preemptible,
        }
    }
}

/// What `--rehearsal` can make go wrong, to show what a real run would do.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RehearseFault {
    /// The zone has no capacity: the create fails as Google's does (with
    /// --queued, the request waits for capacity that never comes).
    Stockout,
    /// Google answers the create call only after 10 s.
    SlowCreate,
    /// pip fails on the workers, as for a version that cannot be installed.
    Install,
    /// The server dies during the profiled workload.
    ServerExit,
    /// Copying files home from the workers fails, as a dropped scp does.
    Scp,
}

/// The flags of `cargo xtask profile` that only matter with `--tpu`;
/// flattened into [`Args`].
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TpuProfileArgs {
    /// The Google Cloud project (--tpu).
    #[arg(long, env = "CLOUDSDK_CORE_PROJECT")]
    pub project: Option<String>,
    /// The zone of the TPU VM (--tpu).
    #[arg(long, default_value = DEFAULT_ZONE)]
    pub zone: String,
    /// The TPU slice (--tpu).
    #[arg(long, default_value = "v6e-1")]
    pub accelerator_type: String,
    /// The TPU VM image (--tpu) [default: Google's for the accelerator's
    /// family: v6e v2-alpha-tpuv6e, v5p v2-alpha-tpuv5, v5e
    /// v2-alpha-tpuv5-lite, v4 and older tpu-ubuntu2204-base].
    #[arg(long)]
    pub runtime_version: Option<String>,
    /// How the VM is billed (--tpu).
    #[arg(long, value_enum, default_value_t = ProvisioningArg::OnDemand)]
    pub provisioning: ProvisioningArg,
    /// Ask for the VM through a queued resource, which waits for capacity
    /// instead of failing on a stockout (--tpu).
    #[arg(long)]
    pub queued: bool,
    /// Use this existing VM instead of creating one; it is not deleted (--tpu).
    #[arg(long)]
    pub vm: Option<String>,
    /// Leave the VM running at the end; `cargo xtask cleanup <run>` deletes it (--tpu).
    #[arg(long)]
    pub keep: bool,
    /// Install sglang-jax from this git repository instead of PyPI (--tpu).
    #[arg(long, requires = "sglang_jax_commit")]
    pub sglang_jax_git: Option<String>,
    /// The commit of --sglang-jax-git (--tpu).
    #[arg(long, requires = "sglang_jax_git")]
    pub sglang_jax_commit: Option<String>,
    /// Prices: a JSON file {"source", "prices": [{"accelerator_type", "provisioning", "usd_per_hour"}]} (--tpu).
    #[arg(long)]
    pub price_file: Option<PathBuf>,
    /// The VM price in dollars per hour, overriding the price table (--tpu).
    #[arg(long)]
    pub usd_per_hour: Option<f64>,
    /// GCS standard storage price, dollars per GB-month (--tpu).
    #[arg(long, default_value_t = cost::GCS_USD_PER_GB_MONTH)]
    pub gcs_usd_per_gb_month: f64,
    /// Extra flag for every gcloud ssh/scp, e.g. --tunnel-through-iap (--tpu).
    #[arg(long = "gcloud-flag", allow_hyphen_values = true)]
    pub gcloud_flags: Vec<String>,
    /// Print every API call and command of the session without running any
    /// (--tpu), or the Job and the Dockerfile (--k8s).
    #[arg(long)]
    pub dry_run: bool,
    /// Rehearse the whole TPU session on this machine: the Cloud TPU API
    /// simulated on loopback (its calls in logs/tpu-api.log), each TPU
    /// worker a local folder, the server on the CPU with the shim (--tpu).
    #[arg(long, requires = "use_tpu", conflicts_with_all = ["dry_run", "vm", "gcloud_flags", "sglang_jax_git"])]
    pub rehearsal: bool,
    /// Rehearse what happens when this goes wrong (--rehearsal; repeatable).
    /// Whatever happens, the VM is deleted and the run folder keeps what
    /// was collected.
    #[arg(long = "rehearse-fault", value_enum, requires = "rehearsal")]
    pub rehearse_faults: Vec<RehearseFault>,
    #[arg(long, env = "SGLPROF_TPU_API_URL", default_value = tpu_cloud::GOOGLE_API_URL, hide = true)]
    pub tpu_api_url: String,
}

impl Args {
    /// The plan of this run on `host`, refused in one line when the host
    /// cannot honour one of the flags.
    pub fn plan(&self, host: HostKind) -> anyhow::Result<Plan> {
        if host == HostKind::Tpu && self.device.is_some() {
            anyhow::bail!(
                "--device is not supported with --tpu: the VM's TPU is the device; \
                 --device chooses for --local (and --k8s)"
            );
        }
        let plan = Plan {
            host,
            endpoint: self.endpoint.into(),
            requests: self.requests,
            concurrency: self.concurrency,
            max_new_tokens: self.max_new_tokens,
            stream: self.stream,
            prompt: self.prompt.clone(),
            warmup: self.warmup_requests(),
            num_steps: self.num_steps,
            host_tracer_level: self.host_tracer_level,
            python_tracer_level: self.python_tracer_level,
            start_step: self.start_step,
            profile_by_stage: self.profile_by_stage,
            sglang_jax_version: self.sglang_jax_version.clone(),
            model_path: self.model_path.clone(),
            py_spy: self.py_spy,
            api_key: self.api_key.clone(),
        };
        plan.check()?;
        Ok(plan)
    }
}

/// Resolves on the first of SIGINT, SIGTERM, SIGHUP (terminal closed, ssh
/// lost) and SIGQUIT, with the signal's name. Every session driver races
/// its work against this, so each of them leaves nothing behind.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
        _ = quit.recv() => "SIGQUIT",
    }
}

/// The tail of every session, whatever the host: run metadata, checksums,
/// the report, and the archive upload when asked. `tag` prefixes the
/// progress lines.
pub async fn finish_run(
    folder: &RunFolder,
    metadata: &session_report::RunMetadata,
    archive: Option<&crate::archive::UploadOpts>,
    tag: &str,
) -> anyhow::Result<()> {
    let run_dir = folder.root();
    folder.write_metadata(metadata)?;
    let n_files = folder.write_checksums()?;
    eprintln!("[{tag}] checksums.txt lists {n_files} artifact files");
    if let Some(opts) = archive {
        crate::archive::record_archive_target(run_dir, opts)?;
    }
    profile_report::generate(&profile_report::Request::for_run_folder(run_dir)).with_context(
        || {
            format!(
                "the run folder {} is complete but the report failed",
                run_dir.display()
            )
        },
    )?;
    eprintln!("[{tag}] report: {}", run_dir.join("report.md").display());
    if let Some(opts) = archive {
        let url = crate::archive::upload_run_async(run_dir, opts, &[]).await?;
        eprintln!("[{tag}] archived: {url}");
    }
    Ok(())
}
