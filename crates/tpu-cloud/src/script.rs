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
/// The API key on the VM, pushed as a file so that it is never in a
/// local argv (visible in `ps`) nor in a rendered script.
pub const REMOTE_API_KEY: &str = "sglprof/secret-api-key";
/// A git URL that carries a secret, for the same reason.
pub const REMOTE_GIT_URL: &str = "sglprof/secret-git-url";

/// A value that must reach the VM as a file: where it goes and what it is.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Relative to the remote home: [`REMOTE_API_KEY`], [`REMOTE_GIT_URL`].
    pub remote: &'static str,
    pub value: String,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFile({} = <redacted>)", self.remote)
    }
}

/// The shell word that reads a secret file on the VM.
fn secret_word(remote: &str) -> String {
    format!("\"$(cat {remote})\"")
}

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
    /// `sglang-jax 0.0.2 (PyPI)`, `https://...@a18802ac`. Whatever a git
    /// URL may carry as a secret is masked ([`crate::redact::url`]).
    pub fn describe(&self) -> String {
        match self {
            PackageSource::PyPi { version: Some(v) } => format!("sglang-jax {v} (PyPI)"),
            PackageSource::PyPi { version: None } => "sglang-jax, newest (PyPI)".to_owned(),
            PackageSource::Git { url, commit } => format!("{}@{commit}", crate::redact::url(url)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct InstallSpec {
    pub source: PackageSource,
    /// More pip packages, e.g. `py-spy`.
    pub extra_packages: Vec<String>,
    /// `None` on a TPU VM (`[tpu]` extra and libtpu); `Some` for a
    /// rehearsal worker on a CPU.
    pub cpu: Option<CpuInstall>,
}

/// How the install differs on a CPU-only worker (a rehearsal): the
/// package goes in without its dependencies, which are then installed
/// with the jax pin replaced by `jax_cpu`, as `profile --local` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInstall {
    /// `jax[cpu]==0.6.2`.
    pub jax_cpu: String,
    /// Pins applied on top of the wheel's requirements (`flax==0.12.0`).
    pub extra_pins: Vec<String>,
    /// The wheel asks for a newer Python than the worker has; install it
    /// anyway (the CPU shim backports what is needed).
    pub ignore_requires_python: bool,
}

impl InstallSpec {
    /// The secrets this install needs on the VM: a git URL that carries
    /// one (user information, a token in its query or fragment).
    pub fn secrets(&self) -> Vec<SecretFile> {
        match &self.source {
            PackageSource::Git { url, .. } if crate::redact::url_has_secret(url) => {
                vec![SecretFile {
                    remote: REMOTE_GIT_URL,
                    value: url.clone(),
                }]
            }
            _ => Vec::new(),
        }
    }
}

/// The install script: Python >= 3.12, a venv, sglang-jax with the `[tpu]`
/// extra and the libtpu find-links. Running it twice is harmless: each step
/// checks before it acts, and pip leaves satisfied requirements alone.
///
/// Its last lines are `sglprof-version NAME VERSION`, for the run metadata.
pub fn install_script(spec: &InstallSpec) -> String {
    let pip = format!("{REMOTE_VENV}/bin/python -m pip");
    let (extra, links) = match &spec.cpu {
        None => ("[tpu]", format!(" -f {}", sh_quote(LIBTPU_FIND_LINKS))),
        Some(_) => ("", String::new()),
    };
    let mut out = String::new();
    // The CPU recipe is proven on Python 3.11 (with the shim's backports).
    let min_python = if spec.cpu.is_some() {
        "(3, 11)"
    } else {
        "(3, 12)"
    };
    out.push_str(&INSTALL_PREAMBLE.replace("(3, 12)", min_python));
    let no_deps = match &spec.cpu {
        None => String::new(),
        Some(cpu) if cpu.ignore_requires_python => " --no-deps --ignore-requires-python".to_owned(),
        Some(_) => " --no-deps".to_owned(),
    };
    match &spec.source {
        PackageSource::PyPi { version } => {
            let requirement = match version {
                Some(v) => format!("sglang-jax{extra}=={v}"),
                None => format!("sglang-jax{extra}"),
            };
            out.push_str(&format!(
                "{pip} install --upgrade{no_deps} {}{links}\n",
                sh_quote(&requirement)
            ));
        }
        PackageSource::Git { url, commit } => {
            let url = if crate::redact::url_has_secret(url) {
                secret_word(REMOTE_GIT_URL)
            } else {
                sh_quote(url)
            };
            let commit = sh_quote(commit);
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
{pip} install{no_deps} -e {}{links}
",
                sh_quote(&format!("{dir}/python{extra}")),
            ));
        }
    }
    if let Some(cpu) = &spec.cpu {
        let mut pins = vec![cpu.jax_cpu.clone()];
        pins.extend(cpu.extra_pins.iter().cloned());
        out.push_str(&format!(
            "{REMOTE_VENV}/bin/python - <<'PY' >sglprof/requirements.txt\n{CPU_REQUIREMENTS_PY}PY\n"
        ));
        out.push_str(&format!(
            "{pip} install -r sglprof/requirements.txt {}\n",
            sh_join(&pins)
        ));
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

/// The wheel's unconditional requirements without jax, jaxlib and libtpu
/// (replaced by the CPU pins), one per line.
const CPU_REQUIREMENTS_PY: &str = r#"import importlib.metadata as m
import re
for req in m.requires("sglang-jax") or []:
    if "extra ==" in req or "extra==" in req:
        continue
    name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
    if name not in ("jax", "jaxlib", "libtpu"):
        print(req)
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
    /// The value of `--api-key` never appears in the rendered script: it
    /// is read from [`REMOTE_API_KEY`] on the VM (see [`LaunchSpec::secrets`]).
    pub python_args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

impl LaunchSpec {
    /// The secrets this launch needs on the VM: the `--api-key` value.
    pub fn secrets(&self) -> Vec<SecretFile> {
        api_key_value(&self.python_args)
            .map(|value| SecretFile {
                remote: REMOTE_API_KEY,
                value: value.to_owned(),
            })
            .into_iter()
            .collect()
    }
}

fn api_key_value(args: &[String]) -> Option<&str> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == "--api-key" {
            args.get(i + 1).map(String::as_str)
        } else {
            arg.strip_prefix("--api-key=")
        }
    })
}

