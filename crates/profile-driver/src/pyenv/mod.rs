//! The Python side of a server on this machine: a cached virtual
//! environment with a pinned sglang-jax on jax[cpu] (or, for a TPU,
//! jax[tpu] with libtpu), py-spy, and a tiny model built here.
//!
//! Everything is installed from PyPI by package name with pip (libtpu from
//! JAX's find-links page, as on a TPU VM) and nothing else is downloaded;
//! the model and its tokenizer are made by the builder in [`assets`], which
//! the binary carries. The cache lives outside any source tree
//! (`$SGLPROF_CACHE`, else `$XDG_CACHE_HOME/sglprof`, else
//! `~/.cache/sglprof`), one folder per sglang-jax version and device. A
//! folder counts only once its completion file is written, which happens
//! last, so an interrupted install is redone from nothing.
//!
//! This module is where the driver runs Python (pip and scripts, through
//! xshell); the server itself is spawned by `sglang-server`'s supervisor.
#![allow(clippy::disallowed_methods)] // A designated spawn site.

pub mod assets;
pub mod device;
pub mod flavor;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use profile_session::plan::Device;
use xshell::{Shell, cmd};

pub use flavor::{DEFAULT_VERSION, FLAVORS, Flavor, flavor};

use crate::events::Progress;

/// Why an environment could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    #[error("sglang-jax {version} is not supported locally; known versions: {known}")]
    UnknownVersion { version: String, known: String },
    #[error("cannot place the cache: none of SGLPROF_CACHE, XDG_CACHE_HOME, HOME is set")]
    NoCache,
    #[error("--device tpu: {0}")]
    NoTpu(String),
    #[error("{what}")]
    Command {
        what: String,
        #[source]
        source: xshell::Error,
    },
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    Unexpected { what: String, detail: String },
    #[error("gave up waiting for the install lock {}", .0.display())]
    LockTimeout(PathBuf),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EnvError {
    let path = path.to_path_buf();
    move |source| EnvError::Io { what, path, source }
}

fn command(what: impl Into<String>) -> impl FnOnce(xshell::Error) -> EnvError {
    let what = what.into();
    move |source| EnvError::Command { what, source }
}

/// An installed environment.
#[derive(Clone, Debug)]
pub struct LocalEnv {
    pub flavor: &'static Flavor,
    /// What the environment's jax runs on.
    pub device: Device,
    pub venv: PathBuf,
    pub python: PathBuf,
    pub py_spy: PathBuf,
    pub model_dir: PathBuf,
    /// The folder put on the server's PYTHONPATH.
    pub shim_dir: PathBuf,
    /// JAX's persistent compilation cache of a CPU server: the shapes it
    /// compiles before serving are read from here on every later start
    /// (about 50 s of a 2-core machine's start-up, the first time).
    pub compile_cache: PathBuf,
    /// Versions recorded at install time.
    pub versions: EnvVersions,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EnvVersions {
    pub python: String,
    pub jax: String,
    pub jaxlib: String,
    pub sglang_jax: String,
    pub py_spy: String,
}

const COMPLETE_FILE: &str = "sglprof-env.json";

/// The cache folder: `$SGLPROF_CACHE`, else `$XDG_CACHE_HOME/sglprof`, else
/// `~/.cache/sglprof`.
pub fn cache_root() -> Result<PathBuf, EnvError> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SGLPROF_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(dir.join("sglprof"));
    }
    let home = var("HOME").ok_or(EnvError::NoCache)?;
    Ok(home.join(".cache").join("sglprof"))
}

/// Returns the environment for `version` on `device`, installing it first
/// if needed. Installing needs no TPU: the image build does it.
pub fn ensure(
    version: &str,
    device: Device,
    progress: &dyn Progress,
) -> Result<LocalEnv, EnvError> {
    let sh = &shell()?;
    let flavor = flavor(version)?;
    let root = cache_root()?;
    let name = match device {
        Device::Cpu => format!("venv-sglang-jax-{version}"),
        Device::Tpu => format!("venv-sglang-jax-{version}-tpu"),
    };
    let venv = root.join(&name);
    let assets = assets::ensure(&root)?;
    let versions = match read_complete(&venv) {
        Some(versions) => versions,
        None => {
            let _lock = InstallLock::acquire(&root.join(format!("{name}.lock")), progress)?;
            // Another process may have finished while we waited.
            match read_complete(&venv) {
                Some(versions) => versions,
                None => install(sh, flavor, device, &venv, progress)?,
            }
        }
    };
    let model_dir = ensure_model(sh, flavor, &root, &venv, &assets, progress)?;
    Ok(LocalEnv {
        flavor,
        device,
        python: venv.join("bin").join("python"),
        py_spy: venv.join("bin").join("py-spy"),
        venv,
        model_dir,
        shim_dir: assets.shim_dir(),
        compile_cache: root.join("jax-compilation-cache").join(&name),
        versions,
    })
}

