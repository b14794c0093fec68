//! py-spy around the profiled workload, the same on every host: two
//! recorders (raw collapsed stacks, which the report reads, and speedscope)
//! attached with `--subprocesses` to the server's launcher for the
//! profiled window, their files under `artifacts/py-spy/` and named in the
//! run metadata.
//!
//! [`LocalRecorder`] runs py-spy on this machine under the `sglang-server`
//! supervisor; [`SliceRecorder`] runs it on every host of a TPU slice
//! beside the server (`tpu_cloud::remote::Slice` helpers) and copies the
//! files home. Both are [`WorkloadHooks`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use sglang_server::{SpawnSpec, Supervised};
use tpu_cloud::remote::Slice;

use crate::RunFolder;
use crate::session::{SessionError, WorkloadHooks};

/// The py-spy that every host installs: the version the local environment
/// and the TPU install script pin.
pub const PACKAGE: &str = "py-spy==0.4.3";

/// Samples per second.
const RATE: &str = "100";

/// How long a recorder gets to write its file after SIGINT.
const WRITE_GRACE: Duration = Duration::from_secs(30);

/// The recordings: py-spy's `--format` and the file under `artifacts/py-spy/`.
pub const OUTPUTS: [(&str, &str); 2] = [
    ("raw", "profile.raw.txt"),
    ("speedscope", "profile.speedscope.json"),
];

