//! The hosts of a TPU slice as places to run scripts and copy files:
//! [`Workers`], with the real implementation over `gcloud compute tpus
//! tpu-vm ssh/scp` ([`GcloudWorkers`]) and a local stand-in in which each
//! worker is a folder on this machine ([`LocalWorkers`]).
//!
//! Scripts are bash text (from [`crate::script`]) run in the worker's home;
//! remote paths are relative to that home or absolute. Both
//! implementations run the very same scripts, so a rehearsal on this
//! machine exercises what a real session sends to a VM.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Error;
use crate::gcloud::{Background, Gcloud, Target, Worker, scp_from_argv, scp_to_argv, ssh_argv};

/// How the local side reaches a TCP port of one worker.
pub struct Reach {
    /// `127.0.0.1`, where the forwarded (or direct) port listens.
    pub host: String,
    pub port: u16,
    /// Keeps the way open (an ssh tunnel); drop it to close.
    pub guard: Background,
}

/// Run scripts on and copy files from the hosts of one slice.
#[async_trait::async_trait]
pub trait Workers: Send + Sync {
    /// How many hosts the slice has.
    fn count(&self) -> u32;

    /// Runs `script` under bash in the home of `on` and returns stdout
    /// (for [`Worker::All`], every worker's, in worker order). A non-zero
    /// exit is an [`Error::Command`] with the end of stderr.
    async fn run(&self, on: Worker, script: &str) -> Result<String, Error>;

    /// Copies `remote` from `worker` to the local `local`.
    async fn fetch(
        &self,
        worker: u32,
        remote: &str,
        local: &Path,
        recurse: bool,
    ) -> Result<(), Error>;

    /// Copies the local `local` to `remote` on every worker.
    async fn push(&self, local: &Path, remote: &str, recurse: bool) -> Result<(), Error>;

    /// The port the server of `worker` should listen on, given the one the
    /// user asked for (hosts of a real slice each have their own; local
    /// workers share this machine and need distinct ports).
    fn server_port(&self, worker: u32, wanted: u16) -> u16;

    /// The address other workers reach `worker` at (`--dist-init-addr`).
    fn address(&self, worker: u32) -> String;

    /// Makes `remote_port` on `worker`'s loopback reachable from here,
    /// preferably on `local_port`.
    fn reach(&self, worker: u32, local_port: u16, remote_port: u16) -> Result<Reach, Error>;
}

/// The hosts of a real TPU VM, over gcloud.
pub struct GcloudWorkers {
    pub gcloud: Gcloud,
    pub target: Target,
    /// Internal IPs of the hosts, worker 0 first (`networkEndpoints`).
    pub addresses: Vec<String>,
}

impl GcloudWorkers {
    /// The workers of `node`, one per network endpoint (at least one).
    pub fn new(gcloud: Gcloud, target: Target, node: &crate::Node) -> GcloudWorkers {
        let mut addresses: Vec<String> = node
            .network_endpoints
            .iter()
            .map(|e| e.ip_address.clone().unwrap_or_default())
            .collect();
        if addresses.is_empty() {
            addresses.push(String::new());
        }
        GcloudWorkers {
            gcloud,
            target,
            addresses,
        }
    }
}

#[async_trait::async_trait]
impl Workers for GcloudWorkers {
    fn count(&self) -> u32 {
        self.addresses.len() as u32
    }

    async fn run(&self, on: Worker, script: &str) -> Result<String, Error> {
        self.gcloud.run(&ssh_argv(&self.target, on, script)).await
    }

    async fn fetch(
        &self,
        worker: u32,
        remote: &str,
        local: &Path,
        recurse: bool,
    ) -> Result<(), Error> {
        self.gcloud
            .run(&scp_from_argv(&self.target, worker, remote, local, recurse))
            .await
            .map(drop)
    }

    async fn push(&self, local: &Path, remote: &str, recurse: bool) -> Result<(), Error> {
        self.gcloud
            .run(&scp_to_argv(&self.target, local, remote, recurse))
            .await
            .map(drop)
    }

    fn server_port(&self, _worker: u32, wanted: u16) -> u16 {
        wanted
    }

    fn address(&self, worker: u32) -> String {
        self.addresses
            .get(worker as usize)
            .cloned()
            .unwrap_or_default()
    }

