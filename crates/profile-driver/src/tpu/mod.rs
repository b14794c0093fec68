//! The TPU host: a Cloud TPU VM that exists only inside the run.
//!
//! `tpu-state.json` is written in the run folder before anything is asked
//! of Google; the VM is created (or `--vm` reused), waited for until
//! READY, sglang-jax is installed on it, the server launched detached and
//! reached through an ssh tunnel, and the driver's session runs against
//! it. The trace files are waited for on the VM and copied home with the
//! server log, the VM is deleted, and the report gets a Cost Summary from
//! the billed time. The VM is deleted on every exit path (error, panic,
//! the cancel future on a signal) unless `--keep`; a run killed outright
//! leaves its state file for `cargo xtask cleanup`.
//!
//! A rehearsal ([`rehearsal`]) is this same host with the Cloud TPU API
//! simulated on loopback and each worker a folder on this machine. A dry
//! run prints every API call and gcloud command in order, and needs no
//! credentials: the API client and gcloud runner record instead of act.

pub mod admin;
pub mod plan;
pub mod rehearsal;
pub mod remote;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use profile_session::plan::{HostKind, Plan, TpuOptions};
use tpu_cloud::api::{Node, NodeState};
use tpu_cloud::clock::NoWaitClock;
use tpu_cloud::gcloud::{Gcloud, Target};
use tpu_cloud::lease::{self, Failure};
use tpu_cloud::remote::Slice;
use tpu_cloud::state::{Ledger, Phase, STATE_FILE};
use tpu_cloud::workers::GcloudWorkers;
use tpu_cloud::{SystemClock, Timing, TpuClient, Transcript};

use self::plan::TpuRun;
use self::rehearsal::Rehearsal;
use self::remote::{Env, RemoteFacts, remote_session};
use crate::DriveError;
use crate::host::{Cancel, Host, HostFacts, HostOutcome, RunContext, Session};

/// Where a dry run's lines go (the command line prints them on stdout).
pub type Print = Arc<dyn Fn(&str) + Send + Sync>;

/// A live client with Google credentials, or, for a dry run, a recording
/// one that hands each line to `print` as it is recorded.
pub async fn api_client(
    url: &str,
    dry_run: Option<Print>,
) -> Result<(TpuClient, Option<Transcript>), DriveError> {
    let config = tpu_cloud::ClientConfig {
        base_url: url.to_owned(),
        timing: Timing::production(),
    };
    if let Some(print) = dry_run {
        let transcript = Transcript::with_sink(Arc::new(move |line: &str| print(line)));
        let client = TpuClient::dry_run(config, Arc::new(NoWaitClock), transcript.clone());
        return Ok((client, Some(transcript)));
    }
    let tokens = tpu_cloud::auth::default_token_provider().await?;
    Ok((TpuClient::new(config, tokens, Arc::new(SystemClock))?, None))
}

/// A Cloud TPU VM for one run (or its rehearsal).
pub struct TpuHost {
    pub options: TpuOptions,
    /// Where the dry run's plan, API calls and commands are printed.
    pub print: Print,
}

#[async_trait::async_trait]
impl Host for TpuHost {
    fn kind(&self) -> HostKind {
        HostKind::Tpu
    }

    fn check(&self, plan: &Plan) -> Result<(), DriveError> {
        if self.options.git.is_none() {
            // Refused before a VM is created; checked again once installed.
            plan.check_server(&plan.sglang_jax_version)?;
        }
        plan::project(self.options.project.as_deref(), self.options.dry_run)?;
        Ok(())
    }

