//! `cargo xtask profile`: the flags of a run, turned into a
//! [`profile_session::Plan`] and handed to `profile-driver` (or, with
//! `--k8s`, to `k8s-job`). Signals are caught from the first moment and end
//! the run through its cancel future, so a stopped run leaves nothing
//! behind. A sweep's variants are made here: each is the base plan's own
//! argument list with the swept flag appended, parsed again by clap, so a
//! value is checked exactly as the flag checks it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args as _, FromArgMatches as _};
use profile_driver::host::Cancel;
use profile_driver::sweep::Variant;
use profile_session::plan::{
    AttachOptions, Device, Endpoint, GitSource, HostPlan, K8sOptions, LocalOptions, Plan,
    RehearseFault, TpuOptions, defaults, refuse_host_only,
};
use profile_session::sweep;
use tpu_cloud::api::Provisioning;

use crate::util::Lines;

pub const DEFAULT_ZONE: &str = "us-east5-b";

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Read flags from this TOML file, one key per long flag without its
    /// dashes (`endpoint = "score"`, `py-spy = true`); flags given on the
    /// command line win. See docs/ARCHITECTURE.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run the server on this machine (the default).
    #[arg(long, conflicts_with_all = ["use_tpu", "attach"])]
    pub local: bool,
    /// Run the server on a Cloud TPU VM.
    #[arg(long = "tpu", conflicts_with = "attach")]
    pub use_tpu: bool,
    /// Profile a server that is already running at this base URL (on this
    /// machine, or one that can write into this run folder's path).
    #[arg(long, value_name = "URL")]
    pub attach: Option<String>,
    /// What a server on this machine runs on: the CPU (with the CPU shim)
    /// or its TPU chips (jax[tpu], refused when no TPU is visible)
    /// [default: cpu; tpu in the pod of --k8s].
    #[arg(long, value_parser = ["cpu", "tpu"])]
    pub device: Option<String>,
    /// The profiled endpoint.
    #[arg(long, value_parser = ["generate", "score"], default_value = "generate")]
    pub endpoint: String,
    /// Profiled requests, the same as --num-prompts (an older name). For
    /// `score`, rounded up to whole rounds of the three-request RFC-010 mix.
    #[arg(long, default_value_t = defaults::REQUESTS)]
    pub requests: usize,
    /// Requests in flight in the closed loop (--request-rate inf), an older
    /// form of --max-concurrency; only --max-concurrency caps a finite rate.
    #[arg(long, default_value_t = defaults::CONCURRENCY)]
    pub concurrency: usize,
    /// `max_new_tokens` of each /generate request.
    #[arg(long, default_value_t = defaults::MAX_NEW_TOKENS)]
    pub max_new_tokens: u32,
    /// Stream the /generate answers (server-sent events).
    #[arg(long)]
    pub stream: bool,
    /// The prompt of each /generate request.
    #[arg(long, default_value = defaults::PROMPT)]
    pub prompt: String,
    /// Let the server stop the trace after N forward passes (it records
    /// N-1); by default the trace is stopped with /stop_profile.
    #[arg(long)]
    pub num_steps: Option<u32>,
    #[arg(long, default_value_t = defaults::HOST_TRACER_LEVEL)]
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
    #[arg(long, default_value = defaults::SGLANG_JAX_VERSION)]
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
    #[arg(long, default_value_t = defaults::READY_TIMEOUT_S)]
    pub ready_timeout: u64,
    /// Seconds to wait, at most, for other processes on this machine to
    /// calm down before the profiled window (a server on this machine or
    /// attached); 0 profiles at once. The machine's load is recorded in
    /// inputs/machine.json either way.
    #[arg(long, value_name = "SECONDS", default_value_t = defaults::QUIET_WAIT_S)]
    pub quiet_wait: u64,
    /// A sweep axis, `flag=v1,v2,...` (e.g. concurrency=1,4,16); repeat for
    /// a grid. Locally the variants run one after another on one server;
    /// with --k8s, one Indexed Job runs one variant per index.
    #[arg(long = "sweep")]
    pub sweep: Vec<String>,
    /// A file with one sweep axis per line.
    #[arg(long)]
    pub sweep_file: Option<PathBuf>,
    #[command(flatten)]
    pub load: crate::load_flags::LoadFlags,
    #[command(flatten)]
    pub tpu: TpuProfileArgs,
    #[command(flatten)]
    pub archive: crate::archive::ArchiveFlags,
    #[command(flatten)]
    pub k8s: K8sArgs,
    /// The long names of the flags given on the command line (or in the
    /// `--config` file), not taken from a default or the environment.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// Flags of `profile --k8s`. Site-specific values have no default: a dry
