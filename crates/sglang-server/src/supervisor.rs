//! The local process supervisor: the only place in the crate that spawns a
//! process.
//!
//! Each process is started as the leader of a new process group, so that a
//! server and everything it forks (scheduler, detokenizer) can be signalled
//! together. Its stdout and stderr go to a log file. Stopping sends SIGTERM to
//! the group, waits for a grace period and then sends SIGKILL to the group.
//! Dropping a [`Supervised`] that was not stopped kills its group at once,
//! and [`kill_all_supervised`] does the same for every live group, for
//! Ctrl-C handlers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::logtail::log_tail;

/// Process groups started here and not yet stopped.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// What to run.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    /// A short name for messages (`sglang-jax server`, `py-spy`).
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Receives stdout and stderr; created or truncated.
    pub log_path: PathBuf,
}

/// A running process group.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    pid: u32,
    log_path: PathBuf,
    child: Mutex<Child>,
    exit: Mutex<Option<ExitStatus>>,
    stopped: Mutex<bool>,
}

/// How a stop went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopReport {
    /// The leader's exit status, as text (`exit status: 0`, `signal: 9`).
    pub status: String,
    /// True when the grace period ran out and SIGKILL was sent.
    pub killed: bool,
    pub took: Duration,
}

/// Something that can tell whether the server is still there; workloads and
/// readiness checks poll it to fail fast instead of waiting for timeouts.
pub trait Liveness: Send + Sync {
    /// `Err(Error::Died)` once the server has gone; `during` says what was
    /// going on, for the message.
    fn check(&self, during: &str) -> Result<(), Error>;
}

/// For servers this process did not start (a remote server behind a
/// tunnel): nothing to watch.
pub struct NoLiveness;

impl Liveness for NoLiveness {
    fn check(&self, _during: &str) -> Result<(), Error> {
        Ok(())
    }
}

impl Liveness for Supervised {
    fn check(&self, during: &str) -> Result<(), Error> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(self.died(status, during)),
        }
    }
}

impl Supervised {
    #[allow(clippy::disallowed_methods)] // The one sanctioned spawn site.
    pub fn spawn(spec: &SpawnSpec) -> Result<Supervised, Error> {
        use std::os::unix::process::CommandExt;

        let io_err = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
        }
        let log = File::create(&spec.log_path).map_err(io_err("cannot create", &spec.log_path))?;
        let log_err = log
            .try_clone()
            .map_err(io_err("cannot open", &spec.log_path))?;
        let mut command = std::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        // Hold the registry lock across the spawn so a Ctrl-C handler never
        // sees a child whose group is not registered yet.
        let mut live = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: spec.program.clone(),
            source,
        })?;
        let pid = child.id();
        live.push(pid as i32);
        drop(live);
        Ok(Supervised {
            name: spec.name.clone(),
            pid,
            log_path: spec.log_path.clone(),
            child: Mutex::new(child),
            exit: Mutex::new(None),
            stopped: Mutex::new(false),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The leader's exit status once it has exited (reaping it).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(Some(status)) = child.try_wait() {
                *exit = Some(status);
            }
        }
        *exit
    }

    /// Sends SIGINT to the group without waiting. py-spy writes its output
    /// and exits on SIGINT.
    pub fn send_interrupt(&self) {
        if self.exit_status().is_none() {
            signal_group(self.pid, libc::SIGINT);
        }
    }

    /// Waits up to `grace` for the leader to exit by itself, then stops the
    /// group as [`Supervised::stop`] does.
    pub async fn wait_then_stop(&self, grace: Duration) -> StopReport {
        let started = Instant::now();
        while self.exit_status().is_none() && started.elapsed() < grace {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut res = self.stop(Duration::from_secs(2)).await;
        res.took = started.elapsed();
        res
    }

    /// SIGTERM (and SIGCONT, for a stopped group) to the whole group, then
    /// SIGKILL to it after `grace` if the leader or any other member is
    /// still running. Waits until the group
    /// is gone (at most a few seconds after SIGKILL).
    pub async fn stop(&self, grace: Duration) -> StopReport {
        let started = Instant::now();
        let mut killed = false;
        if self.exit_status().is_none() || group_alive(self.pid) {
            signal_group(self.pid, libc::SIGTERM);
            // A stopped group (Ctrl-Z, or a caller that paused an idle
            // server) acts on the SIGTERM only once continued.
            signal_group(self.pid, libc::SIGCONT);
            while (self.exit_status().is_none() || group_alive(self.pid))
                && started.elapsed() < grace
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if self.exit_status().is_none() || group_alive(self.pid) {
                killed = true;
                signal_group(self.pid, libc::SIGKILL);
                let deadline = Instant::now() + Duration::from_secs(5);
                while (self.exit_status().is_none() || group_alive(self.pid))
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        self.forget();
        let status = self
            .exit_status()
            .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
        StopReport {
            status,
            killed,
            took: started.elapsed(),
        }
    }

    /// The error for a process that exited on its own.
    pub fn died(&self, status: ExitStatus, during: &str) -> Error {
        Error::Died {
            name: self.name.clone(),
            pid: self.pid,
            status: status.to_string(),
            during: during.to_owned(),
            log_tail: log_tail(&self.log_path, 30),
        }
    }

    fn forget(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let mut live = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|pgid| *pgid != self.pid as i32);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let stopped = *self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if !stopped {
            signal_group(self.pid, libc::SIGKILL);
            // Reap the leader so it does not linger as a zombie.
            let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.forget();
        }
    }
}

/// SIGKILLs every process group started by [`Supervised::spawn`] that has not
/// been stopped. Meant for signal handlers and last-resort exits.
pub fn kill_all_supervised() -> usize {
    let live = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    for pgid in live.iter() {
        signal_group(*pgid as u32, libc::SIGKILL);
    }
    live.len()
}

fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: killpg only sends a signal; the group id comes from a child
    // this process spawned as a group leader.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// True while a process of the group runs. Zombies do not count: orphaned
/// members are reaped by init, which in containers may never happen.
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // SAFETY: signal 0 checks for existence and sends nothing.
        return unsafe { libc::killpg(pgid as libc::pid_t, 0) == 0 };
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // The command name may contain spaces; the fields after its `)` are
        // state, ppid, pgrp.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        pgrp == Some(pgid) && state != "Z" && state != "X"
    })
}