fn shell() -> Result<Shell, EnvError> {
    Shell::new().map_err(command("cannot start a shell"))
}

fn read_complete(venv: &Path) -> Option<EnvVersions> {
    let text = std::fs::read_to_string(venv.join(COMPLETE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn install(
    sh: &Shell,
    flavor: &Flavor,
    device: Device,
    venv: &Path,
    progress: &dyn Progress,
) -> Result<EnvVersions, EnvError> {
    let version = flavor.version;
    let started = Instant::now();
    let jax = flavor.jax_requirement(device);
    progress.line(
        "env",
        &format!(
            "installing sglang-jax {version} with {jax} into {}",
            venv.display()
        ),
    );
    progress.line(
        "env",
        "this happens once per version and takes a minute or two",
    );
    if venv.exists() {
        std::fs::remove_dir_all(venv).map_err(io("cannot remove the incomplete", venv))?;
    }
    let base_python = std::env::var("SGLPROF_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    cmd!(sh, "{base_python} -m venv {venv}")
        .run()
        .map_err(command(format!(
            "`{base_python} -m venv` failed; Python 3.11 with the venv module is required"
        )))?;
    let python = venv.join("bin").join("python");
    let _offline = sh.push_env("HF_HUB_OFFLINE", "1");
    let pip = |args: &[&str]| -> Result<(), EnvError> {
        cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check {args...}"
        )
        .run()
        .map_err(command(format!("pip install {} failed", args.join(" "))))
    };
    pip(&["--upgrade", "pip"])?;
    progress.line(
        "env",
        &format!("sglang-jax {version} without its jax[tpu] requirement"),
    );
    let package = format!("sglang-jax=={version}");
    let mut args = vec!["--no-deps", package.as_str()];
    if flavor.ignore_requires_python {
        args.push("--ignore-requires-python");
    }
    pip(&args)?;
    let requires = cmd!(
        sh,
        "{python} -c 'import importlib.metadata as m; print(\"\\n\".join(m.requires(\"sglang-jax\") or []))'"
    )
    .read()
    .map_err(command("cannot read the requirements of the installed sglang-jax"))?;
    let mut reqs = runtime_requirements(&requires);
    reqs.push(jax);
    reqs.extend(flavor.extra_pins.iter().map(|s| (*s).to_owned()));
    reqs.push(profile_session::pyspy::PACKAGE.to_owned());
    let reqs_file = venv.join("sglprof-requirements.txt");
    std::fs::write(&reqs_file, reqs.join("\n") + "\n").map_err(io("cannot write", &reqs_file))?;
    progress.line(
        "env",
        &format!("{} requirements (the slow part)", reqs.len()),
    );
    let reqs_path = reqs_file.display().to_string();
    match device {
        Device::Cpu => pip(&["-r", &reqs_path])?,
        // libtpu is not on PyPI under the name jax[tpu] asks for.
        Device::Tpu => pip(&["-r", &reqs_path, "-f", tpu_cloud::script::LIBTPU_FIND_LINKS])?,
    }
    let report = cmd!(
        sh,
        "{python} -c 'import importlib.metadata as m, json, sys; print(json.dumps({\"python\": sys.version.split()[0], **{k: m.version(d) for k, d in [(\"jax\", \"jax\"), (\"jaxlib\", \"jaxlib\"), (\"sglang_jax\", \"sglang-jax\"), (\"py_spy\", \"py-spy\")]}}))'"
    )
    .read()
    .map_err(command("cannot read the installed versions"))?;
    let versions: EnvVersions =
        serde_json::from_str(report.trim()).map_err(|err| EnvError::Unexpected {
            what: "unexpected version report".to_owned(),
            detail: err.to_string(),
        })?;
    // Written last: its presence means the environment is complete.
    profile_session::run_folder::write_json(&venv.join(COMPLETE_FILE), &versions).map_err(
        |err| EnvError::Unexpected {
            what: "cannot complete the environment".to_owned(),
            detail: err.to_string(),
        },
    )?;
    progress.line(
        "env",
        &format!(
            "ready in {:.0} s: sglang-jax {}, jax {}, python {}",
            started.elapsed().as_secs_f64(),
            versions.sglang_jax,
            versions.jax,
            versions.python
        ),
    );
    Ok(versions)
}

/// The unconditional requirements of a wheel (one per line, as
/// `importlib.metadata.requires` prints them) minus its `jax` pin, which is
/// replaced by the flavor's (`jax[cpu]` or `jax[tpu]`).
pub fn runtime_requirements(requires: &str) -> Vec<String> {
    let mut res: Vec<String> = Vec::new();
    for line in requires.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("extra ==") || line.contains("extra==") {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
            .collect();
        if name.eq_ignore_ascii_case("jax")
            || name.eq_ignore_ascii_case("jaxlib")
            || name.eq_ignore_ascii_case("libtpu")
        {
            continue;
        }
        if !res.iter().any(|r| r == line) {
            res.push(line.to_owned());
        }
    }
    res
}

fn ensure_model(
    sh: &Shell,
    flavor: &Flavor,
    root: &Path,
    venv: &Path,
    assets: &assets::Assets,
    progress: &dyn Progress,
) -> Result<PathBuf, EnvError> {
    let dir = root.join("models").join(flavor.model_name);
    if dir.join("model.safetensors").exists() && dir.join("config.json").exists() {
        return Ok(dir);
    }
    progress.line(
        "env",
        &format!(
            "building the tiny model {} (random weights, local tokenizer)",
            flavor.model_name
        ),
    );
    let partial = root.join("models").join(format!(
        "{}.partial-{}",
        flavor.model_name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(io("cannot create", &partial))?;
    let python = venv.join("bin").join("python");
    let script = assets.model_builder();
    let args = flavor.model_args;
    let _offline = sh.push_env("HF_HUB_OFFLINE", "1");
    cmd!(sh, "{python} {script} {partial} {args...}")
        .run()
        .map_err(command("building the tiny model failed"))?;
    if let Err(err) = std::fs::rename(&partial, &dir) {
        // Someone else built it meanwhile; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.join("model.safetensors").exists() {
            return Err(io("cannot move the model to", &dir)(err));
        }
    }
    Ok(dir)
}

/// Label token ids for `words`, from the model's own tokenizer.
pub fn label_token_ids(
    env: &LocalEnv,
    model_dir: &Path,
    words: &[&str],
) -> Result<Vec<u32>, EnvError> {
    let sh = &shell()?;
    let python = &env.python;
    let script = assets::ensure(&cache_root()?)?.label_lookup();
    let _offline = sh.push_env("HF_HUB_OFFLINE", "1");
    let out = cmd!(sh, "{python} {script} {model_dir} {words...}")
        .quiet()
        .read()
        .map_err(command(
            "cannot tokenize the score labels with the model's tokenizer",
        ))?;
    let ids: std::collections::BTreeMap<String, Vec<u32>> = serde_json::from_str(out.trim())
        .map_err(|err| EnvError::Unexpected {
            what: "unexpected answer from the label lookup".to_owned(),
            detail: err.to_string(),
        })?;
    let mut res = Vec::new();
    for word in words {
        match ids.get(*word).map(Vec::as_slice) {
            Some([id]) => res.push(*id),
            Some(many) => {
                return Err(EnvError::Unexpected {
                    what: format!("score label {word:?}"),
                    detail: format!(
                        "it is {} tokens in this tokenizer; it must be one",
                        many.len()
                    ),
                });
            }
            None => {
                return Err(EnvError::Unexpected {
                    what: format!("score label {word:?}"),
                    detail: "the label lookup did not return it".to_owned(),
                });
            }
        }
    }
    Ok(res)
}

/// A lock directory (mkdir is atomic) holding the owner's pid. A lock whose
/// owner is gone is taken over.
struct InstallLock {
    dir: PathBuf,
}

impl InstallLock {
    fn acquire(dir: &Path, progress: &dyn Progress) -> Result<InstallLock, EnvError> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    let pid = dir.join("pid");
                    std::fs::write(&pid, std::process::id().to_string())
                        .map_err(io("cannot write", &pid))?;
                    return Ok(InstallLock {
                        dir: dir.to_path_buf(),
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(dir.join("pid"))
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    let owner_alive =
                        owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if !owner_alive && started.elapsed().as_secs() > 2 {
                        let _ = std::fs::remove_dir_all(dir);
                        continue;
                    }
                    if !said {
                        progress.line(
                            "env",
                            &format!(
                                "waiting for another sglprof install to finish ({})",
                                dir.display()
                            ),
                        );
                        said = true;
                    }
                    if started.elapsed().as_secs() > 1800 {
                        return Err(EnvError::LockTimeout(dir.to_path_buf()));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(err) => return Err(io("cannot create", dir)(err)),
            }
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_drop_extras_and_jax() {
        let requires = "fastapi~=0.116.1\njax[tpu]==0.6.2\nflax~=0.10.7\npytest; extra == \"dev\"\npsutil\npsutil\n";
        assert_eq!(
            runtime_requirements(requires),
            vec!["fastapi~=0.116.1", "flax~=0.10.7", "psutil"]
        );
    }
}