/// run shows a placeholder, a real run refuses to start without them.
#[derive(clap::Args, Clone, Debug)]
pub struct K8sArgs {
    /// Run the session as a Kubernetes Job (kubeconfig or in-cluster
    /// config). With --dry-run, print the Job and the Dockerfile.
    #[arg(long = "k8s", conflicts_with_all = ["local", "use_tpu", "attach"])]
    pub enabled: bool,
    /// The Job's namespace.
    #[arg(long, env = "SGLPROF_K8S_NAMESPACE", default_value = defaults::K8S_NAMESPACE)]
    pub namespace: String,
    /// The kubeconfig context (the cluster); the current one by default.
    #[arg(long, env = "SGLPROF_K8S_CONTEXT")]
    pub kube_context: Option<String>,
    /// The profiling image (built from docker/Dockerfile.profiling).
    #[arg(long, env = "SGLPROF_K8S_IMAGE")]
    pub image: Option<String>,
    /// The Kubernetes service account bound through Workload Identity to a
    /// Google service account that can read and write the bucket.
    #[arg(long, env = "SGLPROF_K8S_SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
    /// `cloud.google.com/gke-tpu-accelerator` of the node pool.
    #[arg(long, env = "SGLPROF_K8S_ACCELERATOR", default_value = defaults::K8S_ACCELERATOR)]
    pub accelerator: String,
    /// `cloud.google.com/gke-tpu-topology` of the node pool.
    #[arg(long, env = "SGLPROF_K8S_TOPOLOGY", default_value = defaults::K8S_TOPOLOGY)]
    pub topology: String,
    /// `google.com/tpu` chips per pod.
    #[arg(long, default_value_t = defaults::K8S_TPU_CHIPS)]
    pub tpu_chips: u32,
    /// Schedule on on-demand nodes instead of spot nodes.
    #[arg(long)]
    pub no_spot: bool,
    #[arg(long = "pod-cpu", default_value = defaults::K8S_POD_CPU)]
    pub cpu: String,
    #[arg(long = "pod-memory", default_value = defaults::K8S_POD_MEMORY)]
    pub memory: String,
    /// Seconds before Kubernetes stops the Job (activeDeadlineSeconds).
    #[arg(long, default_value_t = defaults::K8S_JOB_DEADLINE_S)]
    pub job_deadline: i64,
    /// Seconds a pod may stay Pending before the run gives up.
    #[arg(long, default_value_t = defaults::K8S_PENDING_TIMEOUT_S)]
    pub pending_timeout: u64,
    /// Seconds a finished Job is kept if this command could not delete it
    /// (ttlSecondsAfterFinished).
    #[arg(long, default_value_t = defaults::K8S_TTL_AFTER_FINISHED_S)]
    pub ttl_after_finished: i32,
    /// Pods of a sweep running at once.
    #[arg(long, default_value_t = defaults::K8S_PARALLELISM)]
    pub parallelism: i32,
}

impl K8sArgs {
    pub fn options(&self, dry_run: bool) -> K8sOptions {
        K8sOptions {
            namespace: self.namespace.clone(),
            kube_context: self.kube_context.clone(),
            image: self.image.clone(),
            service_account: self.service_account.clone(),
            accelerator: self.accelerator.clone(),
            topology: self.topology.clone(),
            tpu_chips: self.tpu_chips,
            spot: !self.no_spot,
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            job_deadline_s: self.job_deadline,
            pending_timeout_s: self.pending_timeout,
            ttl_after_finished_s: self.ttl_after_finished,
            parallelism: self.parallelism,
            dry_run,
        }
    }
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
    /// The TPU VM image (--tpu) [default: the accelerator family's].
    #[arg(long)]
    pub runtime_version: Option<String>,
    /// How the VM is billed (--tpu).
    #[arg(long, value_parser = ["on-demand", "spot", "preemptible"], default_value = "on-demand")]
    pub provisioning: String,
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
    #[arg(long, default_value_t = tpu_cloud::cost::GCS_USD_PER_GB_MONTH)]
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
    #[arg(long = "rehearse-fault", value_parser = ["stockout", "slow-create", "install", "server-exit", "scp"], requires = "rehearsal")]
    pub rehearse_faults: Vec<String>,
    #[arg(long, env = "SGLPROF_TPU_API_URL", default_value = tpu_cloud::GOOGLE_API_URL, hide = true)]
    pub tpu_api_url: String,
}

