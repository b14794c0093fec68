//! What a run will do, as plain data: every setting of `cargo xtask
//! profile`, built by the command line (whose flags may come from a
//! `--config` file), printed by a dry run, checked against what the host
//! can do, and rendered back into its own argument list by
//! [`Plan::to_args`]. The reproduction line, the pod's command line of a
//! Kubernetes run and every other place that needs the flags of a plan use
//! that one rendering, so a flag cannot be dropped on one path only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sglang_server::StartProfile;
use tpu_cloud::api::Provisioning;
use tpu_cloud::script::sh_quote;

/// The profiled endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Generate,
    Score,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Generate => "/generate",
            Endpoint::Score => "/v1/score",
        }
    }
    /// The word of `--endpoint` and of run ids.
    pub fn slug(self) -> &'static str {
        match self {
            Endpoint::Generate => "generate",
            Endpoint::Score => "score",
        }
    }
}

/// What a server on this machine runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// This machine's CPU, through the CPU shim (`JAX_PLATFORMS=cpu`).
    #[default]
    Cpu,
    /// This machine's TPU chips (jax[tpu] with libtpu, no shim).
    Tpu,
}

impl Device {
    pub const ALL: [Device; 2] = [Device::Cpu, Device::Tpu];

    /// The word of `--device` and of sglang-jax's own `--device`.
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Tpu => "tpu",
        }
    }

    pub fn from_name(name: &str) -> Option<Device> {
        Device::ALL.into_iter().find(|it| it.name() == name)
    }
}

/// Where the server runs, as a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    Local,
    Attach,
    Tpu,
    K8s,
}

impl HostKind {
    /// The flag that chooses this host.
    pub fn flag(self) -> &'static str {
        match self {
            HostKind::Local => "--local",
            HostKind::Attach => "--attach",
            HostKind::Tpu => "--tpu",
            HostKind::K8s => "--k8s",
        }
    }
}

/// The host of a run and the settings only it has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HostPlan {
    /// A server this run starts on this machine.
    Local(LocalOptions),
    /// A server that is already running.
    Attach(AttachOptions),
    /// A Cloud TPU VM this run creates (or reuses) and deletes.
    Tpu(TpuOptions),
    /// A Kubernetes Job whose pod runs the local host on a TPU node.
    K8s(K8sOptions),
}

impl HostPlan {
    /// This host with the device a server on this machine runs on, refused
    /// in one line where the host decides it: a TPU VM's is its TPU, a
    /// Kubernetes pod's its node's TPU, an attached server's already chosen.
    pub fn with_device(mut self, device: Option<Device>) -> Result<HostPlan, PlanError> {
        let Some(device) = device else {
            return Ok(self);
        };
        let host = self.kind().flag();
        let refuse = |flag, why| Err(PlanError::Unsupported { flag, host, why });
        match &mut self {
            HostPlan::Local(local) => local.device = device,
            HostPlan::K8s(_) if device == Device::Tpu => {}
            HostPlan::K8s(_) => return refuse("--device cpu", "the Job runs on a GKE TPU node"),
            HostPlan::Tpu(_) => {
                return refuse(
                    "--device",
                    "the VM's TPU is the device; --device chooses for --local (and --k8s)",
                );
            }
            HostPlan::Attach(_) => return refuse("--device", "the server already runs"),
        }
        Ok(self)
    }

