//! `cargo xtask artifacts`.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`artifacts` is not built yet")
}