/// `profile` as a command of its own: a flag given twice takes its last
/// value (the command line's, after a `--config` file's).
pub fn command() -> clap::Command {
    Args::augment_args(clap::Command::new("profile").args_override_self(true))
}

/// The arguments after `profile`, parsed as the command line parses them.
pub fn parse(words: &[String]) -> anyhow::Result<Args> {
    let argv = std::iter::once("profile".to_owned()).chain(words.iter().cloned());
    let matches = command()
        .try_get_matches_from(argv)
        .map_err(|err| anyhow::anyhow!("{}", crate::util::clap_line(&err)))?;
    let mut args = Args::from_arg_matches(&matches)
        .map_err(|err| anyhow::anyhow!("{}", crate::util::clap_line(&err)))?;
    args.given = given(&matches);
    Ok(args)
}

/// The long names of the flags `matches` got from the command line.
pub fn given(matches: &clap::ArgMatches) -> Vec<String> {
    command()
        .get_arguments()
        .filter(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect()
}

impl Args {
    /// The plan these flags give, refused in one line when the chosen host
    /// cannot honour one of them.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let host = self.host_plan()?;
        refuse_host_only(&self.given, host.kind())?;
        let plan = Plan {
            host,
            endpoint: match self.endpoint.as_str() {
                "score" => Endpoint::Score,
                _ => Endpoint::Generate,
            },
            requests: self.requests,
            concurrency: self.concurrency,
            max_new_tokens: self.max_new_tokens,
            stream: self.stream,
            prompt: self.prompt.clone(),
            warmup: self.warmup,
            num_steps: self.num_steps,
            host_tracer_level: self.host_tracer_level,
            python_tracer_level: self.python_tracer_level,
            start_step: self.start_step,
            profile_by_stage: self.profile_by_stage,
            sglang_jax_version: self.sglang_jax_version.clone(),
            model_path: self.model_path.clone(),
            py_spy: self.py_spy,
            load: self.load.spec(),
            port: self.port,
            ready_timeout_s: self.ready_timeout,
            quiet_wait_s: self.quiet_wait,
            out: self.out.clone(),
            archive: self.archive.plan(),
            sweep: self.sweep.clone(),
            sweep_file: self.sweep_file.clone(),
            api_key: self.api_key.clone(),
        };
        plan.check()?;
        plan.load.check()?;
        Ok(plan)
    }

    fn host_plan(&self) -> anyhow::Result<HostPlan> {
        let host = if self.k8s.enabled {
            HostPlan::K8s(self.k8s.options(self.tpu.dry_run))
        } else if self.use_tpu {
            HostPlan::Tpu(self.tpu.options())
        } else if let Some(url) = &self.attach {
            HostPlan::Attach(AttachOptions { url: url.clone() })
        } else {
            HostPlan::Local(LocalOptions::default())
        };
        Ok(host.with_device(self.device.as_deref().and_then(Device::from_name))?)
    }
}

impl TpuProfileArgs {
    fn options(&self) -> TpuOptions {
        TpuOptions {
            project: self.project.clone(),
            zone: self.zone.clone(),
            accelerator_type: self.accelerator_type.clone(),
            runtime_version: self.runtime_version.clone(),
            provisioning: Provisioning::parse(&self.provisioning).unwrap_or(Provisioning::OnDemand),
            queued: self.queued,
            vm: self.vm.clone(),
            keep: self.keep,
            git: match (&self.sglang_jax_git, &self.sglang_jax_commit) {
                (Some(url), Some(commit)) => Some(GitSource {
                    url: url.clone(),
                    commit: commit.clone(),
                }),
                _ => None,
            },
            price_file: self.price_file.clone(),
            usd_per_hour: self.usd_per_hour,
            gcs_usd_per_gb_month: self.gcs_usd_per_gb_month,
            gcloud_flags: self.gcloud_flags.clone(),
            dry_run: self.dry_run,
            rehearsal: self.rehearsal.then(|| {
                self.rehearse_faults
                    .iter()
                    .filter_map(|name| RehearseFault::ALL.into_iter().find(|f| f.name() == name))
                    .collect()
            }),
            api_url: self.tpu_api_url.clone(),
        }
    }
}