    pub fn kind(&self) -> HostKind {
        match self {
            HostPlan::Local(_) => HostKind::Local,
            HostPlan::Attach(_) => HostKind::Attach,
            HostPlan::Tpu(_) => HostKind::Tpu,
            HostPlan::K8s(_) => HostKind::K8s,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalOptions {
    pub device: Device,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttachOptions {
    /// The server's base URL, e.g. `http://127.0.0.1:30000`.
    pub url: String,
}

/// Something `--rehearsal` makes go wrong, to show what a real run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RehearseFault {
    /// The zone has no capacity: the create fails as Google's does (with
    /// `--queued`, the request waits for capacity that never comes).
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

impl RehearseFault {
    pub const ALL: [RehearseFault; 5] = [
        RehearseFault::Stockout,
        RehearseFault::SlowCreate,
        RehearseFault::Install,
        RehearseFault::ServerExit,
        RehearseFault::Scp,
    ];

    /// The word of `--rehearse-fault`.
    pub fn name(self) -> &'static str {
        match self {
            RehearseFault::Stockout => "stockout",
            RehearseFault::SlowCreate => "slow-create",
            RehearseFault::Install => "install",
            RehearseFault::ServerExit => "server-exit",
            RehearseFault::Scp => "scp",
        }
    }
}

/// A checkout of sglang-jax to install instead of a PyPI release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    /// Printed and saved only through [`crate::redact::url`].
    #[serde(serialize_with = "redacted_url")]
    pub url: String,
    pub commit: String,
}

fn redacted_url<S: serde::Serializer>(url: &str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&crate::redact::url(url))
}

/// The settings of a TPU VM run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TpuOptions {
    /// The Google Cloud project; a dry run shows a placeholder without one.
    pub project: Option<String>,
    pub zone: String,
    pub accelerator_type: String,
    /// The VM image; `None` follows the accelerator's family.
    pub runtime_version: Option<String>,
    pub provisioning: Provisioning,
    /// Ask through a queued resource, which waits for capacity.
    pub queued: bool,
    /// Use this existing VM; it is not deleted.
    pub vm: Option<String>,
    /// Leave the VM running at the end.
    pub keep: bool,
    pub git: Option<GitSource>,
    pub price_file: Option<PathBuf>,
    pub usd_per_hour: Option<f64>,
    pub gcs_usd_per_gb_month: f64,
    /// Extra words for every gcloud ssh/scp, e.g. `--tunnel-through-iap`.
    pub gcloud_flags: Vec<String>,
    /// Print every API call and command instead of running any.
    pub dry_run: bool,
    /// `Some` for a rehearsal on this machine, with the faults to inject.
    pub rehearsal: Option<Vec<RehearseFault>>,
    /// The Cloud TPU API; only tests point it elsewhere.
    pub api_url: String,
}

/// The settings of a Kubernetes Job run; the default is the command
/// line's (no site value, spot TPU v6e 1x1 nodes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct K8sOptions {
    pub namespace: String,
    pub kube_context: Option<String>,
    pub image: Option<String>,
    pub service_account: Option<String>,
    /// `cloud.google.com/gke-tpu-accelerator` of the node pool.
    pub accelerator: String,
    /// `cloud.google.com/gke-tpu-topology` of the node pool.
    pub topology: String,
    pub tpu_chips: u32,
    pub spot: bool,
    pub cpu: String,
    pub memory: String,
    pub job_deadline_s: i64,
    pub pending_timeout_s: u64,
    pub ttl_after_finished_s: i32,
    /// Pods of a sweep running at once.
    pub parallelism: i32,
    /// Print the Job and the Dockerfile instead of running them.
    pub dry_run: bool,
}

impl Default for K8sOptions {
    fn default() -> K8sOptions {
        K8sOptions {
            namespace: defaults::K8S_NAMESPACE.to_owned(),
            kube_context: None,
            image: None,
            service_account: None,
            accelerator: defaults::K8S_ACCELERATOR.to_owned(),
            topology: defaults::K8S_TOPOLOGY.to_owned(),
            tpu_chips: defaults::K8S_TPU_CHIPS,
            spot: true,
            cpu: defaults::K8S_POD_CPU.to_owned(),
            memory: defaults::K8S_POD_MEMORY.to_owned(),
            job_deadline_s: defaults::K8S_JOB_DEADLINE_S,
            pending_timeout_s: defaults::K8S_PENDING_TIMEOUT_S,
            ttl_after_finished_s: defaults::K8S_TTL_AFTER_FINISHED_S,
            parallelism: defaults::K8S_PARALLELISM,
            dry_run: false,
        }
    }
}

/// `manual` or `nightly`: where in the archive a run goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    #[default]
    Manual,
    Nightly,
}

impl ArchiveKind {
    pub fn name(self) -> &'static str {
        match self {
            ArchiveKind::Manual => "manual",
            ArchiveKind::Nightly => "nightly",
        }
    }
}

/// Where and whether a run is archived in GCS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivePlan {
    /// Archive the run folder when the session ends.
    pub upload: bool,
    pub bucket: Option<String>,
    pub prefix: String,
    pub kind: ArchiveKind,
    pub gcs_endpoint: String,
    /// Send no credentials (emulators only).
    pub gcs_anonymous: bool,
    /// Transfers in flight at once.
    pub gcs_jobs: usize,
}