    fn reach(&self, worker: u32, local_port: u16, remote_port: u16) -> Result<Reach, Error> {
        let argv = crate::gcloud::tunnel_argv_to(&self.target, worker, local_port, remote_port);
        let guard = self.gcloud.spawn(&argv)?;
        Ok(Reach {
            host: "127.0.0.1".to_owned(),
            port: local_port,
            guard,
        })
    }
}

/// A stand-in slice on this machine: worker `i` is the folder
/// `<root>/worker-<i>`, which is its `HOME` and working directory, and
/// scripts run there with `bash`. Nothing is isolated beyond that: the
/// workers share this machine's network, so their servers get distinct
/// ports ([`Workers::server_port`] adds the worker index).
///
/// Each script runs in its own process group, killed as a whole if the
/// caller stops waiting. Processes a script detaches on purpose (the
/// server, under `setsid`) outlive it, as on a VM; [`LocalWorkers::terminate`]
/// ends them, which is what deleting the VM does to a real one.
///
/// Faults can be switched on to rehearse them: copies that fail as a
/// broken `scp` does ([`LocalWorkers::with_failing_fetch`]) and a server
/// that dies mid-session ([`LocalWorkers::crash_server_after`]).
pub struct LocalWorkers {
    root: PathBuf,
    count: u32,
    env: Vec<(String, String)>,
    /// Sessions started under our workers (pid files seen), to terminate.
    seen: Mutex<Vec<i32>>,
    /// When set, every copy from a worker fails with this reason.
    failing_fetch: Option<String>,
    /// Tells the watchers of [`LocalWorkers::crash_server_after`] to stop.
    stop_watching: Arc<AtomicBool>,
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stop_watching.store(true, Ordering::SeqCst);
    }
}

impl LocalWorkers {
    /// Makes `<root>/worker-0` ... `<root>/worker-<count-1>`.
    pub fn create(root: &Path, count: u32) -> Result<LocalWorkers, Error> {
        for worker in 0..count.max(1) {
            let home = root.join(format!("worker-{worker}"));
            std::fs::create_dir_all(home.join(crate::script::REMOTE_DIR)).map_err(|source| {
                Error::Io {
                    action: "creating",
                    path: home.clone(),
                    source,
                }
            })?;
        }
        let mut env = Vec::new();
        // pyenv finds its versions under $HOME unless told; the worker's
        // HOME is not the user's.
        if std::env::var_os("PYENV_ROOT").is_none()
            && let Some(home) = std::env::var_os("HOME")
        {
            let pyenv = PathBuf::from(home).join(".pyenv");
            if pyenv.is_dir() {
                env.push(("PYENV_ROOT".to_owned(), pyenv.display().to_string()));
            }
        }
        Ok(LocalWorkers {
            root: root.to_path_buf(),
            count: count.max(1),
            env,
            seen: Mutex::default(),
            failing_fetch: None,
            stop_watching: Arc::default(),
        })
    }

    /// Makes every copy from a worker fail with `reason`, as `gcloud ...
    /// scp` does when the connection drops (to rehearse that fault).
    pub fn with_failing_fetch(mut self, reason: &str) -> LocalWorkers {
        self.failing_fetch = Some(reason.to_owned());
        self
    }