    async fn run(
        &mut self,
        ctx: &RunContext<'_>,
        session: &mut dyn Session,
        cancel: Cancel,
    ) -> Result<HostOutcome, DriveError> {
        let tpu = &self.options;
        let progress = &*ctx.progress;
        let dry_run = tpu.dry_run;
        let started_at = SystemTime::now();
        let mut run = TpuRun::new(ctx.plan, tpu, ctx.run_id, started_at)?;
        let run_dir = ctx.folder.root();
        if dry_run {
            (self.print)(&format!(
                "# plan: {}",
                ctx.plan.to_json().replace('\n', "\n# ")
            ));
        }
        let rehearsal = match &tpu.rehearsal {
            Some(faults) => {
                let hosts = tpu_cloud::fake::hosts_for(&tpu.accelerator_type).unwrap_or(1);
                let rehearsal = Rehearsal::start(
                    &run.location.project,
                    &run.location.zone,
                    hosts,
                    &ctx.plan.sglang_jax_version,
                    run_dir,
                    faults,
                    progress,
                )
                .await?;
                if ctx.plan.model_path.is_none() {
                    run.model = rehearsal.env.model_dir.display().to_string();
                }
                run.remote_profile_dir = rehearsal.profile_dir(&run.run_id);
                Some(rehearsal)
            }
            None => None,
        };
        // The hosts of the slice are known once the node is READY (its
        // network endpoints); a rehearsal made its workers up front.
        let (client, gcloud) = match &rehearsal {
            Some(rehearsal) => (rehearsal.client()?, None),
            None => {
                let print = dry_run.then(|| self.print.clone());
                let (client, transcript) = api_client(&tpu.api_url, print).await?;
                let gcloud = match &transcript {
                    Some(transcript) => Gcloud::dry_run(transcript.clone()),
                    None => Gcloud::new(),
                };
                let target = Target {
                    project: run.location.project.clone(),
                    zone: run.location.zone.clone(),
                    node: run.node_id.clone(),
                    extra_flags: tpu.gcloud_flags.clone(),
                };
                (client, Some((gcloud, target)))
            }
        };
        let slice_of = |node: &Node| -> Slice {
            match (&rehearsal, &gcloud) {
                (Some(rehearsal), _) => Slice::new(rehearsal.workers.clone()),
                (None, Some((gcloud, target))) => Slice::new(Arc::new(GcloudWorkers::new(
                    gcloud.clone(),
                    target.clone(),
                    node,
                ))),
                (None, None) => unreachable!("a live session has gcloud"),
            }
        };
        let env = Env {
            cpu: rehearsal.as_ref().map(|r| &r.env),
            dry_run: dry_run.then_some(&*self.print),
        };
        let run = run;
        let req = run.node_request(tpu);

        // The state file exists before anything is asked of Google.
        let state_path = run_dir.join(STATE_FILE);
        let state = match &tpu.vm {
            Some(_) => {
                let mut state = req.planned_state();
                state.owned = false;
                state.phase = Phase::Reused;
                state.queued_resource = None;
                state
            }
            None => req.planned_state(),
        };
        let ledger = if dry_run {
            Ledger::in_memory(state)
        } else {
            Ledger::create(&state_path, state)?
        };
        // The lease's steps (create, READY, delete) as progress lines.
        let lines = ctx.progress.clone();
        let mut ledger = ledger.with_progress(Arc::new(move |line: &str| {
            lines.line("tpu", line);
        }));

        // A signal's name, for the closing line.
        let got_signal = OnceLock::new();
        let cancelled = async {
            let name = cancel.await;
            let _ = got_signal.set(name);
            progress.line(
                "tpu",
                &format!("{name}: stopping the session and deleting the VM (unless --keep)"),
            );
        };
        let run_ref = &run;
        let env_ref = &env;
        let work = |node: Node| {
            let remote = slice_of(&node);
            async move { remote_session(ctx, tpu, run_ref, &remote, env_ref, session).await }
        };
        let (outcome, release) = if tpu.vm.is_some() {
            let work = async {
                let node = client
                    .get_node(&run.location, &run.node_id)
                    .await
                    .map_err(Failure::Provision)?;
                if node.state != Some(NodeState::Ready) {
                    return Err(Failure::Provision(tpu_cloud::Error::NodeLost {
                        name: run.node_id.clone(),
                        state: format!("{:?}", node.state),
                    }));
                }
                work(node).await.map_err(Failure::Session)
            };
            let res = tokio::select! {
                biased;
                () = cancelled => Err(Failure::Cancelled),
                res = work => res,
            };
            (res, None)
        } else {
            let leased =
                lease::with_node(&client, &req, &mut ledger, tpu.keep, cancelled, work).await;
            (leased.outcome, leased.release)
        };
        // A state file behind the facts is said in the closing line, so
        // that `cleanup` is not trusted blindly.
        let state_note = ledger.unsaved_note();
        let finished_at = SystemTime::now();
        if let Some(rehearsal) = &rehearsal {
            // The DELETE ended the workers' servers; this catches a run
            // that never got that far.
            rehearsal.shutdown(progress);
        }

        // What became of the VM: a leaked VM matters more than a failed run.
        let mut vm = match &release {
            Some(Ok(())) if ledger.state.ready_at.is_none() => {
                format!("no VM left ({} never became READY)", run.node_id)
            }
            Some(Ok(())) => format!("deleted {}", run.node_id),
            Some(Err(err)) => format!(
                "could not delete {}: {err}; run `cargo xtask cleanup {}`",
                run.node_id,
                run_dir.display()
            ),
            None if tpu.vm.is_some() => format!("left the reused VM {} running", run.node_id),
            None => format!(
                "kept {} running (--keep); delete it with `cargo xtask cleanup {}`",
                run.node_id,
                run_dir.display()
            ),
        };
        if let Some(note) = &state_note {
            vm.push_str(&format!("; {note}"));
        }
        // A failed run ends with one line: what happened, the VM, what is kept.
        let failed = |what: String| {
            let kept = if dry_run {
                String::new()
            } else {
                format!("; kept {}", kept_files(run_dir))
            };
            DriveError::Failed(format!("{what}; {vm}{kept}"))
        };
        let remote_outcome = match outcome {
            Ok(res) => res,
            Err(Failure::Provision(err)) => return Err(failed(crate::one_line(&err))),
            Err(Failure::Session(err)) => {
                return Err(failed(format!(
                    "the TPU session on {} failed: {}",
                    run.node_id,
                    crate::one_line(&err)
                )));
            }
            Err(Failure::Cancelled) => {
                let signal = got_signal.get().copied().unwrap_or("a signal");
                return Err(failed(format!("interrupted by {signal}")));
            }
        };
        if let Some(Err(_)) = release {
            return Err(failed(
                "the session succeeded but the VM was not deleted".to_owned(),
            ));
        }
        progress.line("tpu", &vm);
        let closing = vec![vm];
        let Some((session, remote)) = remote_outcome else {
            return Ok(HostOutcome {
                session: None,
                facts: HostFacts {
                    closing,
                    ..HostFacts::default()
                },
            });
        };
        let uploaded_bytes = match ctx.archive {
            Some(_) => Some(crate::folder_bytes(run_dir)?),
            None => None,
        };
        let facts = facts(
            ctx.plan,
            tpu,
            &run,
            &ledger.state,
            &remote,
            finished_at,
            uploaded_bytes,
            run_dir,
            closing,
        );
        Ok(HostOutcome {
            session: Some(session),
            facts,
        })
    }
}

