//! `cargo xtask profile --k8s` up to the Job: its flags, the pod's command
//! line, the Job built by `k8s-job` and its dry run, and `cargo xtask k8s`
//! (assets, prepare).
//!
//! The pod runs the same session as `--local` (`profile --local --device
//! tpu` with the same workload flags, the server from the image's TPU
//! environment, the model from the GCS FUSE mount) and archives its run
//! folder with `--upload`. Running the Job and fetching what it archived is
//! `crate::k8s_run`'s.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use k8s_job::{ImageConfig, JobConfig, Variant};

use crate::device::Device;
use crate::profile::{Args, Endpoint};

/// Flags of `profile --k8s`. Site-specific values have no default: a dry
/// run shows a placeholder, a real run refuses to start without them.
#[derive(clap::Args, Clone, Debug)]
pub struct K8sArgs {
    /// Run the session as a Kubernetes Job (kubeconfig or in-cluster
    /// config). With --dry-run, print the Job and the Dockerfile.
    #[arg(long = "k8s", conflicts_with_all = ["local", "use_tpu"])]
    pub enabled: bool,
    /// The Job's namespace.
    #[arg(long, env = "SGLPROF_K8S_NAMESPACE", default_value = "default")]
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
    #[arg(long, env = "SGLPROF_K8S_ACCELERATOR", default_value = "tpu-v6e-slice")]
    pub accelerator: String,
    /// `cloud.google.com/gke-tpu-topology` of the node pool.
    #[arg(long, env = "SGLPROF_K8S_TOPOLOGY", default_value = "1x1")]
    pub topology: String,
    /// `google.com/tpu` chips per pod.
    #[arg(long, default_value_t = 1)]
    pub tpu_chips: u32,
    /// Schedule on on-demand nodes instead of spot nodes.
    #[arg(long)]
    pub no_spot: bool,
    #[arg(long = "pod-cpu", default_value = "40")]
    pub cpu: String,
    #[arg(long = "pod-memory", default_value = "150Gi")]
    pub memory: String,
    /// Seconds before Kubernetes stops the Job (activeDeadlineSeconds).
    #[arg(long, default_value_t = 3600)]
    pub job_deadline: i64,
    /// Seconds a pod may stay Pending before the run gives up.
    #[arg(long, default_value_t = 900)]
    pub pending_timeout: u64,
    /// Seconds a finished Job is kept if this command could not delete it
    /// (ttlSecondsAfterFinished).
    #[arg(long, default_value_t = 86400)]
    pub ttl_after_finished: i32,
    /// A sweep axis, `flag=v1,v2,...` (e.g. concurrency=1,4,16); repeat for
    /// a grid. One Indexed Job runs one variant per index.
    #[arg(long = "sweep")]
    pub sweep: Vec<String>,
    /// A file with one sweep axis per line.
    #[arg(long)]
    pub sweep_file: Option<PathBuf>,
    /// Pods of a sweep running at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: i32,
}

/// Placeholders a dry run prints for values it was not given.
const IMAGE_PLACEHOLDER: &str = "IMAGE_URL";
const BUCKET_PLACEHOLDER: &str = "BUCKET_NAME";
const SA_PLACEHOLDER: &str = "K8S_SERVICE_ACCOUNT";

/// The device the pod's session runs on: the node's TPU chips.
const POD_DEVICE: Device = Device::Tpu;

/// The sglang-jax release baked into the image, for the pod's device.
fn image_config(args: &Args) -> ImageConfig {
    ImageConfig {
        rust_image: format!("rust:{}-slim-bookworm", env!("CARGO_PKG_RUST_VERSION")),
        python_image: "python:3.11-slim-bookworm".into(),
        sglang_jax_version: args.sglang_jax_version.clone(),
        device: POD_DEVICE.name().to_owned(),
    }
}