/// A flag the plan asks for that its host cannot honour.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    #[error("{flag} is not supported with {host}: {why}")]
    Unsupported {
        flag: &'static str,
        host: &'static str,
        why: &'static str,
    },
    #[error("{flag} needs the newer profiling API, which sglang-jax {version} lacks{why}")]
    ServerLacks {
        flag: &'static str,
        version: String,
        why: &'static str,
    },
    #[error(
        "--endpoint score cannot run on sglang-jax {version}: POST /v1/score kills its server \
         (its log-probability path fails under jit); use --sglang-jax-version 0.0.1.post1 or \
         --endpoint generate"
    )]
    ScoreBroken { version: String },
    /// A flag of [`HOST_ONLY`] given for a host that lacks it.
    #[error("--{flag} is not supported with {host}: {why}")]
    HostOnly {
        flag: String,
        host: &'static str,
        why: &'static str,
    },
}

/// Flags (long names, without dashes) that only some hosts have, and why:
/// given to another host, they are refused in one line rather than ignored
/// ([`refuse_host_only`]).
pub const HOST_ONLY: &[(&[&str], &[HostKind], &str)] = &[
    (
        &[
            "project",
            "zone",
            "accelerator-type",
            "runtime-version",
            "provisioning",
            "queued",
            "vm",
            "keep",
            "sglang-jax-git",
            "sglang-jax-commit",
            "price-file",
            "usd-per-hour",
            "gcs-usd-per-gb-month",
            "gcloud-flag",
            "rehearsal",
            "rehearse-fault",
            "tpu-api-url",
        ],
        &[HostKind::Tpu],
        "it sets up the Cloud TPU VM of --tpu",
    ),
    (
        &[
            "namespace",
            "kube-context",
            "image",
            "service-account",
            "accelerator",
            "topology",
            "tpu-chips",
            "no-spot",
            "pod-cpu",
            "pod-memory",
            "job-deadline",
            "pending-timeout",
            "ttl-after-finished",
            "parallelism",
        ],
        &[HostKind::K8s],
        "it sets up the Job of --k8s",
    ),
    (
        &["dry-run"],
        &[HostKind::Tpu, HostKind::K8s],
        "only --tpu and --k8s print a plan instead of running it",
    ),
    (
        &["port"],
        &[HostKind::Local, HostKind::Tpu],
        "the server's port is chosen where it runs (the --attach URL, the pod)",
    ),
    (
        &["sweep", "sweep-file"],
        &[HostKind::Local, HostKind::K8s],
        "a sweep runs on one local server or as an Indexed Job",
    ),
    (
        &["api-key"],
        &[HostKind::Local, HostKind::Attach, HostKind::Tpu],
        "the pod starts its own server without a key",
    ),
];

/// Refuses the first of the `given` flags (long names) that [`HOST_ONLY`]
/// keeps from the host `kind`.
pub fn refuse_host_only(given: &[String], kind: HostKind) -> Result<(), PlanError> {
    for flag in given {
        if let Some((_, hosts, why)) = HOST_ONLY
            .iter()
            .find(|(flags, _, _)| flags.contains(&flag.as_str()))
            && !hosts.contains(&kind)
        {
            return Err(PlanError::HostOnly {
                flag: flag.clone(),
                host: kind.flag(),
                why,
            });
        }
    }
    Ok(())
}

/// Every setting of a run. Secrets are never serialised or rendered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub host: HostPlan,
    pub endpoint: Endpoint,
    /// Profiled requests; for `score`, rounded up to whole rounds of three.
    pub requests: usize,
    pub concurrency: usize,
    pub max_new_tokens: u32,
    pub stream: bool,
    pub prompt: String,
    /// Requests sent before the profile starts, in the workload's shape;
    /// twice the concurrency when `None` ([`Plan::warmup_requests`]).
    pub warmup: Option<usize>,
    pub num_steps: Option<u32>,
    pub host_tracer_level: u32,
    pub python_tracer_level: Option<u32>,
    /// Start the trace at this forward pass (the later profiling API).
    #[serde(default)]
    pub start_step: Option<u64>,
    /// Trace prefill and decode into separate folders (the later API).
    #[serde(default)]
    pub profile_by_stage: bool,
    pub sglang_jax_version: String,
    pub model_path: Option<String>,
    pub py_spy: bool,
    /// The serving load: dataset, arrivals, cap, metrics settings.
    #[serde(default)]
    pub load: crate::LoadSpec,
    /// The server's port on this machine; a free one when `None`.
    pub port: Option<u16>,
    /// Seconds to wait for the server to answer.
    pub ready_timeout_s: u64,
    /// Seconds to wait, at most, for other processes on this machine to
    /// calm down before the profiled window (servers on this machine or
    /// attached; a VM's is its own). The machine's state is recorded
    /// either way.
    #[serde(default = "default_quiet_wait_s")]
    pub quiet_wait_s: u64,
    /// The run folder; `runs/<run-id>` by default.
    pub out: Option<PathBuf>,
    pub archive: ArchivePlan,
    /// Sweep axes as given, `flag=v1,v2,...`.
    pub sweep: Vec<String>,
    pub sweep_file: Option<PathBuf>,
    /// Never serialised: a plan printed or saved holds no secret.
    #[serde(skip)]
    pub api_key: Option<String>,
}

