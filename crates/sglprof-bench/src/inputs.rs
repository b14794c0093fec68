//! What the benchmarks measure on: the captured trace pair and the
//! xprof-rs binary, each set up once in the sglprof cache.
#![allow(clippy::disallowed_methods)] // Captures the trace and installs xprof-rs once.

use std::path::{Path, PathBuf};
use std::process::Command;

use trace_model::locate;
use xshell::{Shell, cmd};

use crate::{Error, io};

/// `<cache>/bench`: a trace pair captured once from the local CPU server
/// with a workload long enough to reach JAX's 1,000,000-event JSON cap
/// (12 /generate requests at concurrency 4, stopped with /stop_profile).
pub(crate) fn default_trace_dir(me: &Path) -> Result<PathBuf, Error> {
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
        .map_err(io("cannot run `xtask profile --local`"))?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "capturing the benchmark trace failed ({status})"
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(run.join("artifacts/jax-profile"), &dir).map_err(io(format!(
        "cannot move the captured profile to {}",
        dir.display()
    )))?;
    std::fs::write(dir.join("READY"), b"")
        .map_err(io("cannot mark the benchmark trace complete"))?;
    Ok(dir)
}

pub(crate) fn find_pair(dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    if !dir.is_dir() {
        return Err(Error::Failed(format!(
            "no benchmark trace at {}: give a JAX profile folder with --trace-dir, or leave it out to capture one",
            dir.display()
        )));
    }
    let files = profile_report::list_files(dir)?;
    locate(&files)
        .into_iter()
        .flat_map(|run| run.hosts)
        .find_map(|host| Some((host.trace_json?, host.xplane?)))
        .ok_or_else(|| {
            Error::Failed(format!(
                "{}: no trace.json.gz with its xplane.pb",
                dir.display()
            ))
        })
}

pub(crate) fn file_size(path: &Path) -> Result<u64, Error> {
    Ok(std::fs::metadata(path)
        .map_err(io(format!("cannot stat {}", path.display())))?
        .len())
}

/// Installs `xprof-rs` from PyPI into the sglprof cache once.
pub(crate) fn ensure_xprof_rs(sh: &Shell) -> Result<PathBuf, Error> {
    let venv = profile_driver::pyenv::cache_root()?.join("bench-tools");
    let bin = venv.join("bin/xprof-rs");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("installing xprof-rs into {} (once)", venv.display());
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .map_err(|source| Error::Shell {
            what: "cannot create the bench-tools venv".into(),
            source,
        })?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install -q xprof-rs==0.1.3")
        .run()
        .map_err(|source| Error::Shell {
            what: "cannot install xprof-rs from PyPI".into(),
            source,
        })?;
    Ok(bin)
}

/// Tilings of `base` (`trace_xplane::tile`) of about `sizes` GB each, made
/// once into `<cache>/bench-scale` (named by the base's name and size and
/// the target size).
pub(crate) fn ensure_tiles(base: &Path, sizes: &[f64]) -> Result<Vec<PathBuf>, Error> {
    let dir = profile_driver::pyenv::cache_root()?.join("bench-scale");
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let base_len = file_size(base)?;
    let stem = base
        .file_name()
        .and_then(|it| it.to_str())
        .unwrap_or("base")
        .trim_end_matches(".xplane.pb")
        .to_owned();
    let mut bytes: Option<Vec<u8>> = None;
    let mut res = Vec::new();
    for &gb in sizes {
        let path = dir.join(format!("{stem}-{base_len}-{gb}GB.xplane.pb"));
        if !path.is_file() {
            eprintln!("tiling {} into {} (once)", base.display(), path.display());
            if bytes.is_none() {
                // Read once (the base is a real capture of at most a few
                // hundred MB); the tiles are what is large.
                bytes = Some(
                    std::fs::read(base).map_err(io(format!("cannot read {}", base.display())))?,
                );
            }
            let tmp = path.with_extension("partial");
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&tmp)
                    .map_err(io(format!("cannot create {}", tmp.display())))?,
            );
            let factor = gb * 1e9 / base_len as f64;
            trace_xplane::tile(bytes.as_deref().expect("mapped above"), factor, &mut out).map_err(
                |source| Error::Tile {
                    what: format!("cannot tile {}", base.display()),
                    source,
                },
            )?;
            std::io::Write::flush(&mut out)
                .map_err(io(format!("cannot write {}", tmp.display())))?;
            drop(out);
            std::fs::rename(&tmp, &path)
                .map_err(io(format!("cannot move {} into place", tmp.display())))?;
        }
        res.push(path);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
    }

    #[test]
    fn the_trace_pair_of_a_profile_folder_is_found() {
        let dir = fixtures().join("jax-cpu-small");
        let (json, xplane) = find_pair(&dir).unwrap();
        assert!(json.ends_with("vm.trace.json.gz"), "{}", json.display());
        assert!(xplane.ends_with("vm.xplane.pb"), "{}", xplane.display());
        assert!(file_size(&json).unwrap() > 0);
    }

    #[test]
    fn a_folder_without_a_pair_is_refused_in_one_line() {
        let missing = fixtures().join("no-such-folder");
        let err = find_pair(&missing).unwrap_err().to_string();
        assert!(err.starts_with("no benchmark trace at "), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = find_pair(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with(": no trace.json.gz with its xplane.pb"),
            "{err}"
        );
    }
}
