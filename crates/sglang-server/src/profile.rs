//! The JAX profiler endpoints: the `/start_profile` body, stopping (including
//! the `num_steps` auto-stop case) and waiting for the trace files.
//!
//! The profiler writes `<output_dir>/plugins/profile/<YYYY_MM_DD_HH_MM_SS>/`
//! with `<host>.xplane.pb` and `<host>.trace.json.gz`; in stage mode one such
//! tree per stage under `<output_dir>/<stage>/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{Client, ProfileStatus};
use crate::error::Error;

/// The body of `POST /start_profile`. Every field is optional; unset fields
/// are left out so the server's defaults apply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StartProfile {
    /// A path on the server's machine (or `gs://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
    /// Stop by itself after this many forward passes (it records N-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_steps: Option<u32>,
    /// Absolute forward counter to start at. Broken in sglang-jax 0.0.x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_tracer_level: Option<u32>,
    /// 0.0.x servers ignore an explicit 0 (they test truthiness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_tracer_level: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_by_stage: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_stages: Option<Vec<String>>,
}

impl StartProfile {
    /// The options of this body that only servers with the later profiling
    /// API honour (0.0.x releases ignore them silently): `start_step`,
    /// `profile_by_stage`, `profile_stages` and an explicit
    /// `python_tracer_level` of 0 (0.0.x tests its truthiness).
    pub fn later_api_options(&self) -> Vec<&'static str> {
        let mut res = Vec::new();
        if self.start_step.is_some() {
            res.push("start_step");
        }
        if self.profile_by_stage == Some(true) {
            res.push("profile_by_stage");
        }
        if self.profile_stages.is_some() {
            res.push("profile_stages");
        }
        if self.python_tracer_level == Some(0) {
            res.push("python_tracer_level 0");
        }
        res
    }

    /// The folders the traces land in, relative to `output_dir`: the
    /// stages (`prefill`, `decode` by default) in stage mode, else the
    /// folder itself (`""`).
    pub fn stage_dirs(&self) -> Vec<String> {
        if self.profile_by_stage != Some(true) {
            return vec![String::new()];
        }
        match &self.profile_stages {
            Some(stages) => stages.clone(),
            None => vec!["prefill".to_owned(), "decode".to_owned()],
        }
    }
}

/// What the server's profiler supports, found out by asking it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfilerFeatures {
    /// `GET /profile_status` exists; so do `start_step`, stage capture and
    /// an explicit tracer level 0 (they came together upstream).
    pub later_api: bool,
}

/// How a profile ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// `/stop_profile` answered 200 with this text.
    Stopped(String),
    /// `/stop_profile` answered 500 because `num_steps` had already stopped
    /// the trace, which the status endpoint or the trace files confirm.
    AlreadyStopped,
}

/// One `plugins/profile/<run>/` folder and its two trace files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRun {
    pub dir: PathBuf,
    pub xplane: Option<PathBuf>,
    pub trace_json_gz: Option<PathBuf>,
}

impl TraceRun {
    pub fn is_complete(&self) -> bool {
        self.xplane.is_some() && self.trace_json_gz.is_some()
    }
}

impl Client {
    /// Asks the server which profiling API it has (`GET /profile_status`).
    pub async fn profiler_features(&self) -> Result<ProfilerFeatures, Error> {
        let later_api = self.profile_status().await?.is_some();
        Ok(ProfilerFeatures { later_api })
    }

    /// `POST /start_profile`, refused with [`Error::Unsupported`] before
    /// anything is sent when `body` uses an option the server would ignore.
    pub async fn start_profile_checked(&self, body: &StartProfile) -> Result<String, Error> {
        let wanted = body.later_api_options();
        if !wanted.is_empty() && !self.profiler_features().await?.later_api {
            return Err(Error::Unsupported {
                url: self.base_url().to_owned(),
                feature: wanted.join(", "),
            });
        }
        self.start_profile(body).await
    }

    /// Ends a profile started with `profile`, whose files land in
    /// `local_output_dir` (the same folder as seen from this machine).
    ///
    /// A 500 from `/stop_profile` is a success when the profile had stopped
    /// by itself: `/profile_status` says idle, or, on servers without that
    /// endpoint, trace files exist under the output folder. Any other failure
    /// is returned with the server's status, body and log tail.
    pub async fn stop_profile_checked(
        &self,
        profile: &StartProfile,
        local_output_dir: Option<&Path>,
    ) -> Result<StopOutcome, Error> {
        let err = match self.stop_profile().await {
            Ok(text) => return Ok(StopOutcome::Stopped(text)),
            Err(err) => err,
        };
        let may_have_stopped =
            profile.num_steps.is_some() || profile.profile_by_stage == Some(true);
        if err.status() != Some(500) || !may_have_stopped {
            return Err(err);
        }
        match self.profile_status().await {
            Ok(Some(ProfileStatus::Idle)) => return Ok(StopOutcome::AlreadyStopped),
            Ok(Some(ProfileStatus::InProgress)) => return Err(err),
            Ok(None) | Err(_) => {}
        }
        match local_output_dir {
            Some(dir) if find_trace_runs(dir).iter().any(TraceRun::is_complete) => {
                Ok(StopOutcome::AlreadyStopped)
            }
            _ => Err(err),
        }
    }
}

