//! `cargo xtask tpu` and `cargo xtask cleanup`.

#[derive(clap::Args)]
pub struct Args {}

#[derive(clap::Args)]
pub struct CleanupArgs {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`tpu` is not built yet")
}

pub fn cleanup(_args: CleanupArgs) -> anyhow::Result<()> {
    anyhow::bail!("`cleanup` is not built yet")
}