/// The settings of a plan nobody chose: the command line's defaults and
/// [`Plan::new`]'s.
pub mod defaults {
    pub const REQUESTS: usize = 12;
    pub const CONCURRENCY: usize = 4;
    pub const MAX_NEW_TOKENS: u32 = 16;
    pub const PROMPT: &str = "hello world, what is the capital of france ?";
    pub const HOST_TRACER_LEVEL: u32 = 2;
    /// The newest sglang-jax release whose `/v1/score` works (0.0.2's
    /// fails on every device; `python/README.md` says where).
    pub const SGLANG_JAX_VERSION: &str = "0.0.1.post1";
    pub const READY_TIMEOUT_S: u64 = 300;
    pub const QUIET_WAIT_S: u64 = 20;
    /// The archive's prefix and endpoint (`gcs-artifacts` has the same).
    pub const BUCKET_PREFIX: &str = "sglang-profiles";
    pub const GCS_ENDPOINT: &str = "https://storage.googleapis.com";
    pub const GCS_JOBS: usize = 8;
    pub const K8S_NAMESPACE: &str = "default";
    pub const K8S_ACCELERATOR: &str = "tpu-v6e-slice";
    pub const K8S_TOPOLOGY: &str = "1x1";
    pub const K8S_TPU_CHIPS: u32 = 1;
    pub const K8S_POD_CPU: &str = "40";
    pub const K8S_POD_MEMORY: &str = "150Gi";
    pub const K8S_JOB_DEADLINE_S: i64 = 3600;
    pub const K8S_PENDING_TIMEOUT_S: u64 = 900;
    pub const K8S_TTL_AFTER_FINISHED_S: i32 = 86400;
    pub const K8S_PARALLELISM: i32 = 4;
}

fn default_quiet_wait_s() -> u64 {
    defaults::QUIET_WAIT_S
}

/// Flags [`Plan::reproduction`] leaves out, because they describe this
/// run rather than the session: a second run needs a folder of its own.
pub const PER_RUN_FLAGS: [&str; 1] = ["--out"];

impl Plan {
    /// The plan of a session on `host` with every other setting at its
    /// default: 12 `/generate` requests at concurrency 4, the default
    /// release, no archive.
    pub fn new(host: HostPlan) -> Plan {
        Plan {
            host,
            endpoint: Endpoint::Generate,
            requests: defaults::REQUESTS,
            concurrency: defaults::CONCURRENCY,
            max_new_tokens: defaults::MAX_NEW_TOKENS,
            stream: false,
            prompt: defaults::PROMPT.to_owned(),
            warmup: None,
            num_steps: None,
            host_tracer_level: defaults::HOST_TRACER_LEVEL,
            python_tracer_level: None,
            start_step: None,
            profile_by_stage: false,
            sglang_jax_version: defaults::SGLANG_JAX_VERSION.to_owned(),
            model_path: None,
            py_spy: false,
            load: crate::LoadSpec::default(),
            port: None,
            ready_timeout_s: defaults::READY_TIMEOUT_S,
            quiet_wait_s: defaults::QUIET_WAIT_S,
            out: None,
            archive: ArchivePlan {
                upload: false,
                bucket: None,
                prefix: defaults::BUCKET_PREFIX.to_owned(),
                kind: ArchiveKind::Manual,
                gcs_endpoint: defaults::GCS_ENDPOINT.to_owned(),
                gcs_anonymous: false,
                gcs_jobs: defaults::GCS_JOBS,
            },
            sweep: Vec::new(),
            sweep_file: None,
            api_key: None,
        }
    }

    /// Refuses, in one line, a flag this plan's host cannot honour. Every
    /// other flag means the same on every host.
    pub fn check(&self) -> Result<(), PlanError> {
        let host = self.host.kind().flag();
        let refuse = |flag, why| Err(PlanError::Unsupported { flag, host, why });
        if let HostPlan::Attach(_) = self.host {
            if self.py_spy {
                return refuse(
                    "--py-spy",
                    "the server was not started by sglprof, so there is no process to record \
                     (run py-spy on the server's machine)",
                );
            }
            if self.port.is_some() {
                return refuse("--port", "the server's port is in the --attach URL");
            }
        }
        Ok(())
    }