/// The sweep's variants: one empty variant without a sweep.
fn sweep_variants(k8s: &K8sArgs) -> anyhow::Result<Vec<Variant>> {
    let mut axes = Vec::new();
    if let Some(path) = &k8s.sweep_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        axes = k8s_job::parse_sweep_file(&text).with_context(|| format!("{}", path.display()))?;
    }
    for axis in &k8s.sweep {
        let axis = k8s_job::parse_axis(axis)?;
        if axes.iter().any(|it: &k8s_job::Axis| it.flag == axis.flag) {
            bail!("sweep axis {} is given twice", axis.flag);
        }
        axes.push(axis);
    }
    Ok(k8s_job::variants(&axes)?)
}

/// The `profile --local` command line the pod runs for one variant.
fn pod_args(args: &Args, bucket: &str, run_dir: &str, variant: &Variant) -> Vec<String> {
    let endpoint = match args.endpoint {
        Endpoint::Generate => "generate",
        Endpoint::Score => "score",
    };
    let mut words: Vec<String> = vec![
        "profile".into(),
        "--local".into(),
        "--device".into(),
        POD_DEVICE.name().into(),
        "--endpoint".into(),
        endpoint.into(),
    ];
    let mut flag = |name: &str, value: String| {
        if !variant.iter().any(|(f, _)| f == name) {
            words.push(format!("--{name}"));
            words.push(value);
        }
    };
    flag("requests", args.requests.to_string());
    flag("concurrency", args.concurrency.to_string());
    flag("warmup", args.warmup_requests().to_string());
    flag("sglang-jax-version", args.sglang_jax_version.clone());
    flag("host-tracer-level", args.host_tracer_level.to_string());
    if args.endpoint == Endpoint::Generate {
        flag("max-new-tokens", args.max_new_tokens.to_string());
    }
    if let Some(steps) = args.num_steps {
        flag("num-steps", steps.to_string());
    }
    if let Some(level) = args.python_tracer_level {
        flag("python-tracer-level", level.to_string());
    }
    if let Some(model) = &args.model_path {
        // Relative model paths are folders of the mounted bucket.
        let path = if model.starts_with('/') {
            model.clone()
        } else {
            format!("{}/{model}", k8s_job::job::BUCKET_MOUNT)
        };
        flag("model-path", path);
    }
    flag("out", run_dir.to_owned());
    flag("bucket", bucket.to_owned());
    flag("bucket-prefix", args.archive.bucket_prefix.clone());
    // The serving load's flags, before a variant's so that a swept flag
    // (the later one) wins.
    words.extend(args.load.spec().to_args());
    for (name, value) in variant {
        words.push(format!("--{name}"));
        words.push(value.clone());
    }
    if args.py_spy {
        words.push("--py-spy".into());
    }
    words.push("--upload".into());
    words
}

