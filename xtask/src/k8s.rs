//! `cargo xtask k8s`: the checked-in assets of `profile --k8s`, and the
//! image's Python environment. The Job itself and its run are
//! `k8s_job::profile`'s; its flags are `crate::profile::K8sArgs`.

use anyhow::Context;
use profile_session::plan::{Device, Plan};

use crate::profile::K8sArgs;

/// The plan the checked-in assets are generated from: the score Job with
/// py-spy, no site value (the environment must not leak into them).
pub fn asset_plan() -> anyhow::Result<Plan> {
    let words = ["--k8s", "--endpoint", "score", "--py-spy"].map(str::to_owned);
    let args = crate::profile::parse(&words)?;
    let mut plan = args.plan()?;
    plan.archive.bucket = None;
    plan.archive.prefix = gcs_artifacts::DEFAULT_PREFIX.to_owned();
    plan.archive.gcs_endpoint = gcs_artifacts::GOOGLE_ENDPOINT.to_owned();
    plan.sglang_jax_version = profile_driver::pyenv::DEFAULT_VERSION.to_owned();
    plan.api_key = None;
    if let profile_session::plan::HostPlan::K8s(k8s) = &mut plan.host {
        *k8s = K8sArgs {
            enabled: true,
            namespace: "default".to_owned(),
            kube_context: None,
            image: None,
            service_account: None,
            accelerator: "tpu-v6e-slice".to_owned(),
            topology: "1x1".to_owned(),
            ..args.k8s.clone()
        }
        .options(false);
    }
    Ok(plan)
}

/// `cargo xtask k8s`.
#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Rewrite docker/Dockerfile.profiling and deploy/ from the generator,
    /// in the current directory (the checkout).
    Assets,
    /// Install the pinned sglang-jax environment into the cache (the
    /// image runs this at build time, for the TPU; no TPU is needed).
    Prepare {
        #[arg(long, default_value = profile_driver::pyenv::DEFAULT_VERSION)]
        sglang_jax_version: String,
        /// The device of the environment (`profile --local --device`).
        #[arg(long, value_parser = ["cpu", "tpu"], default_value = "cpu")]
        device: String,
    },
}

pub fn command(args: CommandArgs) -> anyhow::Result<()> {
    match args.command {
        Command::Assets => {
            for (rel, text) in k8s_job::profile::assets(&asset_plan()?)? {
                if let Some(dir) = rel.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                profile_session::run_folder::write_atomic(&rel, text.as_bytes())?;
                eprintln!("[k8s] wrote {}", rel.display());
            }
            Ok(())
        }
        Command::Prepare {
            sglang_jax_version,
            device,
        } => {
            let device = Device::from_name(&device).unwrap_or_default();
            let env =
                profile_driver::pyenv::ensure(&sglang_jax_version, device, &crate::util::Lines)?;
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

/// Where the checked-in assets live, for the freshness test.
#[cfg(test)]
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_assets_are_fresh() {
        for (rel, text) in k8s_job::profile::assets(&asset_plan().unwrap()).unwrap() {
            let on_disk = std::fs::read_to_string(repo().join(&rel)).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} is stale: run `cargo xtask k8s assets`",
                rel.display()
            );
        }
    }

    #[test]
    fn the_dry_run_needs_no_other_flag() {
        let text = k8s_job::profile::dry_run_text(
            &asset_plan().unwrap(),
            &[],
            "20261130T210000Z-score-k8s",
        )
        .unwrap();
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
        let err =
            k8s_job::profile::job_config(&asset_plan().unwrap(), &[], "r", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--k8s needs --image (or SGLPROF_K8S_IMAGE)"
        );
    }

    #[test]
    fn a_sweep_overrides_the_flag_it_sweeps() {
        let mut plan = asset_plan().unwrap();
        plan.sweep = vec!["concurrency=1,4,16".into()];
        let variants = crate::profile::sweep_variants(&plan).unwrap();
        let config = k8s_job::profile::job_config(&plan, &variants, "r", true).unwrap();
        assert_eq!(config.variants.len(), 3);
        let v = &config.variants[1];
        let at = v.iter().position(|it| it == "--concurrency").unwrap();
        assert_eq!(v[at + 1], "4");
        assert_eq!(v.iter().filter(|it| *it == "--concurrency").count(), 1);
        assert!(v.contains(&"/runs/r-concurrency-4".to_owned()));
        assert!(!v.iter().any(|it| it.starts_with("--sweep")), "{v:?}");
    }
}