    /// Refuses, in one line, a profiling option the installed server
    /// `version` does not have. sglang-jax 0.0.x has neither `start_step`
    /// nor `profile_by_stage`, and reads `python_tracer_level` by
    /// truthiness, so an explicit 0 would silently mean the default (on).
    /// The score workload is refused on 0.0.2, whose `/v1/score` takes the
    /// server down on every device (`python/README.md` says where).
    pub fn check_server(&self, version: &str) -> Result<(), PlanError> {
        if !version.starts_with("0.0.") {
            return Ok(());
        }
        let release = version.split(['+', '-']).next().unwrap_or(version);
        if self.endpoint == Endpoint::Score && (release == "0.0.2" || release.starts_with("0.0.2."))
        {
            return Err(PlanError::ScoreBroken {
                version: version.to_owned(),
            });
        }
        let lacks = |flag, why| {
            Err(PlanError::ServerLacks {
                flag,
                version: version.to_owned(),
                why,
            })
        };
        if self.start_step.is_some() {
            return lacks("--start-step", "");
        }
        if self.profile_by_stage {
            return lacks("--profile-by-stage", "");
        }
        if self.python_tracer_level == Some(0) {
            return lacks(
                "--python-tracer-level 0",
                " (it would ignore 0 and trace Python anyway)",
            );
        }
        Ok(())
    }

    /// `--warmup`, or twice the concurrency.
    pub fn warmup_requests(&self) -> usize {
        self.warmup.unwrap_or(2 * self.concurrency.max(1))
    }

    /// The `/start_profile` body for a server writing into `output_dir`.
    pub fn start_profile(&self, output_dir: String) -> StartProfile {
        StartProfile {
            output_dir: Some(output_dir),
            num_steps: self.num_steps,
            host_tracer_level: Some(self.host_tracer_level),
            python_tracer_level: self.python_tracer_level,
            start_step: self.start_step,
            profile_by_stage: self.profile_by_stage.then_some(true),
            ..StartProfile::default()
        }
    }

    /// The plan as JSON, as a dry run prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serialises")
    }

    /// The arguments of `cargo xtask profile` that give this plan: the host
    /// flag and its settings, then every session setting. Values are
    /// spelled out even when they are the defaults, so the line means the
    /// same after a default changes. A URL is rendered without its
    /// credentials and the API key never appears.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Args::default();
        args.switch(self.host.kind().flag(), true);
        match &self.host {
            HostPlan::Local(local) => {
                args.flag("--device", local.device.name());
            }
            HostPlan::Attach(attach) => {
                args.0.push(crate::redact::url(&attach.url));
            }
            HostPlan::Tpu(tpu) => tpu_args(&mut args, tpu),
            HostPlan::K8s(k8s) => k8s_args(&mut args, k8s),
        }
        args.flag("--sglang-jax-version", &self.sglang_jax_version);
        args.opt("--model-path", self.model_path.as_deref());
        args.flag("--endpoint", self.endpoint.slug());
        // `--num-prompts` and `--max-concurrency` (in the load's flags) are
        // the newer names of these two, and exclude them.
        if self.load.num_prompts.is_none() {
            args.flag("--requests", self.requests);
        }
        if self.load.max_concurrency.is_none() {
            args.flag("--concurrency", self.concurrency);
        }
        args.opt("--warmup", self.warmup);
        args.flag("--max-new-tokens", self.max_new_tokens);
        args.flag("--prompt", &self.prompt);
        args.switch("--stream", self.stream);
        args.flag("--host-tracer-level", self.host_tracer_level);
        args.opt("--python-tracer-level", self.python_tracer_level);
        args.opt("--num-steps", self.num_steps);
        args.opt("--start-step", self.start_step);
        args.switch("--profile-by-stage", self.profile_by_stage);
        args.switch("--py-spy", self.py_spy);
        args.0.extend(self.load.to_args());
        args.opt("--port", self.port);
        args.flag("--ready-timeout", self.ready_timeout_s);
        args.flag("--quiet-wait", self.quiet_wait_s);
        args.opt("--out", self.out.as_ref().map(|it| it.display()));
        archive_args(&mut args, &self.archive);
        for axis in &self.sweep {
            args.flag("--sweep", axis);
        }
        args.opt(
            "--sweep-file",
            self.sweep_file.as_ref().map(|it| it.display()),
        );
        args.0
    }

    /// The one command line that runs this plan again: `cargo xtask
    /// profile` and [`Plan::to_args`] without [`PER_RUN_FLAGS`], each word
    /// shell-quoted. The API key is named by its environment variable.
    pub fn reproduction(&self) -> String {
        let mut words: Vec<String> = vec!["cargo".into(), "xtask".into(), "profile".into()];
        let mut args = self.to_args().into_iter();
        while let Some(word) = args.next() {
            if PER_RUN_FLAGS.contains(&word.as_str()) {
                args.next();
                continue;
            }
            words.push(word);
        }
        let line = words
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        match self.api_key {
            // The key itself stays in the user's environment.
            Some(_) => format!("SGLPROF_API_KEY=\"$SGLPROF_API_KEY\" {line}"),
            None => line,
        }
    }

    /// The plan of the `profile --local` session a Kubernetes pod runs for
    /// this plan: the same session on the node's TPU, into `run_dir`,
    /// archived in the plan's bucket; relative model paths are folders of
    /// the bucket mounted at `bucket_mount`.
    pub fn pod_plan(&self, run_dir: &str, bucket_mount: &str) -> Plan {
        let mut res = self.clone();
        res.host = HostPlan::Local(LocalOptions {
            device: Device::Tpu,
        });
        res.out = Some(PathBuf::from(run_dir));
        res.archive.upload = true;
        res.sweep.clear();
        res.sweep_file = None;
        res.port = None;
        if let Some(model) = &self.model_path
            && !model.starts_with('/')
        {
            res.model_path = Some(format!("{bucket_mount}/{model}"));
        }
        res
    }
}