    /// Kills the server of `worker` (SIGKILL to its process group) as soon
    /// as its log shows each of `markers`, in order: a server that dies in
    /// the middle of a session, to rehearse that fault. A thread watches
    /// the log until then, or until the workers are dropped.
    pub fn crash_server_after(&self, worker: u32, markers: &[&str]) {
        let home = self.home(worker);
        let markers: Vec<String> = markers.iter().map(|m| (*m).to_owned()).collect();
        let stop = self.stop_watching.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let log = std::fs::read_to_string(home.join(crate::script::REMOTE_LOG));
                if log.is_ok_and(|log| shows_in_order(&log, &markers))
                    && let Some(pid) = read_pid(&home)
                {
                    // SAFETY: sends a signal to the group of a server our
                    // scripts started.
                    unsafe {
                        libc::killpg(pid, libc::SIGKILL);
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }

    /// Sets `key=value` in the environment of every script.
    pub fn with_env(mut self, key: &str, value: &str) -> LocalWorkers {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The home folder of `worker`.
    pub fn home(&self, worker: u32) -> PathBuf {
        self.root.join(format!("worker-{worker}"))
    }

    /// Links every worker's `sglprof/venv` to an existing environment, so
    /// that the install script finds its requirements satisfied instead of
    /// downloading a gigabyte per worker. The script still runs in full.
    pub fn seed_venv(&self, venv: &Path) -> Result<(), Error> {
        for worker in 0..self.count {
            let link = self.home(worker).join(crate::script::REMOTE_VENV);
            if link.exists() || link.is_symlink() {
                continue;
            }
            std::os::unix::fs::symlink(venv, &link).map_err(|source| Error::Io {
                action: "linking",
                path: link.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn resolve(&self, worker: u32, remote: &str) -> PathBuf {
        let path = Path::new(remote);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.home(worker).join(path)
        }
    }

    #[allow(clippy::disallowed_methods)] // The local workers' spawn site.
    async fn run_one(&self, worker: u32, script: &str) -> Result<String, Error> {
        let home = self.home(worker);
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(&home)
            .env("HOME", &home)
            .env("SGLPROF_WORKER", worker.to_string());
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let describe = |detail: String| Error::Command {
            command: format!("bash on local worker {worker}"),
            detail: crate::error::one_line(&crate::redact::redact(&detail)),
        };
        let (status, stdout, stderr) = crate::process::output(&mut cmd, describe).await?;
        self.note_detached(worker);
        if !status.success() {
            return Err(describe(format!(
                "{status}: {}",
                crate::process::tail(&stderr, 5)
            )));
        }
        Ok(stdout)
    }

    /// Remembers the session of every process the scripts started
    /// detached (the server, helpers such as py-spy: each leaves a pid
    /// file in `sglprof/`), so that [`LocalWorkers::terminate`] can end it.
    fn note_detached(&self, worker: u32) {
        let dir = self.home(worker).join(crate::script::REMOTE_DIR);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let pids = entries.filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "pid" {
                return None;
            }
            let text = std::fs::read_to_string(path).ok()?;
            text.trim().parse::<i32>().ok().filter(|pid| *pid > 1)
        });
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for pid in pids {
            if !seen.contains(&pid) {
                seen.push(pid);
            }
        }
    }

    /// Ends every process still running on the workers (SIGTERM, then
    /// SIGKILL after `grace`): the process group of each server and helper
    /// the scripts started, and any other process whose `HOME` is a worker's folder
    /// (every script runs with it, and what a script starts inherits it),
    /// such as a server whose pid file was never written because its launch
    /// script was cut short. Returns how many groups and stray processes
    /// were still alive. What deleting a VM does to the processes on it.
    pub fn terminate(&self, grace: Duration) -> usize {
        for worker in 0..self.count {
            self.note_detached(worker);
        }
        let groups: Vec<i32> = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let group_alive = |pgid: i32| {
            // SAFETY: signal 0 only checks that the group exists.
            unsafe { libc::killpg(pgid, 0) == 0 }
        };
        let live: Vec<i32> = groups.into_iter().filter(|g| group_alive(*g)).collect();
        // Processes outside those groups (counted once).
        let strays: Vec<i32> = self
            .processes()
            .into_iter()
            .filter(|pid| {
                // SAFETY: getpgid only reads the group of a process.
                let pgid = unsafe { libc::getpgid(*pid) };
                !live.contains(&pgid)
            })
            .collect();
        let signal_all = |signal: i32| {
            for pgid in &live {
                // SAFETY: sends a signal to a group our scripts created.
                unsafe {
                    libc::killpg(*pgid, signal);
                }
            }
            for pid in &strays {
                // SAFETY: sends a signal to a process running in a worker.
                unsafe {
                    libc::kill(*pid, signal);
                }
            }
        };
        signal_all(libc::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        while (live.iter().any(|g| group_alive(*g)) || strays.iter().any(|p| pid_alive(*p)))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_all(libc::SIGKILL);
        live.len() + strays.len()
    }

    /// The live processes running on the workers: those whose environment
    /// has `HOME` set to a worker's folder (this process excluded).
    pub fn processes(&self) -> Vec<i32> {
        let homes: Vec<Vec<u8>> = (0..self.count)
            .map(|w| format!("HOME={}", self.home(w).display()).into_bytes())
            .collect();
        let me = std::process::id() as i32;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut res = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me || !pid_alive(pid) {
                continue;
            }
            // Unreadable (another user's, or gone): not ours.
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| homes.iter().any(|home| var == home.as_slice()))
            {
                res.push(pid);
            }
        }
        res
    }
}

/// The pid in the server pid file under `home`, if any.
fn read_pid(home: &Path) -> Option<i32> {
    std::fs::read_to_string(home.join(crate::script::REMOTE_PID))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 1)
}

/// True while `pid` exists and is not a zombie.
fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Whether `text` shows every marker, each after the previous one.
fn shows_in_order(text: &str, markers: &[String]) -> bool {
    let mut rest = text;
    for marker in markers {
        match rest.find(marker.as_str()) {
            Some(at) => rest = &rest[at + marker.len()..],
            None => return false,
        }
    }
    true
}

async fn copy(from: &Path, to: &Path, recurse: bool) -> Result<(), Error> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || copy_sync(&from, &to, recurse))
        .await
        .map_err(|err| Error::Command {
            command: "local copy".to_owned(),
            detail: err.to_string(),
        })?
}

