//! `cargo xtask profile`: a whole profiling session.

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub tpu: crate::tpu::TpuProfileArgs,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`profile` is not built yet")
}
