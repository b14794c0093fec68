//! `cargo xtask profile --tpu`: the session on a Cloud TPU VM.
//!
//! The TPU session: write `runs/<run>/tpu-state.json`, create the VM (or
//! reuse `--vm`), wait for READY, install sglang-jax on it, launch the
//! server detached, open an ssh tunnel to its port, and hand the tunnel's
//! URL to `profile_session::session::run_session` (readiness, warmup,
//! profile, workload, stop). The trace files are waited for on the VM, copied home
//! with the server log, the VM is deleted, and the report gets a Cost
//! Summary from the billed time. The VM is deleted on every exit path
//! (error, SIGINT, SIGTERM, SIGHUP, SIGQUIT) unless `--keep`; a run killed outright leaves
//! its state file for `cargo xtask cleanup`.
//!
//! `--rehearsal` runs the same code on this machine against a simulated
//! API and local workers (`crate::tpu_rehearsal`).
//!
//! `--dry-run` prints every API call and gcloud command in order and needs
//! no credentials: the API client and gcloud runner record instead of act.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use profile_session::plan::HostKind;
use profile_session::{Plan as SessionPlan, RunFolder};
use tpu_cloud::api::{Node, NodeState};
use tpu_cloud::gcloud::{Gcloud, Target};
use tpu_cloud::lease::{self, Failure, Signals};
use tpu_cloud::remote::Slice;
use tpu_cloud::state::{Ledger, Phase, STATE_FILE};
use tpu_cloud::workers::GcloudWorkers;

use crate::tpu::api_client;
use crate::tpu_plan::{node_request, plan, run_metadata};
use crate::tpu_rehearsal::Rehearsal;
use crate::tpu_remote::remote_session;

/// Resolves on SIGINT, SIGTERM, SIGHUP or SIGQUIT, after saying so and
/// noting which in `got`.
async fn shutdown_signal(signals: &mut Signals, got: &Cell<Option<&'static str>>) {
    let what = signals.recv().await;
    got.set(Some(what));
    eprintln!("[tpu] {what}: stopping the session and deleting the VM (unless --keep)");
}

/// Runs `cargo xtask profile --tpu`.
pub fn profile_tpu(args: &crate::profile::Args) -> anyhow::Result<()> {
    let session_plan = args.plan(HostKind::Tpu)?;
    if args.tpu.sglang_jax_git.is_none() {
        // Refused before a VM is created; checked again once installed.
        session_plan.check_server(&session_plan.sglang_jax_version)?;
    }
    crate::runtime()?.block_on(profile_tpu_async(args, &session_plan))
}