/// What the run records of its VM.
#[allow(clippy::too_many_arguments)]
fn facts(
    plan: &Plan,
    tpu: &TpuOptions,
    run: &TpuRun,
    state: &tpu_cloud::state::RunState,
    remote: &RemoteFacts,
    finished_at: SystemTime,
    uploaded_bytes: Option<u64>,
    run_dir: &Path,
    closing: Vec<String>,
) -> HostFacts {
    let (cost, cost_source) = plan::cost_rows(tpu, run, state, finished_at, uploaded_bytes);
    let mut resolved = plan.clone();
    resolved.model_path = Some(run.model.clone());
    HostFacts {
        model: run.model.clone(),
        hardware: plan::hardware_label(&tpu.accelerator_type),
        zone: run.location.zone.clone(),
        python_version: remote.versions.get("python").cloned(),
        jax_version: remote.versions.get("jax").cloned(),
        jaxlib_version: remote.versions.get("jaxlib").cloned(),
        sglang_jax_version: remote.versions.get("sglang-jax").cloned(),
        manual: plan::manual_steps(
            tpu,
            run,
            &remote.server_line,
            remote.stand_in.as_deref(),
            remote.local_port,
            remote.remote_port,
            run_dir,
        ),
        base_url: format!("http://127.0.0.1:{}", remote.local_port),
        resolved: Some(resolved),
        py_spy: remote.py_spy.clone(),
        cost,
        cost_source: Some(cost_source),
        closing,
    }
}

/// The run folder and what it holds, for the last line of a failed run:
/// `runs/X (tpu-state.json, logs/ (server.log, tpu-api.log), inputs/ (7 files))`.
fn kept_files(dir: &Path) -> String {
    let mut parts = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !path.is_dir() {
            parts.push(name);
            continue;
        }
        let files = profile_report::list_files(&path).unwrap_or_default();
        let mut inner: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix(&path).ok())
            .map(|f| f.display().to_string())
            .collect();
        inner.sort();
        parts.push(match inner.len() {
            0 => continue,
            1..=3 => format!("{name}/ ({})", inner.join(", ")),
            n => format!("{name}/ ({n} files)"),
        });
    }
    if parts.is_empty() {
        format!("{} (empty)", dir.display())
    } else {
        format!("{} ({})", dir.display(), parts.join(", "))
    }
}
