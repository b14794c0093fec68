//! A sglang-jax server on the hosts of a TPU slice: install, launch
//! detached, check, stop, wait for trace files, fetch files, and a way to
//! its port. [`Slice`] does it on any [`Workers`] (gcloud or the local
//! stand-in), per worker; [`Remote`] is the single-host form over gcloud.
//!
//! Secrets (the `--api-key` value, credentials in a git URL) reach the
//! hosts as files pushed before the script that needs them; the scripts
//! read them there, so they appear in no local argv and no rendered
//! script. Fetched server logs are redacted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::gcloud::{Background, Gcloud, Target, Worker};
use crate::script::{
    InstallSpec, LaunchSpec, REMOTE_LOG, SecretFile, alive_script, helper_start_script,
    helper_stop_script, install_script, launch_script, parse_versions, server_pid_script,
    stop_script, wait_for_traces_script,
};
use crate::workers::{GcloudWorkers, Reach, Workers};

/// A server on every host of a slice.
pub struct Slice {
    workers: Arc<dyn Workers>,
    /// Values pushed as secrets, masked in what is fetched back.
    secrets: Mutex<Vec<String>>,
}

impl Slice {
    pub fn new(workers: Arc<dyn Workers>) -> Slice {
        Slice {
            workers,
            secrets: Mutex::default(),
        }
    }

    pub fn workers(&self) -> &Arc<dyn Workers> {
        &self.workers
    }

    /// How many hosts.
    pub fn count(&self) -> u32 {
        self.workers.count()
    }

    /// Copies each secret to its file on every worker (mode 0600 here,
    /// kept by the copy: the one kind of file sglprof makes unreadable to
    /// others).
    pub async fn push_secrets(&self, secrets: &[SecretFile]) -> Result<(), Error> {
        for secret in secrets {
            let mut file = tempfile::NamedTempFile::new().map_err(|source| Error::Io {
                action: "creating a temporary file for",
                path: secret.remote.into(),
                source,
            })?;
            {
                use std::io::Write;
                file.write_all(secret.value.as_bytes())
                    .and_then(|()| file.flush())
                    .map_err(|source| Error::Io {
                        action: "writing",
                        path: file.path().to_path_buf(),
                        source,
                    })?;
            }
            self.workers.push(file.path(), secret.remote, false).await?;
            let mut known = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
            if !known.contains(&secret.value) {
                known.push(secret.value.clone());
            }
        }
        Ok(())
    }

    /// Installs sglang-jax on every worker (idempotent) and returns the
    /// versions they report (`python`, `jax`, `sglang-jax`, ...).
    pub async fn install(&self, spec: &InstallSpec) -> Result<BTreeMap<String, String>, Error> {
        self.push_secrets(&spec.secrets()).await?;
        let out = self.workers.run(Worker::All, &install_script(spec)).await?;
        Ok(parse_versions(&out))
    }

    /// Starts the server on `worker`, detached, with its log and pid file.
    pub async fn launch(&self, worker: u32, spec: &LaunchSpec) -> Result<(), Error> {
        self.push_secrets(&spec.secrets()).await?;
        self.workers
            .run(Worker::One(worker), &launch_script(spec))
            .await
            .map(drop)
    }

    /// Fails (with the log tail in the message) if the server of `worker`
    /// has exited.
    pub async fn ensure_alive(&self, worker: u32) -> Result<(), Error> {
        self.workers
            .run(Worker::One(worker), &alive_script())
            .await
            .map(drop)
    }

    pub async fn stop_server(&self, worker: u32) -> Result<(), Error> {
        self.workers
            .run(Worker::One(worker), &stop_script())
            .await
            .map(drop)
    }

    /// The pid of the server on `worker` (fails with the log tail if it is
    /// not running).
    pub async fn server_pid(&self, worker: u32) -> Result<u32, Error> {
        let out = self
            .workers
            .run(Worker::One(worker), &server_pid_script())
            .await?;
        out.trim().parse().map_err(|_| Error::Command {
            command: format!("reading the server pid on worker {worker}"),
            detail: format!("not a pid: {:?}", out.trim()),
        })
    }

    /// Starts the venv's `program` with `args` on `worker`, detached beside
    /// the server, as the helper `name` ([`helper_start_script`]); `ptrace`
    /// when it attaches to the server.
    pub async fn start_helper(
        &self,
        worker: u32,
        name: &str,
        program: &str,
        args: &[String],
        ptrace: bool,
    ) -> Result<(), Error> {
        let script = helper_start_script(name, program, args, ptrace);
        self.workers
            .run(Worker::One(worker), &script)
            .await
            .map(drop)
    }

    /// Interrupts the helper `name` on `worker` and waits up to
    /// `timeout_s` for it to exit ([`helper_stop_script`]).
    pub async fn stop_helper(&self, worker: u32, name: &str, timeout_s: u64) -> Result<(), Error> {
        let script = helper_stop_script(name, timeout_s);
        self.workers
            .run(Worker::One(worker), &script)
            .await
            .map(drop)
    }