/// Argument words being rendered.
#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn flag(&mut self, name: &str, value: impl std::fmt::Display) {
        self.0.push(name.to_owned());
        self.0.push(value.to_string());
    }
    fn opt(&mut self, name: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.flag(name, value);
        }
    }
    fn switch(&mut self, name: &str, on: bool) {
        if on {
            self.0.push(name.to_owned());
        }
    }
}

fn tpu_args(args: &mut Args, tpu: &TpuOptions) {
    args.opt("--project", tpu.project.as_deref());
    args.flag("--zone", &tpu.zone);
    args.flag("--accelerator-type", &tpu.accelerator_type);
    args.opt("--runtime-version", tpu.runtime_version.as_deref());
    args.flag("--provisioning", tpu.provisioning.as_str());
    args.switch("--queued", tpu.queued);
    args.opt("--vm", tpu.vm.as_deref());
    args.switch("--keep", tpu.keep);
    if let Some(git) = &tpu.git {
        args.flag("--sglang-jax-git", crate::redact::url(&git.url));
        args.flag("--sglang-jax-commit", &git.commit);
    }
    args.opt(
        "--price-file",
        tpu.price_file.as_ref().map(|it| it.display()),
    );
    args.opt("--usd-per-hour", tpu.usd_per_hour);
    args.flag("--gcs-usd-per-gb-month", tpu.gcs_usd_per_gb_month);
    for flag in &tpu.gcloud_flags {
        // `=` keeps a value that starts with dashes one word.
        args.0.push(format!("--gcloud-flag={flag}"));
    }
    args.switch("--dry-run", tpu.dry_run);
    if let Some(faults) = &tpu.rehearsal {
        args.switch("--rehearsal", true);
        for fault in faults {
            args.flag("--rehearse-fault", fault.name());
        }
    }
    if tpu.api_url != tpu_cloud::GOOGLE_API_URL {
        args.flag("--tpu-api-url", &tpu.api_url);
    }
}

fn k8s_args(args: &mut Args, k8s: &K8sOptions) {
    args.flag("--namespace", &k8s.namespace);
    args.opt("--kube-context", k8s.kube_context.as_deref());
    args.opt("--image", k8s.image.as_deref());
    args.opt("--service-account", k8s.service_account.as_deref());
    args.flag("--accelerator", &k8s.accelerator);
    args.flag("--topology", &k8s.topology);
    args.flag("--tpu-chips", k8s.tpu_chips);
    args.switch("--no-spot", !k8s.spot);
    args.flag("--pod-cpu", &k8s.cpu);
    args.flag("--pod-memory", &k8s.memory);
    args.flag("--job-deadline", k8s.job_deadline_s);
    args.flag("--pending-timeout", k8s.pending_timeout_s);
    args.flag("--ttl-after-finished", k8s.ttl_after_finished_s);
    args.flag("--parallelism", k8s.parallelism);
    args.switch("--dry-run", k8s.dry_run);
}