/// The Job for these flags; placeholders stand in for missing site values
/// when `dry_run`.
pub fn job_config(args: &Args, run_id: &str, dry_run: bool) -> anyhow::Result<JobConfig> {
    let k8s = &args.k8s;
    if args.device.is_some_and(|it| it != POD_DEVICE) {
        bail!(
            "--device {} is not supported with --k8s: the Job runs on a GKE TPU node",
            args.device.unwrap_or_default().name()
        );
    }
    // The pod runs `profile --local`: what that would refuse is refused here,
    // before a Job exists.
    args.plan(profile_session::plan::HostKind::Local)?
        .check_server(&args.sglang_jax_version)?;
    let required = |value: &Option<String>, flag: &str, env: &str, placeholder: &str| match value {
        Some(value) if !value.is_empty() => Ok(value.clone()),
        _ if dry_run => Ok(placeholder.to_owned()),
        _ => Err(anyhow::anyhow!("--k8s needs {flag} (or {env})")),
    };
    let image = required(
        &k8s.image,
        "--image",
        "SGLPROF_K8S_IMAGE",
        IMAGE_PLACEHOLDER,
    )?;
    let bucket = required(
        &args.archive.bucket,
        "--bucket",
        "SGLPROF_BUCKET",
        BUCKET_PLACEHOLDER,
    )?;
    let service_account = required(
        &k8s.service_account,
        "--service-account",
        "SGLPROF_K8S_SERVICE_ACCOUNT",
        SA_PLACEHOLDER,
    )?;
    let variants = sweep_variants(k8s)?;
    let runs = k8s_job::job::RUNS_MOUNT;
    let variant_args: Vec<Vec<String>> = if variants.len() == 1 {
        vec![pod_args(
            args,
            &bucket,
            &format!("{runs}/{run_id}"),
            &variants[0],
        )]
    } else {
        variants
            .iter()
            .map(|variant| {
                let dir = format!("{runs}/{run_id}-{}", k8s_job::variant_slug(variant));
                pod_args(args, &bucket, &dir, variant)
            })
            .collect()
    };
    Ok(JobConfig {
        name: k8s_job::job_name(run_id),
        run_id: run_id.to_owned(),
        namespace: k8s.namespace.clone(),
        image,
        service_account,
        bucket,
        accelerator: k8s.accelerator.clone(),
        topology: k8s.topology.clone(),
        tpu_chips: k8s.tpu_chips,
        spot: !k8s.no_spot,
        cpu: k8s.cpu.clone(),
        memory: k8s.memory.clone(),
        shm_size: None,
        backoff_limit: 0,
        active_deadline_seconds: k8s.job_deadline,
        ttl_seconds_after_finished: k8s.ttl_after_finished,
        parallelism: k8s.parallelism,
        variants: variant_args,
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
    })
}

/// The dry run's text: the Job as YAML, then the Dockerfile.
pub fn dry_run_text(args: &Args, run_id: &str) -> anyhow::Result<String> {
    let config = job_config(args, run_id, true)?;
    let job = k8s_job::build_job(&config)?;
    let mut out = String::new();
    let placeholders: Vec<&str> = [
        (config.image == IMAGE_PLACEHOLDER, "IMAGE_URL (--image)"),
        (
            config.bucket == BUCKET_PLACEHOLDER,
            "BUCKET_NAME (--bucket)",
        ),
        (
            config.service_account == SA_PLACEHOLDER,
            "K8S_SERVICE_ACCOUNT (--service-account)",
        ),
    ]
    .into_iter()
    .filter_map(|(missing, text)| missing.then_some(text))
    .collect();
    out.push_str("# The Job `cargo xtask profile --k8s` creates (kubectl apply -f accepts it).\n");
    if !placeholders.is_empty() {
        let _ = writeln!(
            out,
            "# Placeholders to replace: {}.",
            placeholders.join(", ")
        );
    }
    out.push_str(&k8s_job::to_yaml(&job)?);
    out.push_str("---\n# docker/Dockerfile.profiling\n");
    for line in k8s_job::render_dockerfile(&image_config(args)).lines() {
        let _ = writeln!(out, "# {line}");
    }
    Ok(out)
}

/// The checked-in assets: `(path relative to the repository, text)`.
pub fn assets(args: &Args) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let dockerfile = k8s_job::render_dockerfile(&image_config(args));
    let config = job_config(args, "RUN_ID", true)?;
    let yaml = k8s_job::to_yaml(&k8s_job::build_job(&config)?)?;
    let job = format!(
        "# Generated by `cargo xtask k8s assets` (the Job of `cargo xtask profile --k8s --endpoint score --py-spy`).\n\
         # Placeholders to replace: IMAGE_URL, BUCKET_NAME, K8S_SERVICE_ACCOUNT, RUN_ID.\n{yaml}"
    );
    // BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile.
    let ignore = "# Generated by `cargo xtask k8s assets`.\ntarget/\nruns/\n.git/\n".to_owned();
    Ok(vec![
        (PathBuf::from("docker/Dockerfile.profiling"), dockerfile),
        (
            PathBuf::from("docker/Dockerfile.profiling.dockerignore"),
            ignore,
        ),
        (PathBuf::from("deploy/score-profiling-job.yaml"), job),
    ])
}

