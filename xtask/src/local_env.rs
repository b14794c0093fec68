//! The Python side of `cargo xtask profile --local`: a cached virtual
//! environment with a pinned sglang-jax on jax[cpu] (or, for `--device tpu`,
//! jax[tpu] with libtpu), py-spy, and a tiny model built on this machine.
//!
//! Everything is installed from PyPI by package name with pip (libtpu from
//! JAX's find-links page, as on a TPU VM) and nothing else is downloaded;
//! the model and its tokenizer are made by `python/make_tiny_model.py`. The
//! cache lives outside the source tree (`$SGLPROF_CACHE`, else
//! `$XDG_CACHE_HOME/sglprof`, else `~/.cache/sglprof`), one folder per
//! sglang-jax version and device. A folder counts only once its completion
//! file is written, which happens last, so an interrupted install is redone
//! from nothing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::device::Device;
pub use crate::flavor::{DEFAULT_VERSION, Flavor, flavor};

/// An installed environment.
#[derive(Clone, Debug)]
pub struct LocalEnv {
    pub flavor: &'static Flavor,
    /// What the environment's jax runs on.
    pub device: Device,
    #[allow(dead_code)] // For messages and future drivers.
    pub venv: PathBuf,
    pub python: PathBuf,
    pub py_spy: PathBuf,
    pub model_dir: PathBuf,
    /// The folder put on the server's PYTHONPATH.
    pub shim_dir: PathBuf,
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

pub fn cache_root() -> anyhow::Result<PathBuf> {
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
    let home = var("HOME")
        .context("cannot place the cache: none of SGLPROF_CACHE, XDG_CACHE_HOME, HOME is set")?;
    Ok(home.join(".cache").join("sglprof"))
}

/// Returns the CPU environment for `version`, installing it first if needed.
pub fn ensure(sh: &Shell, version: &str) -> anyhow::Result<LocalEnv> {
    ensure_for(sh, version, Device::Cpu)
}

/// Returns the environment for `version` on `device`, installing it first
/// if needed. Installing needs no TPU: the image build does it.
pub fn ensure_for(sh: &Shell, version: &str, device: Device) -> anyhow::Result<LocalEnv> {
    let flavor = flavor(version)?;
    let root = cache_root()?;
    let name = match device {
        Device::Cpu => format!("venv-sglang-jax-{version}"),
        Device::Tpu => format!("venv-sglang-jax-{version}-tpu"),
    };
    let venv = root.join(&name);
    let shim_dir = crate::project_root().join("python").join("cpu_shim");
    let versions = match read_complete(&venv) {
        Some(versions) => versions,
        None => {
            let _lock = InstallLock::acquire(&root.join(format!("{name}.lock")))?;
            // Another process may have finished while we waited.
            match read_complete(&venv) {
                Some(versions) => versions,
                None => install(sh, flavor, device, &venv)?,
            }
        }
    };
    let model_dir = ensure_model(sh, flavor, &root, &venv)?;
    Ok(LocalEnv {
        flavor,
        device,
        python: venv.join("bin").join("python"),
        py_spy: venv.join("bin").join("py-spy"),
        venv,
        model_dir,
        shim_dir,
        versions,
    })
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
) -> anyhow::Result<EnvVersions> {
    let version = flavor.version;
    let started = Instant::now();
    let jax = flavor.jax_requirement(device);
    eprintln!(
        "[env] installing sglang-jax {version} with {jax} into {}",
        venv.display()
    );
    eprintln!("[env] this happens once per version and takes a minute or two");
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .with_context(|| format!("cannot remove the incomplete {}", venv.display()))?;
    }
    let base_python = std::env::var("SGLPROF_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    cmd!(sh, "{base_python} -m venv {venv}")
        .run()
        .with_context(|| {
            format!("`{base_python} -m venv` failed; Python 3.11 with the venv module is required")
        })?;
    let python = venv.join("bin").join("python");
    let _offline = sh.push_env("HF_HUB_OFFLINE", "1");
    let pip = |args: &[&str]| -> anyhow::Result<()> {
        cmd!(
            sh,
            "{python} -m pip install --quiet --disable-pip-version-check {args...}"
        )
        .run()
        .with_context(|| format!("pip install {} failed", args.join(" ")))
    };
    pip(&["--upgrade", "pip"])?;
    eprintln!("[env] sglang-jax {version} without its jax[tpu] requirement");
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
    .context("cannot read the requirements of the installed sglang-jax")?;
    let mut reqs = runtime_requirements(&requires);
    reqs.push(jax);
    reqs.extend(flavor.extra_pins.iter().map(|s| (*s).to_owned()));
    reqs.push(profile_session::pyspy::PACKAGE.to_owned());
    let reqs_file = venv.join("sglprof-requirements.txt");
    std::fs::write(&reqs_file, reqs.join("\n") + "\n")?;
    eprintln!("[env] {} requirements (the slow part)", reqs.len());
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
    .context("cannot read the installed versions")?;
    let versions: EnvVersions =
        serde_json::from_str(report.trim()).context("unexpected version report")?;
    // Written last: its presence means the environment is complete.
    profile_session::run_folder::write_json(&venv.join(COMPLETE_FILE), &versions)?;
    eprintln!(
        "[env] ready in {:.0} s: sglang-jax {}, jax {}, python {}",
        started.elapsed().as_secs_f64(),
        versions.sglang_jax,
        versions.jax,
        versions.python
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

fn ensure_model(sh: &Shell, flavor: &Flavor, root: &Path, venv: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("models").join(flavor.model_name);
    if dir.join("model.safetensors").exists() && dir.join("config.json").exists() {
        return Ok(dir);
    }
    eprintln!(
        "[env] building the tiny model {} (random weights, local tokenizer)",
        flavor.model_name
    );
    let partial = root.join("models").join(format!(
        "{}.partial-{}",
        flavor.model_name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let python = venv.join("bin").join("python");
    let script = crate::project_root()
        .join("python")
        .join("make_tiny_model.py");
    let args = flavor.model_args;
    let _offline = sh.push_env("HF_HUB_OFFLINE", "1");
    cmd!(sh, "{python} {script} {partial} {args...}")
        .run()
        .context("building the tiny model failed")?;
    if let Err(err) = std::fs::rename(&partial, &dir) {
        // Someone else built it meanwhile; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.join("model.safetensors").exists() {
            return Err(err).with_context(|| format!("cannot move the model to {}", dir.display()));
        }
    }
    Ok(dir)
}

/// Label token ids for `words`, from the model's own tokenizer.
pub fn label_token_ids(
    sh: &Shell,
    python: &Path,
    model_dir: &Path,
    words: &[&str],
) -> anyhow::Result<Vec<u32>> {
    let script = crate::project_root()
        .join("python")
        .join("label_token_ids.py");
    let _offline = sh.push_env("HF_HUB_OFFLINE", "1");
    let out = cmd!(sh, "{python} {script} {model_dir} {words...}")
        .quiet()
        .read()
        .context("cannot tokenize the score labels with the model's tokenizer")?;
    let ids: std::collections::BTreeMap<String, Vec<u32>> =
        serde_json::from_str(out.trim()).context("unexpected answer from label_token_ids.py")?;
    let mut res = Vec::new();
    for word in words {
        match ids.get(*word).map(Vec::as_slice) {
            Some([id]) => res.push(*id),
            Some(many) => bail!(
                "score label {word:?} is {} tokens in this tokenizer; it must be one",
                many.len()
            ),
            None => bail!("label_token_ids.py did not return {word:?}"),
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
    fn acquire(dir: &Path) -> anyhow::Result<InstallLock> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    std::fs::write(dir.join("pid"), std::process::id().to_string())?;
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
                        eprintln!(
                            "[env] waiting for another sglprof install to finish ({})",
                            dir.display()
                        );
                        said = true;
                    }
                    if started.elapsed().as_secs() > 1800 {
                        bail!("gave up waiting for the install lock {}", dir.display());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot create {}", dir.display()));
                }
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