async fn profile_tpu_async(
    args: &crate::profile::Args,
    session_plan: &SessionPlan,
) -> anyhow::Result<()> {
    let tpu = &args.tpu;
    // From here on a signal never kills the run outright: it is answered
    // by deleting what was created (a signal that came early fires as soon
    // as the lease starts, before anything is created).
    let mut signals = Signals::install().context("cannot handle signals")?;
    let got_signal = Cell::new(None);
    // A bad --upload (no bucket) fails before a VM is created.
    let archive = args.archive.upload_opts()?;
    let started_at = SystemTime::now();
    let mut plan = plan(args, started_at)?;
    // The VM and the laptop must archive under the same address.
    let archive = archive.map(|mut opts| {
        opts.run_id.get_or_insert_with(|| plan.run_id.clone());
        opts
    });
    let dry_run = tpu.dry_run;
    let folder = if dry_run {
        println!("# plan: {}", session_plan.to_json().replace('\n', "\n# "));
        RunFolder::planned(&plan.run_dir)?
    } else {
        let folder = RunFolder::create(&plan.run_dir)?;
        eprintln!("[tpu] run folder {}", plan.run_dir.display());
        folder
    };
    let rehearsal = if tpu.rehearsal {
        let hosts = tpu_cloud::fake::hosts_for(&tpu.accelerator_type).unwrap_or(1);
        let rehearsal = Rehearsal::start(
            &plan.location.project,
            &plan.location.zone,
            hosts,
            &args.sglang_jax_version,
            &plan.run_dir,
            &tpu.rehearse_faults,
        )
        .await?;
        if args.model_path.is_none() {
            plan.model = rehearsal.env.model_dir.display().to_string();
        }
        plan.remote_profile_dir = rehearsal.profile_dir(&plan.run_id);
        Some(rehearsal)
    } else {
        None
    };
    // The hosts of the slice are known once the node is READY (its
    // network endpoints); a rehearsal made its workers up front.
    let (client, gcloud) = match &rehearsal {
        Some(rehearsal) => (rehearsal.client()?, None),
        None => {
            let (client, transcript) = api_client(&tpu.tpu_api_url, dry_run).await?;
            let gcloud = match &transcript {
                Some(transcript) => Gcloud::dry_run(transcript.clone()),
                None => Gcloud::new(),
            };
            let target = Target {
                project: plan.location.project.clone(),
                zone: plan.location.zone.clone(),
                node: plan.node_id.clone(),
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
    let cpu_env = rehearsal.as_ref().map(|r| &r.env);
    let plan = plan;
    let req = node_request(args, &plan);

    // The state file exists before anything is asked of Google.
    let state_path = plan.run_dir.join(STATE_FILE);
    let ledger = match (&tpu.vm, dry_run) {
        (Some(_), _) => {
            let mut state = req.planned_state();
            state.owned = false;
            state.phase = Phase::Reused;
            state.queued_resource = None;
            if dry_run {
                Ledger::in_memory(state)
            } else {
                Ledger::create(&state_path, state)?
            }
        }
        (None, true) => Ledger::in_memory(req.planned_state()),
        (None, false) => Ledger::create(&state_path, req.planned_state())?,
    };
    // The lease's steps (create, READY, delete) as progress lines.
    let mut ledger = ledger.with_progress(Arc::new(|line: &str| eprintln!("[tpu] {line}")));

    let plan_ref = &plan;
    let archive_ref = archive.as_ref();
    let session = |node: Node| {
        let remote = slice_of(&node);
        async move {
            remote_session(
                args,
                session_plan,
                plan_ref,
                &remote,
                cpu_env,
                archive_ref,
                dry_run,
            )
            .await
        }
    };
    let (outcome, release) = if tpu.vm.is_some() {
        let work = async {
            let node = client
                .get_node(&plan.location, &plan.node_id)
                .await
                .map_err(Failure::Provision)?;
            if node.state != Some(NodeState::Ready) {
                return Err(Failure::Provision(tpu_cloud::Error::NodeLost {
                    name: plan.node_id.clone(),
                    state: format!("{:?}", node.state),
                }));
            }
            session(node).await.map_err(Failure::Session)
        };
        let res = tokio::select! {
            biased;
            () = shutdown_signal(&mut signals, &got_signal) => Err(Failure::Cancelled),
            res = work => res,
        };
        (res, None)
    } else {
        let leased = lease::with_node(
            &client,
            &req,
            &mut ledger,
            tpu.keep,
            shutdown_signal(&mut signals, &got_signal),
            session,
        )
        .await;
        (leased.outcome, leased.release)
    };
    let finished_at = SystemTime::now();
    if let Some(rehearsal) = &rehearsal {
        // The DELETE ended the workers' servers; this catches a run
        // that never got that far.
        rehearsal.shutdown();
    }

    // What became of the VM: a leaked VM matters more than a failed run.
    let vm = match &release {
        Some(Ok(())) if ledger.state.ready_at.is_none() => {
            format!("no VM left ({} never became READY)", plan.node_id)
        }
        Some(Ok(())) => format!("deleted {}", plan.node_id),
        Some(Err(err)) => format!(
            "could not delete {}: {err}; run `cargo xtask cleanup {}`",
            plan.node_id,
            plan.run_dir.display()
        ),
        None if tpu.vm.is_some() => format!("left the reused VM {} running", plan.node_id),
        None => format!(
            "kept {} running (--keep); delete it with `cargo xtask cleanup {}`",
            plan.node_id,
            plan.run_dir.display()
        ),
    };
    // A failed run ends with one line: what happened, the VM, what is kept.
    let failed = |what: String| {
        let kept = if dry_run {
            String::new()
        } else {
            format!("; kept {}", kept_files(&plan.run_dir))
        };
        anyhow::anyhow!("{what}; {vm}{kept}")
    };
    let remote_outcome = match outcome {
        Ok(res) => res,
        Err(Failure::Provision(err)) => {
            return Err(failed(format!("{:#}", anyhow::Error::from(err))));
        }
        Err(Failure::Session(err)) => {
            let err = err.context(format!("the TPU session on {} failed", plan.node_id));
            return Err(failed(format!("{err:#}")));
        }
        Err(Failure::Cancelled) => {
            let signal = got_signal.get().unwrap_or("a signal");
            return Err(failed(format!("interrupted by {signal}")));
        }
    };
    if let Some(Err(_)) = release {
        return Err(failed(
            "the session succeeded but the VM was not deleted".to_owned(),
        ));
    }
    eprintln!("[tpu] {vm}");
    if dry_run {
        return Ok(());
    }
    let Some(remote_outcome) = remote_outcome else {
        return Ok(());
    };

    let uploaded = match &archive {
        Some(opts) => Some((
            crate::archive::record_archive_target(&plan.run_dir, opts)?,
            folder_bytes(&plan.run_dir)?,
        )),
        None => None,
    };
    let metadata = run_metadata(
        args,
        session_plan,
        &plan,
        &ledger.state,
        &remote_outcome,
        (started_at, finished_at),
        uploaded,
    );
    crate::profile::finish_run(&folder, &metadata, archive.as_ref(), "tpu").await
}

/// The bytes of every file under `dir`: what the archive will store, for the
/// GCS row of the Cost Summary.
fn folder_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for file in profile_report::list_files(dir)? {
        total += std::fs::metadata(&file)
            .with_context(|| format!("cannot stat {}", file.display()))?
            .len();
    }
    Ok(total)
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