/// `args` quoted for bash, with the API key replaced by a read of
/// [`REMOTE_API_KEY`].
fn args_without_secrets(args: &[String]) -> String {
    let mut words = Vec::with_capacity(args.len());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--api-key" {
            words.push(arg.clone());
            if iter.next().is_some() {
                words.push(secret_word(REMOTE_API_KEY));
            }
        } else if arg.starts_with("--api-key=") {
            words.push(format!("--api-key={}", secret_word(REMOTE_API_KEY)));
        } else {
            words.push(sh_quote(arg));
        }
    }
    words.join(" ")
}

/// Starts the server detached (setsid + nohup, stdin closed) with its log
/// and pid file, unless the pid file names a live process already.
pub fn launch_script(spec: &LaunchSpec) -> String {
    let mut out = String::from(
        r#"# sglprof: start sglang-jax detached, with a log and a pid file.
set -euo pipefail
cd "$HOME"
mkdir -p sglprof
if [ -f sglprof/server.pid ] && ps -o stat= -p "$(cat sglprof/server.pid)" 2>/dev/null | grep -qv ^Z; then
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
        args_without_secrets(&spec.python_args)
    ));
    out.push_str(&format!("echo $! >{REMOTE_PID}\n"));
    out.push_str(&format!(
        "echo \"started sglang-jax with pid $(cat {REMOTE_PID})\"\n"
    ));
    out
}

/// Checks that the server process still lives (a zombie does not: where
/// nothing reaps orphans, `kill -0` still finds a dead server); prints the
/// log tail and fails if not.
pub fn alive_script() -> String {
    format!(
        r#"set -euo pipefail
cd "$HOME"
if [ -f {REMOTE_PID} ] && ps -o stat= -p "$(cat {REMOTE_PID})" 2>/dev/null | grep -qv ^Z; then
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
  for _ in $(seq 1 30); do ps -o stat= -p "$pid" 2>/dev/null | grep -qv ^Z || break; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f {REMOTE_PID}
fi
"#
    )
}

/// Prints the pid of the server started by [`launch_script`]; fails with
/// the log tail when it is not running.
pub fn server_pid_script() -> String {
    alive_script().replace("  echo alive\n", &format!("  cat {REMOTE_PID}\n"))
}

/// The pid file of the helper `name` started by [`helper_start_script`].
pub fn helper_pid_file(name: &str) -> String {
    format!("{REMOTE_DIR}/{name}.pid")
}

/// The log of the helper `name` started by [`helper_start_script`].
pub fn helper_log_file(name: &str) -> String {
    format!("{REMOTE_DIR}/{name}.log")
}