fn archive_args(args: &mut Args, archive: &ArchivePlan) {
    args.switch("--upload", archive.upload);
    args.opt("--bucket", archive.bucket.as_deref());
    args.flag("--bucket-prefix", &archive.prefix);
    args.flag("--archive-kind", archive.kind.name());
    args.flag("--gcs-endpoint", &archive.gcs_endpoint);
    args.switch("--gcs-anonymous", archive.gcs_anonymous);
    args.flag("--gcs-jobs", archive.gcs_jobs);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn only_a_local_server_lets_the_device_be_chosen() {
        let local = HostPlan::Local(LocalOptions::default());
        let chosen = local.clone().with_device(Some(Device::Tpu)).unwrap();
        assert_eq!(
            chosen,
            HostPlan::Local(LocalOptions {
                device: Device::Tpu
            })
        );
        assert_eq!(local.clone().with_device(None).unwrap(), local);
        let k8s = HostPlan::K8s(K8sOptions::default());
        assert!(k8s.clone().with_device(Some(Device::Tpu)).is_ok());
        assert_eq!(
            k8s.with_device(Some(Device::Cpu)).unwrap_err().to_string(),
            "--device cpu is not supported with --k8s: the Job runs on a GKE TPU node"
        );
        let attach = HostPlan::Attach(AttachOptions {
            url: "http://h".into(),
        });
        assert_eq!(
            attach
                .with_device(Some(Device::Cpu))
                .unwrap_err()
                .to_string(),
            "--device is not supported with --attach: the server already runs"
        );
    }

    #[test]
    fn host_only_flags_are_refused_elsewhere() {
        let given = ["requests".to_owned(), "vm".to_owned()];
        assert!(refuse_host_only(&given, HostKind::Tpu).is_ok());
        assert_eq!(
            refuse_host_only(&given, HostKind::Local)
                .unwrap_err()
                .to_string(),
            "--vm is not supported with --local: it sets up the Cloud TPU VM of --tpu"
        );
        for (flags, hosts, why) in HOST_ONLY {
            assert!(!flags.is_empty() && !hosts.is_empty() && !why.is_empty());
        }
    }

    pub(crate) fn plan(host: HostPlan) -> Plan {
        Plan {
            host,
            endpoint: Endpoint::Generate,
            requests: 12,
            concurrency: 4,
            max_new_tokens: 32,
            stream: true,
            prompt: "it's a test".into(),
            warmup: Some(8),
            num_steps: None,
            host_tracer_level: 2,
            python_tracer_level: Some(0),
            start_step: None,
            profile_by_stage: false,
            sglang_jax_version: "0.0.2".into(),
            model_path: None,
            py_spy: false,
            load: crate::LoadSpec::default(),
            port: None,
            ready_timeout_s: 300,
            quiet_wait_s: 20,
            out: Some("runs/x".into()),
            archive: ArchivePlan {
                upload: false,
                bucket: None,
                prefix: "sglang-profiles".into(),
                kind: ArchiveKind::Manual,
                gcs_endpoint: "https://storage.googleapis.com".into(),
                gcs_anonymous: false,
                gcs_jobs: 8,
            },
            sweep: Vec::new(),
            sweep_file: None,
            api_key: Some("s3cret".into()),
        }
    }

    pub(crate) fn tpu() -> TpuOptions {
        TpuOptions {
            project: Some("demo".into()),
            zone: "us-east5-b".into(),
            accelerator_type: "v6e-1".into(),
            runtime_version: None,
            provisioning: Provisioning::OnDemand,
            queued: false,
            vm: None,
            keep: false,
            git: Some(GitSource {
                url: "https://user:T0KEN@github.com/sgl-project/sglang-jax".into(),
                commit: "abc123".into(),
            }),
            price_file: None,
            usd_per_hour: None,
            gcs_usd_per_gb_month: 0.02,
            gcloud_flags: vec!["--tunnel-through-iap".into()],
            dry_run: false,
            rehearsal: None,
            api_url: tpu_cloud::GOOGLE_API_URL.into(),
        }
    }

    #[test]
    fn every_session_flag_is_reproduced_on_every_host() {
        for host in [
            HostPlan::Local(LocalOptions::default()),
            HostPlan::Tpu(tpu()),
        ] {
            let kind = host.kind();
            let line = plan(host).reproduction();
            for needle in [
                "--max-new-tokens 32",
                "--prompt 'it'\\''s a test'",
                "--python-tracer-level 0",
                "--stream",
                "--warmup 8",
                "--sglang-jax-version 0.0.2",
                kind.flag(),
            ] {
                assert!(line.contains(needle), "{needle} missing from {line}");
            }
            assert!(
                !line.contains("s3cret") && !line.contains("T0KEN"),
                "{line}"
            );
            assert!(!line.contains("--out"), "{line}");
            assert!(line.starts_with("SGLPROF_API_KEY=\"$SGLPROF_API_KEY\" cargo xtask profile"));
        }
    }

    #[test]
    fn a_tpu_plan_renders_its_host_settings() {
        let mut tpu = tpu();
        tpu.rehearsal = Some(vec![RehearseFault::Scp]);
        let line = plan(HostPlan::Tpu(tpu)).reproduction();
        for needle in [
            "cargo xtask profile --tpu --project demo --zone us-east5-b --accelerator-type v6e-1",
            "--provisioning on-demand",
            "--sglang-jax-git 'https://<redacted>@github.com/sgl-project/sglang-jax'",
            "--sglang-jax-commit abc123",
            "--gcloud-flag=--tunnel-through-iap",
            "--rehearsal --rehearse-fault scp",
        ] {
            assert!(line.contains(needle), "{needle} missing from {line}");
        }
    }

    #[test]
    fn the_pod_runs_the_same_session_locally_on_its_tpu() {
        let mut k8s = plan(HostPlan::Local(LocalOptions::default()));
        k8s.model_path = Some("models/tiny".into());
        k8s.sweep = vec!["concurrency=1,4".into()];
        let pod = k8s.pod_plan("/runs/r", "/mnt/bucket");
        let args = pod.to_args();
        let text = args.join(" ");
        for needle in [
            "--local --device tpu",
            "--stream",
            "--prompt it's a test",
            "--model-path /mnt/bucket/models/tiny",
            "--out /runs/r",
            "--upload",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert!(!text.contains("--sweep"), "{text}");
    }

    #[test]
    fn later_profiling_options_are_refused_on_old_servers() {
        let mut plan = plan(HostPlan::Local(LocalOptions::default()));
        assert_eq!(
            plan.check_server("0.0.2").unwrap_err().to_string(),
            "--python-tracer-level 0 needs the newer profiling API, which sglang-jax 0.0.2 lacks (it would ignore 0 and trace Python anyway)"
        );
        plan.check_server("0.1.0").unwrap();
        plan.python_tracer_level = None;
        plan.check_server("0.0.1.post1").unwrap();
        plan.start_step = Some(3);
        assert_eq!(
            plan.check_server("0.0.1.post1").unwrap_err().to_string(),
            "--start-step needs the newer profiling API, which sglang-jax 0.0.1.post1 lacks"
        );
        assert_eq!(plan.start_profile("d".into()).start_step, Some(3));
        plan.start_step = None;
        plan.profile_by_stage = true;
        assert!(plan.check_server("0.0.2").is_err());
        assert_eq!(plan.start_profile("d".into()).profile_by_stage, Some(true));
    }

    #[test]
    fn the_score_workload_is_refused_on_a_server_whose_score_crashes() {
        let mut plan = plan(HostPlan::Local(LocalOptions::default()));
        plan.python_tracer_level = None;
        plan.endpoint = Endpoint::Score;
        for version in ["0.0.2", "0.0.2.post1"] {
            assert_eq!(
                plan.check_server(version).unwrap_err(),
                PlanError::ScoreBroken {
                    version: version.to_owned()
                }
            );
        }
        for version in ["0.0.1.post1", "0.0.20", "0.1.0"] {
            plan.check_server(version).unwrap();
        }
        plan.endpoint = Endpoint::Generate;
        plan.check_server("0.0.2").unwrap();
    }

    #[test]
    fn a_printed_plan_holds_no_secret() {
        let text = plan(HostPlan::Tpu(tpu())).to_json();
        assert!(
            !text.contains("s3cret") && !text.contains("T0KEN"),
            "{text}"
        );
        assert!(text.contains("\"max_new_tokens\": 32"), "{text}");
    }

    #[test]
    fn attach_refuses_what_needs_the_server_process() {
        let mut plan = plan(HostPlan::Attach(AttachOptions {
            url: "http://127.0.0.1:30000".into(),
        }));
        plan.check().unwrap();
        plan.py_spy = true;
        assert!(
            plan.check()
                .unwrap_err()
                .to_string()
                .starts_with("--py-spy is not supported with --attach: ")
        );
    }
}