/// Like `scp`: a file onto a folder lands inside it; a folder needs
/// `recurse` and lands as `to` (or inside `to` when `to` is a folder).
fn copy_sync(from: &Path, to: &Path, recurse: bool) -> Result<(), Error> {
    let io = Error::io;
    let meta = std::fs::metadata(from).map_err(io("reading", from))?;
    let name = from.file_name().map(PathBuf::from).unwrap_or_default();
    let dest = if to.is_dir() {
        to.join(&name)
    } else {
        to.to_path_buf()
    };
    if meta.is_dir() {
        if !recurse {
            return Err(Error::Command {
                command: "local copy".to_owned(),
                detail: format!(
                    "{}: is a folder (not copied without recurse)",
                    from.display()
                ),
            });
        }
        std::fs::create_dir_all(&dest).map_err(io("creating", &dest))?;
        for entry in std::fs::read_dir(from).map_err(io("reading", from))? {
            let entry = entry.map_err(io("reading", from))?;
            copy_sync(&entry.path(), &dest.join(entry.file_name()), true)?;
        }
        return Ok(());
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    std::fs::copy(from, &dest).map_err(io("copying to", &dest))?;
    Ok(())
}

#[async_trait::async_trait]
impl Workers for LocalWorkers {
    fn count(&self) -> u32 {
        self.count
    }

    async fn run(&self, on: Worker, script: &str) -> Result<String, Error> {
        match on {
            Worker::One(worker) if worker < self.count => self.run_one(worker, script).await,
            Worker::One(worker) => Err(Error::Command {
                command: format!("bash on local worker {worker}"),
                detail: format!("no such worker (the slice has {})", self.count),
            }),
            Worker::All => {
                let runs = (0..self.count).map(|w| self.run_one(w, script));
                let outs = futures_util::future::join_all(runs).await;
                let mut res = String::new();
                for out in outs {
                    res.push_str(&out?);
                }
                Ok(res)
            }
        }
    }

    async fn fetch(
        &self,
        worker: u32,
        remote: &str,
        local: &Path,
        recurse: bool,
    ) -> Result<(), Error> {
        if let Some(reason) = &self.failing_fetch {
            return Err(Error::Command {
                command: format!("scp from local worker {worker}"),
                detail: format!("{remote}: {reason}"),
            });
        }
        copy(&self.resolve(worker, remote), local, recurse).await
    }

    async fn push(&self, local: &Path, remote: &str, recurse: bool) -> Result<(), Error> {
        for worker in 0..self.count {
            copy(local, &self.resolve(worker, remote), recurse).await?;
        }
        Ok(())
    }

    fn server_port(&self, worker: u32, wanted: u16) -> u16 {
        wanted.saturating_add(worker as u16)
    }

    fn address(&self, _worker: u32) -> String {
        "127.0.0.1".to_owned()
    }

    fn reach(&self, _worker: u32, _local_port: u16, remote_port: u16) -> Result<Reach, Error> {
        Ok(Reach {
            host: "127.0.0.1".to_owned(),
            port: remote_port,
            guard: Background::none(),
        })
    }
}