/// The flags the checked-in assets are generated from.
pub fn asset_args() -> Args {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }
    let mut args =
        Wrapper::parse_from(["profile", "--k8s", "--endpoint", "score", "--py-spy"]).args;
    // The environment must not leak site values into checked-in files.
    args.archive.bucket = None;
    args.archive.bucket_prefix = gcs_artifacts::DEFAULT_PREFIX.to_owned();
    args.k8s.image = None;
    args.k8s.service_account = None;
    args.k8s.namespace = "default".to_owned();
    args.k8s.accelerator = "tpu-v6e-slice".to_owned();
    args.k8s.topology = "1x1".to_owned();
    args.sglang_jax_version = crate::local_env::DEFAULT_VERSION.to_owned();
    args
}

/// `cargo xtask k8s`.
#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Rewrite docker/Dockerfile.profiling and deploy/ from the generator.
    Assets,
    /// Install the pinned sglang-jax environment into the cache (the
    /// image runs this at build time, for the TPU; no TPU is needed).
    Prepare {
        #[arg(long, default_value = crate::local_env::DEFAULT_VERSION)]
        sglang_jax_version: String,
        /// The device of the environment (`profile --local --device`).
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
    },
}

pub fn command(args: CommandArgs) -> anyhow::Result<()> {
    match args.command {
        Command::Assets => {
            let root = crate::project_root();
            for (rel, text) in assets(&asset_args())? {
                let path = root.join(&rel);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                profile_session::run_folder::write_atomic(&path, text.as_bytes())?;
                eprintln!("[k8s] wrote {}", rel.display());
            }
            Ok(())
        }
        Command::Prepare {
            sglang_jax_version,
            device,
        } => {
            let sh = xshell::Shell::new()?;
            let env = crate::local_env::ensure_for(&sh, &sglang_jax_version, device)?;
            eprintln!(
                "[k8s] sglang-jax {} for the {} ready in {}",
                env.flavor.version,
                device.name(),
                env.venv.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_assets_are_fresh() {
        let root = crate::project_root();
        for (rel, text) in assets(&asset_args()).unwrap() {
            let on_disk = std::fs::read_to_string(root.join(&rel)).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} is stale: run `cargo xtask k8s assets`",
                rel.display()
            );
        }
    }

    #[test]
    fn the_dry_run_needs_no_other_flag() {
        let text = dry_run_text(&asset_args(), "20261130T210000Z-score-k8s").unwrap();
        for needle in [
            "cloud.google.com/gke-tpu-accelerator: tpu-v6e-slice",
            "cloud.google.com/gke-tpu-topology: 1x1",
            "google.com/tpu:",
            "cloud.google.com/gke-spot:",
            "SYS_PTRACE",
            "medium: Memory",
            "gcsfuse.csi.storage.gke.io",
            "gke-gcsfuse/volumes:",
            "serviceAccountName: K8S_SERVICE_ACCOUNT",
            "backoffLimit: 0",
            "activeDeadlineSeconds: 3600",
            "ttlSecondsAfterFinished: 86400",
            "image: IMAGE_URL",
            "# Placeholders to replace: IMAGE_URL (--image), BUCKET_NAME (--bucket)",
            "- --py-spy",
            "# ENTRYPOINT",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn a_real_run_needs_the_site_values() {
        let err = job_config(&asset_args(), "r", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--k8s needs --image (or SGLPROF_K8S_IMAGE)"
        );
    }

    #[test]
    fn a_sweep_overrides_the_flag_it_sweeps() {
        let mut args = asset_args();
        args.k8s.sweep = vec!["concurrency=1,4,16".into()];
        let config = job_config(&args, "r", true).unwrap();
        assert_eq!(config.variants.len(), 3);
        let v = &config.variants[1];
        let at = v.iter().position(|it| it == "--concurrency").unwrap();
        assert_eq!(v[at + 1], "4");
        assert_eq!(v.iter().filter(|it| *it == "--concurrency").count(), 1);
        assert!(v.contains(&"/runs/r-concurrency-4".to_owned()));
    }
}