/// The shell lines that set the array `SUDO` to `sudo -n` when attaching
/// to another process needs it: not root, and Yama restricts ptrace to
/// descendants (the default on Ubuntu, so on TPU VMs).
const PTRACE_SUDO: &str = r#"SUDO=()
if [ "$(id -u)" != 0 ] && [ "$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)" != 0 ]; then
  SUDO=(sudo -n)
fi
"#;

/// `running PID`: whether the process lives and is not a zombie.
const RUNNING: &str = r#"running() {
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != Z ]
}
"#;

/// Starts the venv's `program` with `args` detached beside the server
/// (setsid + nohup, stdin closed), its log in [`helper_log_file`] and its
/// pid in [`helper_pid_file`]; under `sudo -n` when it must attach to the
/// server (`ptrace`) and the VM restricts that. A helper that exits within
/// a second fails the script with its log tail.
pub fn helper_start_script(name: &str, program: &str, args: &[String], ptrace: bool) -> String {
    let (pid, log) = (helper_pid_file(name), helper_log_file(name));
    let (sudo_lines, sudo) = if ptrace {
        (PTRACE_SUDO, "\"${SUDO[@]}\" ")
    } else {
        ("", "")
    };
    format!(
        r#"# sglprof: start {name} beside the server.
set -euo pipefail
cd "$HOME"
mkdir -p {REMOTE_DIR}
{sudo_lines}{RUNNING}setsid nohup {sudo}{REMOTE_VENV}/bin/{program} {args} >{log} 2>&1 </dev/null &
echo $! >{pid}
sleep 1
if ! running "$(cat {pid})"; then
  echo "{name} exited at once; last lines of {log}:" >&2
  tail -n 20 {log} >&2 || true
  exit 1
fi
echo "started {name} with pid $(cat {pid})"
"#,
        program = sh_quote(program),
        args = sh_join(args),
    )
}

/// Sends SIGINT to the helper `name` (py-spy writes its output on SIGINT)
/// and waits up to `timeout_s` for it to exit; kills it and fails if it
/// does not. Nothing to do when it never started.
pub fn helper_stop_script(name: &str, timeout_s: u64) -> String {
    let (pid, log) = (helper_pid_file(name), helper_log_file(name));
    format!(
        r#"# sglprof: stop {name} and let it write its output.
set -euo pipefail
cd "$HOME"
[ -f {pid} ] || exit 0
{PTRACE_SUDO}{RUNNING}pid=$(cat {pid})
"${{SUDO[@]}}" kill -INT "$pid" 2>/dev/null || true
deadline=$((SECONDS + {timeout_s}))
while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
rm -f {pid}
if running "$pid"; then
  "${{SUDO[@]}}" kill -KILL "$pid" 2>/dev/null || true
  echo "{name} did not stop within {timeout_s} s; killed it. Last lines of {log}:" >&2
  tail -n 20 {log} >&2 || true
  exit 1
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

    /// Whatever a git URL carries as a secret goes to the VM as a file:
    /// never inline in the script, which travels in gcloud's argv.
    #[test]
    fn secret_git_urls_reach_the_vm_as_a_file() {
        for url in [
            "https://host/o/r.git?access_token=TOK",
            "https://bob:TOK'\"$x@host/o/r.git",
            "https://host/o/r.git#TOK",
        ] {
            let spec = InstallSpec {
                source: PackageSource::Git {
                    url: url.to_owned(),
                    commit: "a18802ac".to_owned(),
                },
                extra_packages: Vec::new(),
                cpu: None,
            };
            let script = install_script(&spec);
            assert!(!script.contains("TOK"), "{url}: {script}");
            assert!(script.contains(&format!("git clone --quiet \"$(cat {REMOTE_GIT_URL})\"")));
            assert_eq!(
                spec.secrets(),
                [SecretFile {
                    remote: REMOTE_GIT_URL,
                    value: url.to_owned()
                }]
            );
            assert!(!spec.source.describe().contains("TOK"), "{url}");
            assert!(spec.source.describe().ends_with("@a18802ac"));
        }
        // A plain URL stays inline.
        let spec = InstallSpec {
            source: PackageSource::Git {
                url: "https://github.com/sgl-project/sglang-jax".to_owned(),
                commit: "a18802ac".to_owned(),
            },
            extra_packages: Vec::new(),
            cpu: None,
        };
        assert!(spec.secrets().is_empty());
        assert!(install_script(&spec).contains("git clone --quiet https://github.com/"));
    }

    #[test]
    fn versions() {
        let out = "noise\nsglprof-version jax 0.8.1\nsglprof-version python 3.12.3\n";
        let res = parse_versions(out);
        assert_eq!(res["jax"], "0.8.1");
        assert_eq!(res["python"], "3.12.3");
    }
}
