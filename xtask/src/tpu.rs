//! `cargo xtask tpu`, `cargo xtask cleanup`, and the TPU half of
//! `cargo xtask profile --tpu`.

#[derive(clap::Args)]
pub struct Args {}

#[derive(clap::Args)]
pub struct CleanupArgs {}

/// The flags of `cargo xtask profile` that only matter with `--tpu`;
/// flattened into `profile::Args`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TpuProfileArgs {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`tpu` is not built yet")
}

pub fn cleanup(_args: CleanupArgs) -> anyhow::Result<()> {
    anyhow::bail!("`cleanup` is not built yet")
}

/// Runs `cargo xtask profile --tpu`.
pub fn profile_tpu(_args: &crate::profile::Args) -> anyhow::Result<()> {
    anyhow::bail!("`profile --tpu` is not built yet")
}
