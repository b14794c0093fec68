//! A sglang-jax server on a TPU VM, driven over `gcloud ... ssh/scp`:
//! install, launch detached, check, stop, wait for trace files, fetch
//! files, and an ssh tunnel to its port.
//!
//! Processes are started by [`crate::gcloud::Gcloud`]; this module only
//! decides which argv to run.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Error;
use crate::gcloud::{Background, Gcloud, Target, Worker, scp_from_argv, ssh_argv, tunnel_argv};
use crate::script::{
    InstallSpec, LaunchSpec, REMOTE_LOG, alive_script, install_script, launch_script,
    parse_versions, stop_script, wait_for_traces_script,
};

pub struct Remote {
    pub gcloud: Gcloud,
    pub target: Target,
}

impl Remote {
    pub fn new(gcloud: Gcloud, target: Target) -> Remote {
        Remote { gcloud, target }
    }

    /// Installs sglang-jax on every worker (idempotent) and returns the
    /// versions worker 0 reports (`python`, `jax`, `sglang-jax`, ...).
    pub async fn install(&self, spec: &InstallSpec) -> Result<BTreeMap<String, String>, Error> {
        let out = self
            .gcloud
            .run(&ssh_argv(&self.target, Worker::All, &install_script(spec)))
            .await?;
        Ok(parse_versions(&out))
    }

    /// Starts the server on worker 0, detached, with its log and pid file.
    pub async fn launch(&self, spec: &LaunchSpec) -> Result<(), Error> {
        self.gcloud
            .run(&ssh_argv(
                &self.target,
                Worker::One(0),
                &launch_script(spec),
            ))
            .await?;
        Ok(())
    }

    /// Fails (with the log tail in the message) if the server has exited.
    pub async fn ensure_alive(&self) -> Result<(), Error> {
        self.gcloud
            .run(&ssh_argv(&self.target, Worker::One(0), &alive_script()))
            .await?;
        Ok(())
    }

    pub async fn stop_server(&self) -> Result<(), Error> {
        self.gcloud
            .run(&ssh_argv(&self.target, Worker::One(0), &stop_script()))
            .await?;
        Ok(())
    }

    /// Waits on the VM for the profiler's files under `dir` and returns
    /// them as (size, path relative to `dir`).
    pub async fn wait_for_traces(
        &self,
        dir: &str,
        timeout_s: u64,
    ) -> Result<Vec<(u64, String)>, Error> {
        let script = wait_for_traces_script(dir, timeout_s);
        let out = self
            .gcloud
            .run(&ssh_argv(&self.target, Worker::One(0), &script))
            .await?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let (size, path) = line.split_once(' ')?;
                Some((size.parse().ok()?, path.to_owned()))
            })
            .collect())
    }

    /// Copies `remote` from worker 0 into `local`.
    pub async fn fetch(&self, remote: &str, local: &Path, recurse: bool) -> Result<(), Error> {
        self.gcloud
            .run(&scp_from_argv(&self.target, 0, remote, local, recurse))
            .await?;
        Ok(())
    }

    /// Copies the server log into `local`.
    pub async fn fetch_log(&self, local: &Path) -> Result<(), Error> {
        self.fetch(REMOTE_LOG, local, false).await
    }

    /// Forwards `127.0.0.1:local_port` to the server port on worker 0.
    pub fn tunnel(&self, local_port: u16, remote_port: u16) -> Result<Background, Error> {
        self.gcloud
            .spawn(&tunnel_argv(&self.target, local_port, remote_port))
    }
}
