//! What `cargo xtask bench` measures on: the captured trace pair and the
//! xprof-rs binary, each set up once in the sglprof cache.
#![allow(clippy::disallowed_methods)] // The benchmark runs the commands it measures.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, format_err};
use trace_model::locate;
use xshell::{Shell, cmd};

/// `<cache>/bench`: a trace pair captured once from the local CPU server
/// with a workload long enough to reach JAX's 1,000,000-event JSON cap
/// (12 /generate requests at concurrency 4, stopped with /stop_profile).
pub(crate) fn default_trace_dir(me: &Path) -> anyhow::Result<PathBuf> {
    let cache = profile_driver::pyenv::cache_root()?;
    let dir = cache.join("bench");
    if dir.join("READY").is_file() {
        return Ok(dir);
    }
    eprintln!(
        "capturing the benchmark trace once with `cargo xtask profile --local` into {}",
        dir.display()
    );
    let run = cache.join("bench-run");
    let _ = std::fs::remove_dir_all(&run);
    let status = Command::new(me)
        .args([
            "profile",
            "--local",
            "--requests",
            "12",
            "--concurrency",
            "4",
            "--out",
        ])
        .arg(&run)
        .status()
        .context("cannot run `xtask profile --local`")?;
    if !status.success() {
        bail!("capturing the benchmark trace failed ({status})");
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(run.join("artifacts/jax-profile"), &dir)
        .with_context(|| format!("cannot move the captured profile to {}", dir.display()))?;
    std::fs::write(dir.join("READY"), b"").context("cannot mark the benchmark trace complete")?;
    Ok(dir)
}

pub(crate) fn find_pair(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !dir.is_dir() {
        bail!(
            "no benchmark trace at {}: give a JAX profile folder with --trace-dir, or leave it out to capture one",
            dir.display()
        );
    }
    let files = profile_report::list_files(dir)?;
    locate(&files)
        .into_iter()
        .flat_map(|run| run.hosts)
        .find_map(|host| Some((host.trace_json?, host.xplane?)))
        .ok_or_else(|| format_err!("{}: no trace.json.gz with its xplane.pb", dir.display()))
}

pub(crate) fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// Installs `xprof-rs` from PyPI into the sglprof cache once.
pub(crate) fn ensure_xprof_rs(sh: &Shell) -> anyhow::Result<PathBuf> {
    let venv = profile_driver::pyenv::cache_root()?.join("bench-tools");
    let bin = venv.join("bin/xprof-rs");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("installing xprof-rs into {} (once)", venv.display());
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .context("cannot create the bench-tools venv")?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install -q xprof-rs==0.1.3")
        .run()
        .context("cannot install xprof-rs from PyPI")?;
    Ok(bin)
}