/// Every `plugins/profile/<run>/` folder under `output_dir` or one level
/// below it (stage mode), sorted by path.
pub fn find_trace_runs(output_dir: &Path) -> Vec<TraceRun> {
    let mut roots = vec![output_dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(output_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|name| name != "plugins") {
                roots.push(path);
            }
        }
    }
    let mut res = Vec::new();
    for root in roots {
        let Ok(runs) = std::fs::read_dir(root.join("plugins").join("profile")) else {
            continue;
        };
        for run in runs.flatten() {
            let dir = run.path();
            if !dir.is_dir() {
                continue;
            }
            let mut trace_run = TraceRun {
                dir: dir.clone(),
                xplane: None,
                trace_json_gz: None,
            };
            for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = file.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_owned();
                if name.ends_with(".xplane.pb") {
                    trace_run.xplane = Some(path);
                } else if name.ends_with(".trace.json.gz") {
                    trace_run.trace_json_gz = Some(path);
                }
            }
            res.push(trace_run);
        }
    }
    res.sort_by(|a, b| a.dir.cmp(&b.dir));
    res
}

/// Waits until `output_dir` holds at least one complete trace run whose file
/// sizes did not change between two polls `poll` apart, and returns all the
/// complete runs. Fails after `timeout`.
pub async fn wait_for_trace_files(
    output_dir: &Path,
    poll: Duration,
    timeout: Duration,
) -> Result<Vec<TraceRun>, Error> {
    let started = Instant::now();
    let mut previous: Option<Vec<(PathBuf, u64)>> = None;
    loop {
        let runs: Vec<TraceRun> = find_trace_runs(output_dir)
            .into_iter()
            .filter(TraceRun::is_complete)
            .collect();
        let sizes: Vec<(PathBuf, u64)> = runs
            .iter()
            .flat_map(|run| [run.xplane.clone(), run.trace_json_gz.clone()])
            .flatten()
            .map(|path| {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                (path, len)
            })
            .collect();
        let stable = !runs.is_empty()
            && sizes.iter().all(|(_, len)| *len > 0)
            && previous.as_ref() == Some(&sizes);
        if stable {
            return Ok(runs);
        }
        if started.elapsed() >= timeout {
            let detail = if runs.is_empty() {
                "no plugins/profile/<run>/ folder with both .xplane.pb and .trace.json.gz"
                    .to_owned()
            } else {
                "file sizes still changing or zero".to_owned()
            };
            return Err(Error::TraceIncomplete {
                dir: output_dir.to_path_buf(),
                waited: started.elapsed(),
                detail,
            });
        }
        previous = Some(sizes);
        tokio::time::sleep(poll).await;
    }
}

/// Checks what a profile left in `output_dir` after a stop that
/// "succeeded": every expected folder ([`StartProfile::stage_dirs`]) must
/// hold a trace run with a non-empty `.xplane.pb`. A missing or 0-byte
/// file is [`Error::CaptureFailed`] (upstream writes 0 bytes when a
/// capture exceeds protobuf's 2 GB limit); such a capture is never
/// analysed. Returns the runs found.
pub fn check_capture(output_dir: &Path, profile: &StartProfile) -> Result<Vec<TraceRun>, Error> {
    let mut res = Vec::new();
    for stage in profile.stage_dirs() {
        let dir = if stage.is_empty() {
            output_dir.to_path_buf()
        } else {
            output_dir.join(&stage)
        };
        let runs: Vec<TraceRun> = find_trace_runs(&dir)
            .into_iter()
            .filter(|run| stage.is_empty() || run.dir.starts_with(&dir))
            .collect();
        if runs.is_empty() {
            return Err(Error::CaptureFailed {
                path: dir,
                reason: "no plugins/profile/<run>/ folder was written".to_owned(),
            });
        }
        for run in &runs {
            let Some(xplane) = &run.xplane else {
                return Err(Error::CaptureFailed {
                    path: run.dir.clone(),
                    reason: "no .xplane.pb in the trace folder".to_owned(),
                });
            };
            let len = std::fs::metadata(xplane).map(|m| m.len()).unwrap_or(0);
            if len == 0 {
                return Err(Error::CaptureFailed {
                    path: xplane.clone(),
                    reason: "the file is empty (0 bytes; upstream writes nothing for a capture \
                             over protobuf's 2 GB limit: profile fewer steps)"
                        .to_owned(),
                });
            }
        }
        res.extend(runs);
    }
    Ok(res)
}
