//! `profile --k8s`: a plan as a Job, and the Job's runs brought home.
//!
//! Each pod runs the local host of `profile-driver` on its node's TPU: the
//! same session as the plan's, rendered by
//! [`Plan::pod_plan`](profile_session::Plan::pod_plan) and
//! [`Plan::to_args`](profile_session::Plan::to_args), so every flag of the
//! plan reaches the pod. The pod archives its run folder in the plan's
//! bucket and logs the address; this side follows the Job, deletes it on
//! every path, downloads each variant's run verified against its manifest
//! (labelled by its pod's completion index) and writes a sweep's index.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use profile_driver::events::Progress as Events;
use profile_driver::sweep::Variant;
use profile_session::plan::{Device, HostPlan, K8sOptions, Plan};

use crate::{Error, ImageConfig, JobConfig, Progress, RunOptions};

/// Placeholders a dry run prints for values it was not given.
const IMAGE_PLACEHOLDER: &str = "IMAGE_URL";
const BUCKET_PLACEHOLDER: &str = "BUCKET_NAME";
const SA_PLACEHOLDER: &str = "K8S_SERVICE_ACCOUNT";

/// The K8s settings of a plan; the caller builds the plan with them.
fn options(plan: &Plan) -> Result<&K8sOptions, Error> {
    match &plan.host {
        HostPlan::K8s(k8s) => Ok(k8s),
        other => Err(Error::Plan(format!(
            "a {} plan is not a Kubernetes Job",
            other.kind().flag()
        ))),
    }
}

/// The image the Job runs: the plan's sglang-jax release for the TPU.
pub fn image_config(plan: &Plan) -> ImageConfig {
    ImageConfig {
        rust_image: format!("rust:{}-slim-bookworm", env!("CARGO_PKG_RUST_VERSION")),
        python_image: "python:3.11-slim-bookworm".into(),
        sglang_jax_version: plan.sglang_jax_version.clone(),
        device: Device::Tpu.name().to_owned(),
    }
}

