//! `cargo xtask report`: analyse a JAX profile folder (or an sglprof run
//! folder) and write `report.md` and `summary.json`.

use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A JAX `output_dir`, a `plugins/profile/<run>/` folder, a trace file, or
    /// an sglprof run folder (its `inputs/run_metadata.json` is used).
    pub dir: PathBuf,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`report` is not built yet")
}

/// Writes `report.md` and `summary.json` into `out_dir` for the traces found
/// under `input`, using `<input>/inputs/run_metadata.json` when it exists
/// (and the py-spy files it names). Session drivers call this last.
pub fn generate(input: &Path, out_dir: &Path, top_n: usize) -> anyhow::Result<()> {
    let _ = (input, out_dir, top_n);
    anyhow::bail!("`report` is not built yet")
}
