//! Remote execution on a TPU VM through `gcloud compute tpus tpu-vm
//! ssh/scp`. With [`crate::workers::LocalWorkers`], the only place the
//! crate starts processes; each runs in its own process group, killed as a
//! whole on cancel.
//!
//! Argv is built as a list (`*_argv` functions, snapshot-tested) and run
//! with `xshell::cmd!`, which passes each element as one argument: no
//! local shell ever parses it. The remote side gets one `--command` string
//! made by [`crate::script::remote_command`].

use std::path::Path;

use crate::Error;
use crate::client::Transcript;
use crate::script::{remote_command, sh_join};

/// Which workers of a slice a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worker {
    /// `--worker=all`: every host of a multi-host slice.
    All,
    One(u32),
}

impl Worker {
    fn flag(self) -> String {
        match self {
            Worker::All => "--worker=all".to_owned(),
            Worker::One(n) => format!("--worker={n}"),
        }
    }
}

/// A TPU VM as gcloud names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub project: String,
    pub zone: String,
    pub node: String,
    /// Extra flags for every ssh/scp, e.g. `--tunnel-through-iap` or
    /// `--internal-ip`.
    pub extra_flags: Vec<String>,
}

impl Target {
    fn common(&self, verb: &str) -> Vec<String> {
        let mut res: Vec<String> = ["gcloud", "compute", "tpus", "tpu-vm", verb]
            .map(str::to_owned)
            .into();
        res.push(format!("--project={}", self.project));
        res.push(format!("--zone={}", self.zone));
        res.extend(self.extra_flags.iter().cloned());
        // Never wait for a prompt (key generation, host keys).
        res.push("--quiet".to_owned());
        res
    }
}

/// `gcloud ... ssh NODE --worker=W --command='bash -c ...'`.
pub fn ssh_argv(target: &Target, worker: Worker, script: &str) -> Vec<String> {
    let mut res = target.common("ssh");
    res.insert(5, target.node.clone());
    res.push(worker.flag());
    res.push(format!("--command={}", remote_command(script)));
    res
}

/// Copies `remote` (relative to the remote home, or absolute) from worker
/// `worker` to the local `local`.
pub fn scp_from_argv(
    target: &Target,
    worker: u32,
    remote: &str,
    local: &Path,
    recurse: bool,
) -> Vec<String> {
    let mut res = target.common("scp");
    res.push(Worker::One(worker).flag());
    if recurse {
        res.push("--recurse".to_owned());
    }
    res.push(format!("{}:{remote}", target.node));
    res.push(local.display().to_string());
    res
}

/// Copies the local `local` to `remote` on every worker.
pub fn scp_to_argv(target: &Target, local: &Path, remote: &str, recurse: bool) -> Vec<String> {
    let mut res = target.common("scp");
    res.push(Worker::All.flag());
    if recurse {
        res.push("--recurse".to_owned());
    }
    res.push(local.display().to_string());
    res.push(format!("{}:{remote}", target.node));
    res
}

/// An ssh session that forwards `127.0.0.1:local_port` here to
/// `127.0.0.1:remote_port` on worker 0 and runs nothing else.
pub fn tunnel_argv(target: &Target, local_port: u16, remote_port: u16) -> Vec<String> {
    tunnel_argv_to(target, 0, local_port, remote_port)
}

/// [`tunnel_argv`] to worker `worker`.
pub fn tunnel_argv_to(
    target: &Target,
    worker: u32,
    local_port: u16,
    remote_port: u16,
) -> Vec<String> {
    let mut res = target.common("ssh");
    res.insert(5, target.node.clone());
    res.push(Worker::One(worker).flag());
    res.push("--".to_owned());
    res.extend([
        "-N".to_owned(),
        "-L".to_owned(),
        format!("127.0.0.1:{local_port}:127.0.0.1:{remote_port}"),
        "-o".to_owned(),
        "ExitOnForwardFailure=yes".to_owned(),
        "-o".to_owned(),
        "ServerAliveInterval=30".to_owned(),
    ]);
    res
}

/// Runs gcloud argv, or in a dry run writes them to a transcript.
#[derive(Clone)]
pub struct Gcloud {
    program: String,
    transcript: Option<Transcript>,
}

impl Gcloud {
    /// `gcloud` from `PATH`.
    pub fn new() -> Gcloud {
        Gcloud {
            program: "gcloud".to_owned(),
            transcript: None,
        }
    }

    /// Another program in gcloud's place (argv[0] is replaced).
    pub fn with_program(program: &str) -> Gcloud {
        Gcloud {
            program: program.to_owned(),
            transcript: None,
        }
    }

    pub fn dry_run(transcript: Transcript) -> Gcloud {
        Gcloud {
            program: "gcloud".to_owned(),
            transcript: Some(transcript),
        }
    }

    #[allow(clippy::disallowed_methods)] // The gcloud spawn site.
    fn command(&self, argv: &[String]) -> Result<tokio::process::Command, Error> {
        let sh = xshell::Shell::new().map_err(|err| self.error(argv, err.to_string()))?;
        let program = &self.program;
        let args = &argv[1..];
        let cmd = xshell::cmd!(sh, "{program} {args...}");
        let mut cmd = tokio::process::Command::from(std::process::Command::from(cmd));
        crate::process::in_own_group(&mut cmd);
        Ok(cmd)
    }

    fn error(&self, argv: &[String], detail: String) -> Error {
        let shown: Vec<String> = argv.iter().take(6).cloned().collect();
        Error::Command {
            command: format!("{} ...", crate::redact::redact(&sh_join(&shown))),
            detail: crate::error::one_line(&detail),
        }
    }

    /// Runs `argv` to completion and returns its stdout. Dropping the
    /// future kills the process and everything it started (its process
    /// group). A failure carries the end of stderr.
    pub async fn run(&self, argv: &[String]) -> Result<String, Error> {
        if let Some(transcript) = &self.transcript {
            transcript.push(format!("$ {}", crate::redact::redact(&sh_join(argv))));
            return Ok(String::new());
        }
        let mut cmd = self.command(argv)?;
        let (status, stdout, stderr) =
            crate::process::output(&mut cmd, |detail| self.error(argv, detail)).await?;
        if !status.success() {
            let tail = crate::process::tail(&stderr, 5);
            return Err(self.error(argv, format!("{status}: {tail}")));
        }
        Ok(stdout)
    }

    /// Starts `argv` in the background (an ssh tunnel). The process and
    /// its group are killed when the handle is dropped.
    pub fn spawn(&self, argv: &[String]) -> Result<Background, Error> {
        if let Some(transcript) = &self.transcript {
            transcript.push(format!("$ {} &", crate::redact::redact(&sh_join(argv))));
            return Ok(Background::none());
        }
        let mut cmd = self.command(argv)?;
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let (child, guard) = crate::process::spawn(&mut cmd, |d| self.error(argv, d))?;
        Ok(Background {
            child: Some(child),
            guard: Some(guard),
        })
    }
}

impl Default for Gcloud {
    fn default() -> Gcloud {
        Gcloud::new()
    }
}

/// A background process; it and its process group are killed on drop.
pub struct Background {
    child: Option<tokio::process::Child>,
    guard: Option<crate::process::GroupGuard>,
}

impl Background {
    /// A handle with no process (dry runs, local workers).
    pub fn none() -> Background {
        Background {
            child: None,
            guard: None,
        }
    }

    /// `Some(exit status text)` if the process has already ended.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(err) => Some(err.to_string()),
        }
    }

    pub async fn kill(&mut self) {
        self.guard.take();
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill().await;
        }
    }
}