/// The Job of `plan`: one pod, or one index per variant of a sweep
/// (`variants` empty without one). Placeholders stand in for missing site
/// values when `dry_run`.
pub fn job_config(
    plan: &Plan,
    variants: &[Variant],
    run_id: &str,
    dry_run: bool,
) -> Result<JobConfig, Error> {
    let k8s = options(plan)?;
    // Each pod runs the local host: what it would refuse is refused here,
    // before a Job exists.
    for plan in std::iter::once(plan).chain(variants.iter().map(|it| &it.plan)) {
        plan.check()
            .and_then(|()| plan.check_server(&plan.sglang_jax_version))
            .map_err(|err| Error::Plan(err.to_string()))?;
    }
    let required = |value: &Option<String>, flag: &str, env: &str, placeholder: &str| match value {
        Some(value) if !value.is_empty() => Ok(value.clone()),
        _ if dry_run => Ok(placeholder.to_owned()),
        _ => Err(Error::Plan(format!("--k8s needs {flag} (or {env})"))),
    };
    let image = required(
        &k8s.image,
        "--image",
        "SGLPROF_K8S_IMAGE",
        IMAGE_PLACEHOLDER,
    )?;
    let bucket = required(
        &plan.archive.bucket,
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
    let runs = crate::job::RUNS_MOUNT;
    let pod_args = |plan: &Plan, run_dir: &str| {
        let mut pod = plan.pod_plan(run_dir, crate::job::BUCKET_MOUNT);
        pod.archive.bucket = Some(bucket.clone());
        let mut args = vec!["profile".to_owned()];
        args.extend(pod.to_args());
        args
    };
    let variant_args = if variants.is_empty() {
        vec![pod_args(plan, &format!("{runs}/{run_id}"))]
    } else {
        variants
            .iter()
            .map(|variant| pod_args(&variant.plan, &format!("{runs}/{run_id}-{}", variant.slug)))
            .collect()
    };
    Ok(JobConfig {
        name: crate::job_name(run_id),
        run_id: run_id.to_owned(),
        namespace: k8s.namespace.clone(),
        image,
        service_account,
        bucket,
        accelerator: k8s.accelerator.clone(),
        topology: k8s.topology.clone(),
        tpu_chips: k8s.tpu_chips,
        spot: k8s.spot,
        cpu: k8s.cpu.clone(),
        memory: k8s.memory.clone(),
        shm_size: None,
        backoff_limit: 0,
        active_deadline_seconds: k8s.job_deadline_s,
        ttl_seconds_after_finished: k8s.ttl_after_finished_s,
        parallelism: k8s.parallelism,
        variants: variant_args,
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
    })
}

/// The dry run's text: the Job as YAML, then the Dockerfile.
pub fn dry_run_text(plan: &Plan, variants: &[Variant], run_id: &str) -> Result<String, Error> {
    let config = job_config(plan, variants, run_id, true)?;
    let job = crate::build_job(&config)?;
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
    out.push_str(&crate::to_yaml(&job)?);
    out.push_str("---\n# docker/Dockerfile.profiling\n");
    for line in crate::render_dockerfile(&image_config(plan)).lines() {
        let _ = writeln!(out, "# {line}");
    }
    Ok(out)
}

/// The plan the checked-in assets are generated from: the score Job with
/// py-spy, every other setting at the command line's default, and no site
/// value (the environment must not leak into them).
pub fn asset_plan() -> Plan {
    let mut plan = Plan::new(HostPlan::K8s(K8sOptions::default()));
    plan.endpoint = profile_session::Endpoint::Score;
    plan.py_spy = true;
    plan.sglang_jax_version = profile_driver::pyenv::DEFAULT_VERSION.to_owned();
    plan
}

/// The checked-in assets of `plan` (the score Job with py-spy):
/// `(path relative to the repository, text)`.
pub fn assets(plan: &Plan) -> Result<Vec<(PathBuf, String)>, Error> {
    let dockerfile = crate::render_dockerfile(&image_config(plan));
    let config = job_config(plan, &[], "RUN_ID", true)?;
    let yaml = crate::to_yaml(&crate::build_job(&config)?)?;
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

/// Runs the Job of `plan` (deleted on every path, `cancel` included),
/// downloads each variant's archived run into `out_dir` (a sweep's
/// variants into `out_dir/<slug>/`) and writes a sweep's `index.md`.
/// Returns the run folders.
pub async fn run(
    plan: &Plan,
    variants: &[Variant],
    run_id: &str,
    out_dir: &Path,
    progress: Arc<dyn Events>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Vec<PathBuf>, Error> {
    let k8s = options(plan)?;
    let config = job_config(plan, variants, run_id, false)?;
    let job = crate::build_job(&config)?;
    let client = crate::client_from_env(k8s.kube_context.as_deref()).await?;
    let opts = RunOptions {
        pending_timeout: Duration::from_secs(k8s.pending_timeout_s),
        ..RunOptions::default()
    };
    progress.line(
        "k8s",
        &format!(
            "job {} in namespace {} ({} variant(s))",
            config.name,
            config.namespace,
            config.variants.len()
        ),
    );
    let mut archived: BTreeMap<String, String> = BTreeMap::new();
    let outcome = crate::run_job(client, &job, &opts, cancel, &mut |event| {
        report(&event, &*progress, &mut archived)
    })
    .await?;
    progress.line(
        "k8s",
        &format!(
            "job {} finished in {:.0} s and was deleted",
            outcome.job,
            outcome.took.as_secs_f64()
        ),
    );
    // Each pod's address, by its completion index: the order of the
    // variants, whatever order the pods finished in.
    let mut by_index: Vec<(u32, String)> = outcome
        .pods
        .iter()
        .filter_map(|(index, pod)| archived.get(pod).map(|url| (*index, url.clone())))
        .collect();
    by_index.sort();
    if by_index.len() != config.variants.len() {
        return Err(Error::Plan(format!(
            "{} of {} pod(s) logged an archive address; the run folders are in gs://{}/{}",
            by_index.len(),
            config.variants.len(),
            config.bucket,
            plan.archive.prefix
        )));
    }
    let conn = profile_driver::archive::connection(&plan.archive);
    let mut folders = Vec::new();
    for (index, url) in &by_index {
        let dir = match variants.get(*index as usize) {
            Some(variant) if variants.len() > 1 => out_dir.join(&variant.slug),
            _ => out_dir.to_path_buf(),
        };
        profile_driver::archive::download(
            url,
            Some(dir.clone()),
            out_dir,
            false,
            &conn,
            &*progress,
        )
        .await
        .map_err(|err| Error::Plan(profile_driver::one_line(&err)))?;
        folders.push(dir);
    }
    if folders.len() > 1 {
        let index = profile_driver::sweep::write_index(out_dir, &folders)
            .map_err(|err| Error::Plan(profile_driver::one_line(&err)))?;
        progress.line("k8s", &format!("sweep index {}", index.display()));
    } else if let Some(dir) = folders.first() {
        progress.line(
            "k8s",
            &format!("report {}", dir.join("report.md").display()),
        );
    }
    Ok(folders)
}

/// `profile --k8s` with `plan`: its dry run's text when the plan asks for
/// one (nothing is run), else the Job run as [`run`] runs it, under a new
/// run id, into the plan's run folder.
pub async fn run_plan(
    plan: &Plan,
    variants: &[Variant],
    progress: Arc<dyn Events>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Option<String>, Error> {
    let run_id = profile_driver::run_id(plan, std::time::SystemTime::now());
    if options(plan)?.dry_run {
        return Ok(Some(dry_run_text(plan, variants, &run_id)?));
    }
    let out_dir = profile_driver::run_dir(plan, &run_id)
        .map_err(|err| Error::Plan(profile_driver::one_line(&err)))?;
    run(plan, variants, &run_id, &out_dir, progress, cancel).await?;
    Ok(None)
}

/// Shows one event; remembers the archive address each pod logs.
fn report(event: &Progress, progress: &dyn Events, archived: &mut BTreeMap<String, String>) {
    match event {
        Progress::Created { job } => progress.line("k8s", &format!("created job {job}")),
        Progress::Phase { pod, phase } => progress.line("k8s", &format!("pod {pod}: {phase}")),
        Progress::Pending { pod, explanation } => {
            progress.line("k8s", &format!("pod {pod} pending: {explanation}"))
        }
        Progress::Log { pod, line } => {
            progress.line("pod", &format!("{pod}: {line}"));
            if let Some(url) = archive_url(line) {
                archived.insert(pod.clone(), url);
            }
        }
        Progress::Deleted { job } => progress.line(
            "k8s",
            &format!("deleted job {job} (background propagation)"),
        ),
    }
}

/// The address in the session's `[profile] archived: gs://...` line.
fn archive_url(line: &str) -> Option<String> {
    let rest = line.split_once("[profile] archived: ")?.1.trim();
    rest.starts_with("gs://").then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_assets_are_fresh() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for (rel, text) in assets(&asset_plan()).unwrap() {
            let on_disk = std::fs::read_to_string(repo.join(&rel)).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} is stale: run `cargo xtask k8s assets`",
                rel.display()
            );
        }
    }

    #[test]
    fn the_dry_run_needs_no_other_flag() {
        let text = dry_run_text(&asset_plan(), &[], "20261130T210000Z-score-k8s").unwrap();
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

    #[tokio::test]
    async fn a_dry_run_plan_prints_and_runs_nothing() {
        let mut plan = asset_plan();
        if let HostPlan::K8s(k8s) = &mut plan.host {
            k8s.dry_run = true;
        }
        let progress = Arc::new(profile_driver::events::Recorded::default());
        let text = run_plan(&plan, &[], progress.clone(), std::future::pending())
            .await
            .unwrap()
            .unwrap();
        assert!(text.contains("- --py-spy"), "{text}");
        assert!(progress.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_real_run_needs_the_site_values() {
        let err = job_config(&asset_plan(), &[], "r", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--k8s needs --image (or SGLPROF_K8S_IMAGE)"
        );
    }

    #[test]
    fn archive_lines() {
        assert_eq!(
            archive_url("[profile] archived: gs://b/sglprof/manual/2026-11-30/x/"),
            Some("gs://b/sglprof/manual/2026-11-30/x/".to_owned())
        );
        assert_eq!(archive_url("[profile] report runs/x/report.md"), None);
    }
}
