//! Remote bash scripts for the TPU VM, rendered from templates with every
//! value shell-quoted, and the one quoting rule they all use.
//!
//! Remote paths are relative to the login user's home (`sglprof/...`), so
//! they need no `$HOME` expansion and `gcloud ... scp` accepts them as is.
//! Each script is sent as one `--command` argument wrapped by
//! [`remote_command`], so its text reaches `bash -c` byte for byte.

use std::collections::BTreeMap;

/// Where pip finds libtpu wheels; `pip install jax[tpu]` needs it.
pub const LIBTPU_FIND_LINKS: &str =
    "https://storage.googleapis.com/jax-releases/libtpu_releases.html";

/// The folder on the VM, relative to the home of the ssh user.
pub const REMOTE_DIR: &str = "sglprof";
pub const REMOTE_VENV: &str = "sglprof/venv";
pub const REMOTE_CHECKOUT: &str = "sglprof/sglang-jax";
pub const REMOTE_LOG: &str = "sglprof/server.log";
pub const REMOTE_PID: &str = "sglprof/server.pid";

/// Quotes `text` as one word for bash: plain words stay as they are,
/// anything else goes in single quotes with `'` written as `'\''`.
pub fn sh_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b));
    if plain {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Quotes and joins argv for display or for a script line.
pub fn sh_join(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| sh_quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `--command` value that runs `script` under bash with strict
/// settings, whatever the login shell is.
pub fn remote_command(script: &str) -> String {
    format!("bash -c {}", sh_quote(script))
}

/// Which sglang-jax to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageSource {
    /// `pip install sglang-jax[tpu]==VERSION` (newest when `None`).
    PyPi { version: Option<String> },
    /// A checkout of `url` at `commit`, installed editable from `python/`.
    Git { url: String, commit: String },
}

impl PackageSource {
    /// `sglang-jax 0.0.2 (PyPI)`, `https://...@a18802ac`.
    pub fn describe(&self) -> String {
        match self {
            PackageSource::PyPi { version: Some(v) } => format!("sglang-jax {v} (PyPI)"),
            PackageSource::PyPi { version: None } => "sglang-jax, newest (PyPI)".to_owned(),
            PackageSource::Git { url, commit } => format!("{url}@{commit}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct InstallSpec {
    pub source: PackageSource,
    /// More pip packages, e.g. `py-spy`.
    pub extra_packages: Vec<String>,
}

/// The install script: Python >= 3.12, a venv, sglang-jax with the `[tpu]`
/// extra and the libtpu find-links. Running it twice is harmless: each step
/// checks before it acts, and pip leaves satisfied requirements alone.
///
/// Its last lines are `sglprof-version NAME VERSION`, for the run metadata.
pub fn install_script(spec: &InstallSpec) -> String {
    let pip = format!("{REMOTE_VENV}/bin/python -m pip");
    let links = sh_quote(LIBTPU_FIND_LINKS);
    let mut out = String::new();
    out.push_str(INSTALL_PREAMBLE);
    match &spec.source {
        PackageSource::PyPi { version } => {
            let requirement = match version {
                Some(v) => format!("sglang-jax[tpu]=={v}"),
                None => "sglang-jax[tpu]".to_owned(),
            };
            out.push_str(&format!(
                "{pip} install --upgrade {} -f {links}\n",
                sh_quote(&requirement)
            ));
        }
        PackageSource::Git { url, commit } => {
            let (url, commit) = (sh_quote(url), sh_quote(commit));
            let dir = REMOTE_CHECKOUT;
            out.push_str(&format!(
                "\
command -v git >/dev/null 2>&1 || apt_install git
if [ ! -d {dir}/.git ]; then
  git clone --quiet {url} {dir}
fi
git -C {dir} remote set-url origin {url}
git -C {dir} fetch --quiet origin {commit} || git -C {dir} fetch --quiet --tags origin
git -C {dir} checkout --quiet --force {commit}
{pip} install -e {} -f {links}
",
                sh_quote(&format!("{dir}/python[tpu]")),
            ));
        }
    }
    if !spec.extra_packages.is_empty() {
        let extra = sh_join(&spec.extra_packages);
        out.push_str(&format!("{pip} install {extra}\n"));
    }
    out.push_str(&format!(
        "{REMOTE_VENV}/bin/python - <<'PY'\n{VERSIONS_PY}PY\n"
    ));
    out
}

const INSTALL_PREAMBLE: &str = r#"# sglprof: install sglang-jax on this TPU VM. Safe to run again.
set -euo pipefail
cd "$HOME"
mkdir -p sglprof
apt_install() {
  sudo DEBIAN_FRONTEND=noninteractive apt-get update -y -q
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}
PY=
for candidate in python3.13 python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    PY=$candidate
    break
  fi
done
if [ -z "$PY" ]; then
  apt_install software-properties-common
  sudo add-apt-repository -y ppa:deadsnakes/ppa
  apt_install python3.12 python3.12-venv python3.12-dev
  PY=python3.12
fi
if [ ! -x sglprof/venv/bin/pip ]; then
  rm -rf sglprof/venv
  if ! "$PY" -m venv sglprof/venv; then
    rm -rf sglprof/venv
    apt_install "$PY-venv"
    "$PY" -m venv sglprof/venv
  fi
fi
sglprof/venv/bin/python -m pip install --quiet --upgrade pip
"#;

const VERSIONS_PY: &str = r#"import importlib.metadata as m
import platform
print("sglprof-version python", platform.python_version())
for name in ("sglang-jax", "jax", "jaxlib", "libtpu"):
    try:
        print("sglprof-version", name, m.version(name))
    except m.PackageNotFoundError:
        pass
"#;

/// Reads the `sglprof-version NAME VERSION` lines of the install output.
pub fn parse_versions(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("sglprof-version ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct LaunchSpec {
    /// Arguments after `python`: `-m sgl_jax.launch_server --model-path ...`.
    pub python_args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// Starts the server detached (setsid + nohup, stdin closed) with its log
/// and pid file, unless the pid file names a live process already.
pub fn launch_script(spec: &LaunchSpec) -> String {
    let mut out = String::from(
        r#"# sglprof: start sglang-jax detached, with a log and a pid file.
set -euo pipefail
cd "$HOME"
mkdir -p sglprof
if [ -f sglprof/server.pid ] && kill -0 "$(cat sglprof/server.pid)" 2>/dev/null; then
  echo "sglang-jax is already running with pid $(cat sglprof/server.pid)"
  exit 0
fi
"#,
    );
    for (key, value) in &spec.env {
        out.push_str(&format!("export {key}={}\n", sh_quote(value)));
    }
    out.push_str(&format!(
        "setsid nohup {REMOTE_VENV}/bin/python {} >{REMOTE_LOG} 2>&1 </dev/null &\n",
        sh_join(&spec.python_args)
    ));
    out.push_str(&format!("echo $! >{REMOTE_PID}\n"));
    out.push_str(&format!(
        "echo \"started sglang-jax with pid $(cat {REMOTE_PID})\"\n"
    ));
    out
}

/// Checks that the server process still lives; prints the log tail and
/// fails if not.
pub fn alive_script() -> String {
    format!(
        r#"set -euo pipefail
cd "$HOME"
if [ -f {REMOTE_PID} ] && kill -0 "$(cat {REMOTE_PID})" 2>/dev/null; then
  echo alive
else
  echo "sglang-jax is not running; last lines of {REMOTE_LOG}:" >&2
  tail -n 40 {REMOTE_LOG} >&2 || true
  exit 1
fi
"#
    )
}

/// Stops the server started by [`launch_script`], if it runs.
pub fn stop_script() -> String {
    format!(
        r#"set -euo pipefail
cd "$HOME"
if [ -f {REMOTE_PID} ]; then
  pid=$(cat {REMOTE_PID})
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f {REMOTE_PID}
fi
"#
    )
}

/// Waits on the VM until `dir` holds a non-empty `.xplane.pb` and no file
/// under it grows any more, then lists the files (`SIZE PATH`, relative).
pub fn wait_for_traces_script(dir: &str, timeout_s: u64) -> String {
    format!(
        r#"# sglprof: wait until the profiler has written its files.
set -euo pipefail
dir={dir}
deadline=$((SECONDS + {timeout_s}))
until find "$dir" -name '*.xplane.pb' -size +0 2>/dev/null | grep -q .; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "no .xplane.pb under $dir after {timeout_s} s" >&2
    exit 1
  fi
  sleep 2
done
previous=
current=$(find "$dir" -type f -printf '%s %P\n' | sort)
while [ "$current" != "$previous" ] && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 3
  previous=$current
  current=$(find "$dir" -type f -printf '%s %P\n' | sort)
done
echo "$current"
"#,
        dir = sh_quote(dir)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("v6e-1"), "v6e-1");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(sh_quote(r#"{"a": "b"}"#), r#"'{"a": "b"}'"#);
    }

    #[test]
    fn versions() {
        let out = "noise\nsglprof-version jax 0.8.1\nsglprof-version python 3.12.3\n";
        let res = parse_versions(out);
        assert_eq!(res["jax"], "0.8.1");
        assert_eq!(res["python"], "3.12.3");
    }
}