/// The arguments of `py-spy` that record `pid` and its children in
/// `format` to `output`.
pub fn record_args(pid: u32, format: &str, output: &str) -> Vec<String> {
    [
        "record",
        "--subprocesses",
        "--pid",
        &pid.to_string(),
        "--rate",
        RATE,
        "--format",
        format,
        "--output",
        output,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The recorded files of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub raw: PathBuf,
    pub speedscope: PathBuf,
}

impl Files {
    /// Names the files in the run metadata, which the report reads.
    pub fn record_in(&self, folder: &RunFolder, metadata: &mut session_report::RunMetadata) {
        metadata.pyspy_raw = Some(folder.relative(&self.raw));
        metadata.pyspy_speedscope = Some(folder.relative(&self.speedscope));
    }

    fn complete(outputs: &[PathBuf]) -> Option<Files> {
        match outputs {
            [raw, speedscope] if raw.is_file() && speedscope.is_file() => Some(Files {
                raw: raw.clone(),
                speedscope: speedscope.clone(),
            }),
            _ => None,
        }
    }
}

fn hook_error(what: &str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> SessionError {
    let what = what.to_owned();
    move |source| SessionError::Hook { what, source }
}

/// py-spy on this machine, attached to a supervised server.
pub struct LocalRecorder {
    enabled: bool,
    program: PathBuf,
    pid: u32,
    out_dir: PathBuf,
    logs_dir: PathBuf,
    running: Vec<(Supervised, PathBuf)>,
    failed: bool,
}

impl LocalRecorder {
    /// Records `pid` with the `py-spy` at `program` when `enabled`.
    pub fn new(enabled: bool, program: &Path, pid: u32, folder: &RunFolder) -> LocalRecorder {
        LocalRecorder {
            enabled,
            program: program.to_path_buf(),
            pid,
            out_dir: folder.pyspy(),
            logs_dir: folder.logs(),
            running: Vec::new(),
            failed: false,
        }
    }

    /// Waits for the recorders to write their files; the files when both
    /// exist.
    pub async fn finish(&mut self) -> Option<Files> {
        for (recorder, _) in &self.running {
            if recorder.wait_then_stop(WRITE_GRACE).await.killed {
                self.failed = true;
            }
        }
        let outputs: Vec<PathBuf> = self.running.drain(..).map(|(_, out)| out).collect();
        if self.failed {
            return None;
        }
        Files::complete(&outputs)
    }
}

#[async_trait::async_trait]
impl WorkloadHooks for LocalRecorder {
    async fn before_workload(&mut self) -> Result<(), SessionError> {
        if !self.enabled {
            return Ok(());
        }
        std::fs::create_dir_all(&self.out_dir)
            .map_err(|err| hook_error("cannot create the py-spy folder")(err.into()))?;
        for (format, file) in OUTPUTS {
            let out = self.out_dir.join(file);
            let spec = SpawnSpec {
                name: format!("py-spy ({format})"),
                program: self.program.clone(),
                args: record_args(self.pid, format, &out.display().to_string()),
                env: Vec::new(),
                cwd: None,
                log_path: self.logs_dir.join(format!("py-spy-{format}.log")),
            };
            let recorder = Supervised::spawn(&spec)
                .map_err(|err| hook_error("cannot start py-spy")(err.into()))?;
            self.running.push((recorder, out));
        }
        // py-spy attaches to the server and its children before it samples;
        // on a busy machine that takes long enough to miss a short workload.
        for (recorder, _) in &self.running {
            sampling(recorder)
                .await
                .map_err(|err| hook_error("py-spy did not start sampling")(err.into()))?;
        }
        eprintln!(
            "[session] py-spy recording pid {} and its children",
            self.pid
        );
        Ok(())
    }

    async fn after_workload(&mut self) {
        for (recorder, _) in &self.running {
            recorder.send_interrupt();
        }
    }
}

/// What py-spy logs once it samples.
const SAMPLING_LINE: &str = "py-spy> Sampling process";

/// How long py-spy gets to attach before the workload starts anyway.
const ATTACH_WAIT: Duration = Duration::from_secs(15);

/// Waits until `recorder`'s log shows that it samples (at most
/// [`ATTACH_WAIT`]); an error when it exited first.
async fn sampling(recorder: &Supervised) -> Result<(), sglang_server::Error> {
    let started = std::time::Instant::now();
    while started.elapsed() < ATTACH_WAIT {
        if let Some(status) = recorder.exit_status() {
            return Err(recorder.died(status, "before it sampled"));
        }
        let log = std::fs::read_to_string(recorder.log_path()).unwrap_or_default();
        if log.contains(SAMPLING_LINE) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Where the files of `worker` go: `artifacts/py-spy/` for worker 0 (the
/// host whose profile the report reads), `artifacts/py-spy/worker-<i>/`
/// for the others.
pub fn worker_dir(folder: &RunFolder, worker: u32) -> PathBuf {
    match worker {
        0 => folder.pyspy(),
        i => folder.pyspy().join(format!("worker-{i}")),
    }
}

/// The folder on a host where the recorders write (it exists once the
/// server was launched).
const REMOTE_OUT: &str = tpu_cloud::script::REMOTE_DIR;

/// py-spy on every host of a slice, beside each host's server, as helper
/// processes of `tpu_cloud::remote::Slice`; [`SliceRecorder::finish`]
/// copies the files home.
pub struct SliceRecorder<'a> {
    enabled: bool,
    slice: &'a Slice,
    workers: Vec<u32>,
    folder: RunFolder,
    /// (worker, helper name) of the recorders started.
    started: Vec<(u32, String)>,
    failed: Option<String>,
}

impl<'a> SliceRecorder<'a> {
    /// Records the server of each of `workers` when `enabled`.
    pub fn new(
        enabled: bool,
        slice: &'a Slice,
        workers: Vec<u32>,
        folder: &RunFolder,
    ) -> SliceRecorder<'a> {
        SliceRecorder {
            enabled,
            slice,
            workers,
            folder: folder.clone(),
            started: Vec::new(),
            failed: None,
        }
    }

    /// Copies every host's files and recorder logs home; worker 0's files
    /// when both recorders of every host wrote theirs. A copy that fails
    /// is an error; a recorder that failed is `None` (its log is copied).
    pub async fn finish(&mut self) -> Result<Option<Files>, tpu_cloud::Error> {
        if !self.enabled || self.started.is_empty() {
            return Ok(None);
        }
        let mut complete = self.failed.is_none();
        let mut first = None;
        for &worker in &self.workers {
            let dir = worker_dir(&self.folder, worker);
            let logs = match worker {
                0 => self.folder.logs(),
                i => self.folder.logs().join(format!("worker-{i}")),
            };
            mkdir(&dir)?;
            mkdir(&logs)?;
            let mut outputs = Vec::new();
            for (format, file) in OUTPUTS {
                let name = helper_name(format);
                let log = logs.join(format!("{name}.log"));
                let remote_log = tpu_cloud::script::helper_log_file(&name);
                // The log says why, when the recorder failed.
                let _ = self.slice.fetch(worker, &remote_log, &log, false).await;
                let local = dir.join(file);
                let remote = format!("{REMOTE_OUT}/{file}");
                if self
                    .slice
                    .fetch(worker, &remote, &local, false)
                    .await
                    .is_err()
                {
                    complete = false;
                }
                outputs.push(local);
            }
            let files = Files::complete(&outputs);
            complete &= files.is_some();
            if worker == 0 {
                first = files;
            }
        }
        if let Some(why) = &self.failed {
            eprintln!("[session] py-spy: {why}");
        }
        Ok(if complete { first } else { None })
    }
}

fn helper_name(format: &str) -> String {
    format!("py-spy-{format}")
}

fn mkdir(dir: &Path) -> Result<(), tpu_cloud::Error> {
    std::fs::create_dir_all(dir).map_err(|source| tpu_cloud::Error::Io {
        action: "creating",
        path: dir.to_path_buf(),
        source,
    })
}

#[async_trait::async_trait]
impl WorkloadHooks for SliceRecorder<'_> {
    async fn before_workload(&mut self) -> Result<(), SessionError> {
        if !self.enabled {
            return Ok(());
        }
        for &worker in &self.workers {
            let pid = self
                .slice
                .server_pid(worker)
                .await
                .map_err(|err| hook_error("cannot find the server for py-spy")(err.into()))?;
            for (format, file) in OUTPUTS {
                let name = helper_name(format);
                let out = format!("{REMOTE_OUT}/{file}");
                let args = record_args(pid, format, &out);
                self.slice
                    .start_helper(worker, &name, "py-spy", &args, true)
                    .await
                    .map_err(|err| hook_error("cannot start py-spy")(err.into()))?;
                self.started.push((worker, name));
            }
            eprintln!("[session] py-spy recording pid {pid} and its children on worker {worker}");
        }
        Ok(())
    }

    async fn after_workload(&mut self) {
        for (worker, name) in &self.started {
            if let Err(err) = self
                .slice
                .stop_helper(*worker, name, WRITE_GRACE.as_secs())
                .await
            {
                self.failed.get_or_insert_with(|| err.to_string());
            }
        }
    }
}
