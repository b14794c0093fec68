//! `cargo xtask k8s`: the checked-in assets of `profile --k8s`, and the
//! image's Python environment. The Job itself, its run and the plan the
//! assets are generated from are `k8s_job::profile`'s; its flags are
//! `crate::profile::K8sArgs`.

use anyhow::Context;
use profile_session::plan::Device;

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
            for (rel, text) in k8s_job::profile::assets(&k8s_job::profile::asset_plan())? {
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_sweep_overrides_the_flag_it_sweeps() {
        let mut plan = k8s_job::profile::asset_plan();
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