    /// Waits on `worker` for the profiler's files under `dir` and returns
    /// them as (size, path relative to `dir`).
    pub async fn wait_for_traces(
        &self,
        worker: u32,
        dir: &str,
        timeout_s: u64,
    ) -> Result<Vec<(u64, String)>, Error> {
        let script = wait_for_traces_script(dir, timeout_s);
        let out = self.workers.run(Worker::One(worker), &script).await?;
        Ok(parse_listing(&out))
    }

    /// Copies `remote` from `worker` into `local`.
    pub async fn fetch(
        &self,
        worker: u32,
        remote: &str,
        local: &Path,
        recurse: bool,
    ) -> Result<(), Error> {
        self.workers.fetch(worker, remote, local, recurse).await
    }

    /// Copies the server log of `worker` into `local`, with secrets
    /// redacted ([`crate::redact`]).
    pub async fn fetch_log(&self, worker: u32, local: &Path) -> Result<(), Error> {
        self.fetch(worker, REMOTE_LOG, local, false).await?;
        if !local.is_file() {
            // A dry run copies nothing.
            return Ok(());
        }
        let known = self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        redact_file(local, &known)
    }

    /// Makes the server port of `worker` reachable from here.
    pub fn reach(&self, worker: u32, local_port: u16, remote_port: u16) -> Result<Reach, Error> {
        self.workers.reach(worker, local_port, remote_port)
    }
}

/// Rewrites `path` with [`crate::redact::redact_with`] applied, if that
/// changes anything (through a sibling file and a rename).
pub fn redact_file(path: &Path, secrets: &[String]) -> Result<(), Error> {
    let io = Error::io;
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let text = String::from_utf8_lossy(&bytes);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let clean = crate::redact::redact_with(&text, &refs);
    if clean == text {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    // The redacted copy holds no secret: readable as the umask says.
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(io("creating a file in", dir))?;
    {
        use std::io::Write;
        tmp.write_all(clean.as_bytes())
            .map_err(io("writing", tmp.path()))?;
    }
    tmp.persist(path)
        .map_err(|err| io("replacing", path)(err.error))?;
    Ok(())
}

fn parse_listing(out: &str) -> Vec<(u64, String)> {
    out.lines()
        .filter_map(|line| {
            let (size, path) = line.split_once(' ')?;
            Some((size.parse().ok()?, path.to_owned()))
        })
        .collect()
}

/// A single-host TPU VM over gcloud: [`Slice`] on worker 0, with the
/// install on every worker.
pub struct Remote {
    pub gcloud: Gcloud,
    pub target: Target,
    slice: Slice,
}

impl Remote {
    pub fn new(gcloud: Gcloud, target: Target) -> Remote {
        let workers = GcloudWorkers {
            gcloud: gcloud.clone(),
            target: target.clone(),
            addresses: vec![String::new()],
        };
        Remote {
            gcloud,
            target,
            slice: Slice::new(Arc::new(workers)),
        }
    }

    /// Installs sglang-jax on every worker (idempotent) and returns the
    /// versions worker 0 reports (`python`, `jax`, `sglang-jax`, ...).
    pub async fn install(&self, spec: &InstallSpec) -> Result<BTreeMap<String, String>, Error> {
        self.slice.install(spec).await
    }

    /// Starts the server on worker 0, detached, with its log and pid file.
    pub async fn launch(&self, spec: &LaunchSpec) -> Result<(), Error> {
        self.slice.launch(0, spec).await
    }

    /// Fails (with the log tail in the message) if the server has exited.
    pub async fn ensure_alive(&self) -> Result<(), Error> {
        self.slice.ensure_alive(0).await
    }

    pub async fn stop_server(&self) -> Result<(), Error> {
        self.slice.stop_server(0).await
    }

    /// Waits on the VM for the profiler's files under `dir` and returns
    /// them as (size, path relative to `dir`).
    pub async fn wait_for_traces(
        &self,
        dir: &str,
        timeout_s: u64,
    ) -> Result<Vec<(u64, String)>, Error> {
        self.slice.wait_for_traces(0, dir, timeout_s).await
    }

    /// Copies `remote` from worker 0 into `local`.
    pub async fn fetch(&self, remote: &str, local: &Path, recurse: bool) -> Result<(), Error> {
        self.slice.fetch(0, remote, local, recurse).await
    }

    /// Copies the server log into `local`, redacted.
    pub async fn fetch_log(&self, local: &Path) -> Result<(), Error> {
        self.slice.fetch_log(0, local).await
    }

    /// Forwards `127.0.0.1:local_port` to the server port on worker 0.
    pub fn tunnel(&self, local_port: u16, remote_port: u16) -> Result<Background, Error> {
        Ok(self.slice.reach(0, local_port, remote_port)?.guard)
    }
}
