//! [`drive`]: one profiling run on any [`Host`], with everything that is
//! the same on every host written once: the run id and run folder, the
//! session against the host's servers (warmup, profile window, workload,
//! py-spy hooks, several servers at once for a rehearsed slice), secrets
//! redacted from what the servers left, the run metadata with its
//! reproduction line, checksums, the report and the archive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use profile_session::RunFolder;
use profile_session::plan::{HostKind, HostPlan, Plan};
use profile_session::session::{
    self, NoHooks, SessionConfig, SessionError, SessionOutcome, Workload, WorkloadHooks,
};
use sglang_server::StartProfile;

use crate::DriveError;
use crate::archive::UploadOpts;
use crate::events::Progress;
use crate::host::{Cancel, Host, HostFacts, RunContext, Servers, Session};

/// What a finished run left.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    /// `report.md`, when a session ran.
    pub report: Option<PathBuf>,
    /// Where the run was archived, with `--upload`.
    pub archive_url: Option<String>,
    /// What the host did with what it started (`deleted sglprof-...`).
    pub closing: Vec<String>,
}

/// The run id of a plan started at `now`: `20261206T123508Z-generate`, with
/// the host's suffix for a remote host (`-tpu`, `-k8s`, `-attach`).
pub fn run_id(plan: &Plan, now: SystemTime) -> String {
    let suffix = match plan.host.kind() {
        HostKind::Local => "",
        HostKind::Attach => "-attach",
        HostKind::Tpu => "-tpu",
        HostKind::K8s => "-k8s",
    };
    format!(
        "{}Z-{}{suffix}",
        tpu_cloud::time::compact_stamp(now).replace('-', "T"),
        plan.endpoint.slug()
    )
}

/// The run folder of a plan: `--out`, or `runs/<run-id>` in the current
/// directory; absolute either way.
pub fn run_dir(plan: &Plan, run_id: &str) -> Result<PathBuf, DriveError> {
    let dir = match &plan.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("runs").join(run_id),
    };
    std::path::absolute(&dir).map_err(|source| DriveError::Io {
        what: "cannot resolve",
        path: dir,
        source,
    })
}

fn is_dry_run(plan: &Plan) -> bool {
    match &plan.host {
        HostPlan::Tpu(tpu) => tpu.dry_run,
        HostPlan::K8s(k8s) => k8s.dry_run,
        _ => false,
    }
}

/// Runs `plan` on `host`: claims the run folder, lets the host run the
/// session, and finishes the run (metadata, checksums, report, archive).
/// `cancel` fires on a signal; whatever the host started is ended before
/// this returns.
pub async fn drive(
    plan: &Plan,
    host: &mut dyn Host,
    progress: Arc<dyn Progress>,
    cancel: Cancel,
) -> Result<RunOutcome, DriveError> {
    plan.check()?;
    host.check(plan)?;
    // A bad --upload (no bucket) fails before anything starts.
    let archive = UploadOpts::from_plan(&plan.archive)?;
    let started_at = SystemTime::now();
    let run_id = run_id(plan, started_at);
    let run_dir = run_dir(plan, &run_id)?;
    let dry_run = is_dry_run(plan);
    let folder = if dry_run {
        RunFolder::planned(&run_dir)?
    } else {
        let folder = RunFolder::create(&run_dir)?;
        progress.line("profile", &format!("run folder {}", run_dir.display()));
        folder
    };
    // The run's own name is its folder's (`--out` may name it).
    let run_id = run_dir
        .file_name()
        .map_or(run_id.clone(), |n| n.to_string_lossy().into_owned());
    let archive = archive.map(|mut opts| {
        // Every host archives under the same address for one run.
        opts.run_id.get_or_insert_with(|| run_id.clone());
        opts
    });
    let ctx = RunContext {
        plan,
        run_id: &run_id,
        folder: &folder,
        archive: archive.as_ref(),
        progress: progress.clone(),
    };
    let mut session = DriverSession {
        plan,
        folder: &folder,
        progress: &*progress,
        profile: None,
    };
    let outcome = host.run(&ctx, &mut session, cancel).await?;
    let profile = session.profile.take();
    let Some(session) = outcome.session else {
        return Ok(RunOutcome {
            run_dir,
            report: None,
            archive_url: None,
            closing: outcome.facts.closing,
        });
    };
    let facts = outcome.facts;
    if let Some(key) = &plan.api_key {
        // Servers log their arguments at start-up, the key among them, and
        // py-spy records the launcher's command line.
        profile_session::redact::in_files(&folder.logs(), key)?;
        profile_session::redact::in_files(&folder.pyspy(), key)?;
    }
    if plan.py_spy && facts.py_spy.is_none() {
        return Err(DriveError::NoPySpy(folder.logs()));
    }
    let metadata = run_metadata(
        plan,
        &folder,
        &run_id,
        &session,
        profile.as_ref(),
        &facts,
        (started_at, SystemTime::now()),
    );
    let archive_url = finish(&folder, &metadata, archive.as_ref(), &*progress).await?;
    Ok(RunOutcome {
        report: Some(run_dir.join("report.md")),
        run_dir,
        archive_url,
        closing: facts.closing,
    })
}

/// The session the driver runs on every host's servers.
struct DriverSession<'a> {
    plan: &'a Plan,
    folder: &'a RunFolder,
    progress: &'a dyn Progress,
    /// The `/start_profile` body the primary server got.
    profile: Option<StartProfile>,
}