/// The variants of `plan`'s sweep, each parsed by clap from the plan's own
/// arguments and the variant's values; empty without a sweep.
pub fn sweep_variants(plan: &Plan) -> anyhow::Result<Vec<Variant>> {
    let is_flag = |flag: &str| {
        command()
            .get_arguments()
            .any(|a| a.get_long() == Some(flag))
    };
    let mut res = Vec::new();
    for variant in sweep::grid(plan, is_flag)? {
        let words = sweep::variant_words(plan, &variant);
        let args = parse(&words)
            .map_err(|err| anyhow::anyhow!("--sweep {}: {err}", sweep::variant_label(&variant)))?;
        let mut variant_plan = args.plan()?;
        variant_plan.api_key = plan.api_key.clone();
        res.push(Variant {
            slug: sweep::variant_slug(&variant),
            plan: variant_plan,
        });
    }
    Ok(res)
}

/// Runs `cargo xtask profile`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let variants = sweep_variants(&plan)?;
    let progress: Arc<dyn profile_driver::events::Progress> = Arc::new(Lines);
    crate::util::runtime()?.block_on(async move {
        // From here on a signal never kills the run outright: it is
        // answered by ending what was started (a signal that came early
        // fires as soon as the host starts, before anything is created).
        let mut signals = tpu_cloud::lease::Signals::install().context("cannot handle signals")?;
        let cancel: Cancel = Box::pin(async move { signals.recv().await });
        match &plan.host {
            HostPlan::K8s(_) => {
                let cancel = async {
                    cancel.await;
                };
                if let Some(text) =
                    k8s_job::profile::run_plan(&plan, &variants, progress, cancel).await?
                {
                    print!("{text}");
                }
                Ok(())
            }
            _ => {
                let print: profile_driver::tpu::Print = Arc::new(|line: &str| println!("{line}"));
                Ok(profile_driver::run(&plan, &variants, progress, cancel, print).await?)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use profile_session::plan::{HOST_ONLY, HostKind};

    use super::*;

    /// Flags that choose the host rather than set something.
    const HOSTS: [(HostKind, &[&str]); 4] = [
        (HostKind::Local, &["--local"]),
        (HostKind::Attach, &["--attach", "http://127.0.0.1:30000"]),
        (HostKind::Tpu, &["--tpu", "--project", "demo"]),
        (HostKind::K8s, &["--k8s"]),
    ];

    /// Words that give `long` a value other than its default.
    fn sample(arg: &clap::Arg) -> Vec<String> {
        let long = arg.get_long().unwrap();
        let flag = format!("--{long}");
        if !arg.get_action().takes_values() {
            return match long {
                "rehearse-fault" | "rehearsal" => vec!["--rehearsal".into()],
                _ => vec![flag],
            };
        }
        let value = match long {
            "sglang-jax-git" | "sglang-jax-commit" => {
                return [
                    "--sglang-jax-git",
                    "https://github.com/sgl-project/sglang-jax",
                    "--sglang-jax-commit",
                    "abc123",
                ]
                .map(str::to_owned)
                .to_vec();
            }
            "rehearse-fault" => {
                return ["--rehearsal", "--rehearse-fault", "scp"]
                    .map(str::to_owned)
                    .to_vec();
            }
            "gcloud-flag" => return vec!["--gcloud-flag=--tunnel-through-iap".into()],
            "prompt" => "why?",
            "dataset" => "random",
            "request-rate" => "4",
            "percentiles" => "50,95",
            "slo" => "ttft=100,e2e=900",
            "save-dataset" => "/tmp/sglprof-walk.json",
            "tokenizer" => "/tmp/sglprof-walk-tokenizer",
            "range-ratio" | "burstiness" => "0.5",
            "model-path" => "models/tiny",
            "sglang-jax-version" => "0.0.2",
            "out" => "/tmp/sglprof-walk",
            "price-file" => "/tmp/prices.json",
            "sweep" => "concurrency=1,2",
            "sweep-file" => "/tmp/sweep.txt",
            "usd-per-hour" => "2.5",
            "gcs-usd-per-gb-month" => "0.03",
            "port" => "8123",
            "api-key" => "k3y",
            "tpu-api-url" | "gcs-endpoint" => "http://127.0.0.1:9",
            "pod-memory" => "32Gi",
            "bucket" | "bucket-prefix" | "project" | "zone" | "accelerator-type" | "vm"
            | "runtime-version" | "namespace" | "kube-context" | "image" | "service-account"
            | "accelerator" | "topology" => "x-1",
            _ => {
                let defaults: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|it| it.to_string_lossy().into_owned())
                    .collect();
                let possible = arg.get_possible_values();
                return match possible
                    .iter()
                    .map(|it| it.get_name().to_owned())
                    .rfind(|it| !defaults.contains(it))
                {
                    Some(value) => vec![flag, value],
                    None => vec![flag, "7".into()],
                };
            }
        };
        vec![flag, value.to_owned()]
    }

    /// Every flag of `profile`, on every host: refused in one line when
    /// the host lacks it, else it reaches the plan, survives the plan's own
    /// argument list unchanged, appears in the reproduction line (a secret
    /// by its variable only) and, for --k8s, in the pod's command line.
    #[test]
    fn every_flag_means_the_same_on_every_host_or_is_refused() {
        let mut checked = 0;
        for arg in command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "config", "local", "tpu", "k8s", "attach"].contains(&long) {
                continue;
            }
            for (kind, host_words) in HOSTS {
                let mut words: Vec<String> = host_words.iter().map(|it| (*it).to_owned()).collect();
                words.extend(sample(arg));
                let res = parse(&words).and_then(|it| it.plan());
                let allowed = HOST_ONLY
                    .iter()
                    .find(|(flags, _, _)| flags.contains(&long))
                    .is_none_or(|(_, hosts, _)| hosts.contains(&kind));
                let plan = match res {
                    Ok(plan) => plan,
                    Err(err) => {
                        let text = format!("{err:#}");
                        assert!(!text.contains('\n'), "{words:?}: {text}");
                        let refused_by_plan = kind == HostKind::Attach
                            && ["py-spy", "device"].contains(&long)
                            || kind != HostKind::Local && long == "device";
                        assert!(
                            !allowed || refused_by_plan,
                            "{words:?} is refused but should run: {text}"
                        );
                        continue;
                    }
                };
                assert!(allowed, "{words:?} is accepted on {kind:?} and ignored");
                // The plan's own arguments give the same plan.
                let again = parse(&plan.to_args())
                    .and_then(|it| it.plan())
                    .unwrap_or_else(|err| panic!("{words:?}: {:?}: {err:#}", plan.to_args()));
                let mut plan_nokey = plan.clone();
                plan_nokey.api_key = None;
                let mut again_nokey = again;
                again_nokey.api_key = None;
                assert_eq!(again_nokey, plan_nokey, "{words:?}");
                let line = plan.reproduction();
                match long {
                    "api-key" => {
                        assert!(!line.contains("k3y"), "{line}");
                        assert!(line.starts_with("SGLPROF_API_KEY="), "{line}");
                    }
                    "out" => assert!(!line.contains("--out"), "{line}"),
                    // The pod's device is always the node's TPU: its line
                    // below has it.
                    "device" if kind == HostKind::K8s => {}
                    _ => assert!(
                        line.contains(&format!("--{long}")),
                        "{long} missing: {line}"
                    ),
                }
                if kind == HostKind::K8s {
                    let pod = plan.pod_plan("/runs/r", "/mnt").to_args().join(" ");
                    let pod_only = ["out", "dry-run", "sweep", "sweep-file", "api-key"];
                    let k8s_only = HOST_ONLY[1].0;
                    if !pod_only.contains(&long) && !k8s_only.contains(&long) {
                        assert!(pod.contains(&format!("--{long}")), "{long} missing: {pod}");
                    }
                }
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn k8s_keeps_the_stream_and_prompt_of_the_session() {
        let words = ["--k8s", "--stream", "--prompt", "X", "--dry-run"].map(str::to_owned);
        let plan = parse(&words).unwrap().plan().unwrap();
        let text = k8s_job::profile::dry_run_text(&plan, &[], "r").unwrap();
        assert!(text.contains("- --stream"), "{text}");
        assert!(text.contains("- --prompt\n        - X"), "{text}");
    }

    #[test]
    fn tpu_only_flags_are_refused_with_k8s() {
        for flag in [
            ["--keep"].as_slice(),
            &["--vm", "v"],
            &["--queued"],
            &["--zone", "z"],
        ] {
            let mut words = vec!["--k8s".to_owned()];
            words.extend(flag.iter().map(|it| (*it).to_owned()));
            let err = parse(&words)
                .and_then(|it| it.plan())
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!(
                    "{} is not supported with --k8s: it sets up the Cloud TPU VM of --tpu",
                    flag[0]
                )
            );
        }
    }
}