#[async_trait::async_trait]
impl Session for DriverSession<'_> {
    async fn run(
        &mut self,
        servers: &Servers<'_>,
        hooks: &mut dyn WorkloadHooks,
    ) -> Result<SessionOutcome, SessionError> {
        let plan = self.plan;
        let workload = Workload::from_plan(plan, &servers.model, servers.label_token_ids.clone())?;
        let configs: Vec<SessionConfig> = servers
            .servers
            .iter()
            .map(|server| SessionConfig {
                workload: workload.clone(),
                warmup: plan.warmup_requests(),
                profile: plan.start_profile(server.profile_dir.clone()),
                local_output_dir: server.local_profile_dir.clone(),
                trace_wait: server.trace_wait,
                quiet_wait: std::time::Duration::from_secs(plan.quiet_wait_s),
                inputs_dir: match server.worker {
                    0 => self.folder.inputs(),
                    i => self.folder.inputs().join(format!("worker-{i}")),
                },
                progress: server.worker == 0,
            })
            .collect();
        let Some((primary, others)) = servers.servers.split_first() else {
            unreachable!("a host serves at least one server");
        };
        self.profile = Some(configs[0].profile.clone());
        let first = session::run_session(&primary.client, primary.liveness, &configs[0], hooks);
        let rest = others
            .iter()
            .zip(&configs[1..])
            .map(|(server, config)| async move {
                let res =
                    session::run_session(&server.client, server.liveness, config, &mut NoHooks)
                        .await;
                (server.worker, res)
            });
        let (first, rest) = tokio::join!(first, futures_util::future::join_all(rest));
        let first = first?;
        for (worker, res) in rest {
            let other = res.map_err(|err| SessionError::Worker {
                worker,
                source: Box::new(err),
            })?;
            // Their results are in their own `inputs/worker-N/`; the
            // primary's are the run's.
            self.progress.line(
                "profile",
                &format!(
                    "worker {worker}: {}: {} request(s), {} failed",
                    other.workload.description, other.workload.requests, other.workload.errors
                ),
            );
        }
        Ok(first)
    }
}

/// The run metadata: what is the same on every host, and the host's facts.
fn run_metadata(
    plan: &Plan,
    folder: &RunFolder,
    run_id: &str,
    session: &SessionOutcome,
    profile: Option<&StartProfile>,
    facts: &HostFacts,
    (started_at, finished_at): (SystemTime, SystemTime),
) -> session_report::RunMetadata {
    let mut res = session_report::RunMetadata::new();
    let stamp = tpu_cloud::time::rfc3339(started_at);
    res.run_id = Some(run_id.to_owned());
    res.date = Some(stamp[..10].to_owned());
    res.started_at = Some(stamp);
    res.finished_at = Some(tpu_cloud::time::rfc3339(finished_at));
    res.model = Some(facts.model.clone());
    res.hardware = Some(facts.hardware.clone());
    res.zone = Some(facts.zone.clone());
    res.endpoint = Some(plan.endpoint.path().to_owned());
    res.python_version = facts.python_version.clone();
    res.jax_version = facts.jax_version.clone();
    res.jaxlib_version = facts.jaxlib_version.clone();
    res.sglang_jax_version = facts.sglang_jax_version.clone();
    res.profile = profile.map(|profile| session::profile_config(profile, folder.root()));
    res.workload = Some(session::workload_summary(&session.workload));
    res.serving = Some(session.serving.clone());
    let resolved = facts.resolved.as_ref().unwrap_or(plan);
    res.reproduction = vec![resolved.reproduction(), String::new()];
    let mut manual = facts.manual.clone();
    if let Some(profile) = profile {
        manual.workflow = profile_session::manual::ManualSteps::http_workflow(
            &facts.base_url,
            plan.endpoint.path(),
            profile,
            plan.concurrency,
            plan.api_key.is_some(),
            plan.warmup_requests() > 0,
        );
    }
    res.reproduction.extend(manual.render());
    res.cost = facts.cost.clone();
    res.cost_source = facts.cost_source.clone();
    if let Some(files) = &facts.py_spy {
        files.record_in(folder, &mut res);
    }
    res
}

/// The tail of every run: run metadata, checksums, the report, and the
/// archive upload when asked. Returns the archive's address.
async fn finish(
    folder: &RunFolder,
    metadata: &session_report::RunMetadata,
    archive: Option<&UploadOpts>,
    progress: &dyn Progress,
) -> Result<Option<String>, DriveError> {
    let run_dir = folder.root();
    folder.write_metadata(metadata)?;
    let n_files = folder.write_checksums()?;
    progress.line(
        "profile",
        &format!("checksums.txt lists {n_files} artifact files"),
    );
    if let Some(opts) = archive {
        crate::archive::record_archive_target(run_dir, opts)?;
    }
    profile_report::generate(&profile_report::Request::for_run_folder(run_dir)).map_err(
        |source| DriveError::Report {
            run_dir: run_dir.to_path_buf(),
            source,
        },
    )?;
    progress.line(
        "profile",
        &format!("report: {}", run_dir.join("report.md").display()),
    );
    let Some(opts) = archive else {
        return Ok(None);
    };
    let url = crate::archive::upload_run(run_dir, opts, &[], progress).await?;
    progress.line("profile", &format!("archived: {url}"));
    Ok(Some(url))
}

/// The bytes of every file under `dir`: what an archive will store.
pub fn folder_bytes(dir: &Path) -> Result<u64, DriveError> {
    let mut total = 0;
    let files = profile_report::list_files(dir).map_err(|source| DriveError::Report {
        run_dir: dir.to_path_buf(),
        source,
    })?;
    for file in files {
        total += std::fs::metadata(&file)
            .map_err(|source| DriveError::Io {
                what: "cannot stat",
                path: file.clone(),
                source,
            })?
            .len();
    }
    Ok(total)
}
