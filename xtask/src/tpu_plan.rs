//! What a TPU session decided before it started (the VM, the package
//! source, the prices), and what it records at the end: run metadata with
//! the Cost Summary and the reproduction line.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use profile_session::Plan as SessionPlan;
use profile_session::manual::ManualSteps;
use profile_session::session::{self, SessionConfig, SessionOutcome};
use tpu_cloud::Location;
use tpu_cloud::api::{NetworkConfig, Provisioning};
use tpu_cloud::cost::{self, PriceTable};
use tpu_cloud::lease::{self, Deadlines, NodeRequest};
use tpu_cloud::script::PackageSource;
use tpu_cloud::script::sh_quote;
use tpu_cloud::state::{Phase, RunState};

use crate::profile::TpuProfileArgs;
use crate::tpu::project;

const DEFAULT_MODEL: &str = "TinyLlama/TinyLlama-1.1B-Chat-v1.0";
/// Where the server writes the trace on the VM.
const REMOTE_PROFILE_ROOT: &str = "/tmp/sglprof-profile";

/// Everything the TPU session decided before it started.
pub(crate) struct Plan {
    pub(crate) run_id: String,
    pub(crate) run_dir: PathBuf,
    pub(crate) location: Location,
    pub(crate) node_id: String,
    pub(crate) provisioning: Provisioning,
    pub(crate) model: String,
    pub(crate) source: PackageSource,
    pub(crate) remote_profile_dir: String,
    pub(crate) prices: PriceTable,
}

pub(crate) fn plan(args: &crate::profile::Args, now: SystemTime) -> anyhow::Result<Plan> {
    let tpu = &args.tpu;
    tpu.runtime_version()?;
    let endpoint = profile_session::Endpoint::from(args.endpoint).slug();
    let run_id = format!(
        "{}-{endpoint}-tpu",
        tpu_cloud::time::compact_stamp(now).replace('-', "T") + "Z"
    );
    let run_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("runs").join(&run_id),
    };
    let run_dir = if run_dir.is_absolute() {
        run_dir
    } else {
        std::env::current_dir()?.join(run_dir)
    };
    let source = match (&tpu.sglang_jax_git, &tpu.sglang_jax_commit) {
        (Some(url), Some(commit)) => PackageSource::Git {
            url: url.clone(),
            commit: commit.clone(),
        },
        _ => PackageSource::PyPi {
            version: Some(args.sglang_jax_version.clone()),
        },
    };
    let mut prices = match &tpu.price_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            PriceTable::from_json(&text)?
        }
        None => PriceTable::runbook_defaults(),
    };
    if let Some(usd) = tpu.usd_per_hour {
        prices = PriceTable {
            source: format!("--usd-per-hour {usd} on the command line"),
            prices: vec![cost::Price {
                accelerator_type: tpu.accelerator_type.clone(),
                provisioning: tpu.provisioning.into(),
                usd_per_hour: usd,
            }],
        };
    }
    Ok(Plan {
        location: Location::new(&project(&tpu.project, tpu.dry_run)?, &tpu.zone),
        node_id: tpu.vm.clone().unwrap_or_else(|| lease::node_name_for(now)),
        provisioning: tpu.provisioning.into(),
        model: args
            .model_path
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        remote_profile_dir: format!("{REMOTE_PROFILE_ROOT}/{run_id}"),
        source,
        prices,
        run_id,
        run_dir,
    })
}

pub(crate) fn node_request(args: &crate::profile::Args, plan: &Plan) -> NodeRequest {
    let tpu = &args.tpu;
    NodeRequest {
        location: plan.location.clone(),
        node_id: plan.node_id.clone(),
        run_id: plan.run_id.clone(),
        accelerator_type: tpu.accelerator_type.clone(),
        runtime_version: tpu.runtime_version().unwrap_or_default(),
        provisioning: plan.provisioning,
        queued: tpu.queued,
        queued_valid_for: tpu.queued.then(|| Duration::from_secs(3600)),
        labels: Default::default(),
        metadata: Default::default(),
        network: NetworkConfig {
            enable_external_ips: true,
            ..NetworkConfig::default()
        },
        service_account: None,
        deadlines: Deadlines::production(),
    }
}

/// What the remote session brings home.
pub(crate) struct RemoteOutcome {
    pub(crate) session: SessionOutcome,
    pub(crate) config: SessionConfig,
    pub(crate) versions: std::collections::BTreeMap<String, String>,
    /// The server's command line on the VM, the API key as a variable.
    pub(crate) server_line: String,
    /// The local end of the ssh tunnel.
    pub(crate) local_port: u16,
    /// Worker 0's py-spy files, with `--py-spy`.
    pub(crate) py_spy: Option<profile_session::pyspy::Files>,
}

pub(crate) fn run_metadata(
    args: &crate::profile::Args,
    session_plan: &SessionPlan,
    plan: &Plan,
    state: &RunState,
    remote: &RemoteOutcome,
    (started_at, finished_at): (SystemTime, SystemTime),
    uploaded: Option<(String, u64)>,
) -> session_report::RunMetadata {
    let tpu = &args.tpu;
    let mut res = session_report::RunMetadata::new();
    res.run_id = Some(plan.run_id.clone());
    res.date = Some(tpu_cloud::time::rfc3339(started_at)[..10].to_owned());
    res.started_at = Some(tpu_cloud::time::rfc3339(started_at));
    res.finished_at = Some(tpu_cloud::time::rfc3339(finished_at));
    res.model = Some(plan.model.clone());
    res.hardware = Some(hardware_label(&tpu.accelerator_type));
    res.zone = Some(plan.location.zone.clone());
    res.endpoint = Some(session_plan.endpoint.path().to_owned());
    res.jax_version = remote.versions.get("jax").cloned();
    res.jaxlib_version = remote.versions.get("jaxlib").cloned();
    res.sglang_jax_version = remote.versions.get("sglang-jax").cloned();
    res.python_version = remote.versions.get("python").cloned();
    res.profile = Some(session::profile_config(
        &remote.config.profile,
        &plan.run_dir,
    ));
    res.workload = Some(session::workload_summary(&remote.session.workload));
    res.reproduction = vec![reproduction(args, session_plan, plan)];
    res.reproduction.push(String::new());
    res.reproduction
        .extend(manual_steps(args, session_plan, plan, remote).render());
    let (cost, source) = cost_rows(
        tpu,
        plan,
        state,
        finished_at,
        uploaded.as_ref().map(|u| u.1),
    );
    res.cost = cost;
    res.cost_source = Some(source);
    res.archive_url = uploaded.map(|u| u.0);
    if let Some(files) = &remote.py_spy {
        let folder = profile_session::RunFolder::planned(&plan.run_dir);
        if let Ok(folder) = folder {
            files.record_in(&folder, &mut res);
        }
    }
    res
}

/// `TPU v6e-1 (single chip)`, as in the seed report.
fn hardware_label(accelerator_type: &str) -> String {
    match accelerator_type.rsplit_once('-') {
        Some((_, "1")) => format!("TPU {accelerator_type} (single chip)"),
        _ => format!("TPU {accelerator_type}"),
    }
}

/// The Cost Summary rows and the note on where the prices come from.
fn cost_rows(
    tpu: &TpuProfileArgs,
    plan: &Plan,
    state: &RunState,
    now: SystemTime,
    uploaded_bytes: Option<u64>,
) -> (Vec<session_report::CostRow>, String) {
    let mut rows = Vec::new();
    let mut source = plan.prices.source.clone();
    let billed = match tpu.vm {
        // A reused VM bills whether or not we run; count the session only.
        Some(_) => state
            .create_requested_at
            .as_deref()
            .and_then(tpu_cloud::time::parse_rfc3339)
            .map(|start| now.duration_since(start).unwrap_or_default()),
        None => state.billed(now),
    };
    match (
        billed,
        plan.prices
            .usd_per_hour(&tpu.accelerator_type, plan.provisioning),
    ) {
        (Some(billed), Some(usd)) => {
            let line = cost::tpu_line(&tpu.accelerator_type, plan.provisioning, billed, usd);
            rows.push(session_report::CostRow {
                resource: line.resource,
                duration: line.duration,
                cost_usd: line.cost_usd,
                unit: line.unit,
            });
            source.push_str(&format!(
                "; billed time from the create call to the end of the delete, at ${usd:.2}/h"
            ));
            if state.phase == Phase::Kept {
                source.push_str("; the VM was kept, so the time runs on until it is deleted");
            }
        }
        (Some(_), None) => {
            source = format!(
                "no price for {} ({}); pass --usd-per-hour or --price-file",
                tpu.accelerator_type,
                plan.provisioning.as_str()
            )
        }
        (None, _) => {}
    }
    if let Some(bytes) = uploaded_bytes {
        let line = cost::gcs_line(bytes, tpu.gcs_usd_per_gb_month);
        rows.push(session_report::CostRow {
            resource: line.resource,
            duration: line.duration,
            cost_usd: line.cost_usd,
            unit: line.unit,
        });
        source.push_str(&format!(
            "; GCS standard storage at ${}/GB-month",
            tpu.gcs_usd_per_gb_month
        ));
    }
    (rows, source)
}

/// The session as gcloud and curl commands, from the values it used.
fn manual_steps(
    args: &crate::profile::Args,
    session_plan: &SessionPlan,
    plan: &Plan,
    remote: &RemoteOutcome,
) -> ManualSteps {
    let tpu = &args.tpu;
    let loc = format!(
        "--project {} --zone {}",
        sh_quote(&plan.location.project),
        sh_quote(&plan.location.zone)
    );
    let node = sh_quote(&plan.node_id);
    let ssh = |command: &str| {
        format!(
            "gcloud compute tpus tpu-vm ssh {node} {loc} --command {}",
            sh_quote(command)
        )
    };
    let billing = match plan.provisioning {
        Provisioning::Spot => " --spot",
        Provisioning::Preemptible => " --preemptible",
        _ => "",
    };
    let install = match &plan.source {
        PackageSource::PyPi { version } => format!(
            "python3 -m venv sglprof/venv && sglprof/venv/bin/pip install {} -f {}",
            sh_quote(&match version {
                Some(v) => format!("sglang-jax[tpu]=={v}"),
                None => "sglang-jax[tpu]".to_owned(),
            }),
            tpu_cloud::script::LIBTPU_FIND_LINKS
        ),
        PackageSource::Git { url, commit } => format!(
            "git clone {} sglprof/sglang-jax && git -C sglprof/sglang-jax checkout {} && python3 -m venv sglprof/venv && sglprof/venv/bin/pip install -e 'sglprof/sglang-jax/python[tpu]' -f {}",
            sh_quote(&profile_session::redact::url(url)),
            sh_quote(commit),
            tpu_cloud::script::LIBTPU_FIND_LINKS
        ),
    };
    let port = remote.local_port;
    let mut setup = Vec::new();
    if tpu.vm.is_none() {
        setup.push(format!(
            "gcloud compute tpus tpu-vm create {node} {loc} --accelerator-type {} --version {}{billing}",
            sh_quote(&tpu.accelerator_type),
            sh_quote(&tpu.runtime_version().unwrap_or_default())
        ));
    }
    setup.push(ssh(&install));
    setup.push(ssh(&format!(
        "cd sglprof && nohup {} > server.log 2>&1 &",
        remote.server_line.replace("python ", "venv/bin/python ")
    )));
    setup.push(format!(
        "gcloud compute tpus tpu-vm ssh {node} {loc} -- -N -L {port}:127.0.0.1:30000 &"
    ));
    let cleanup = if tpu.vm.is_none() && !tpu.keep {
        vec![format!(
            "gcloud compute tpus tpu-vm delete {node} {loc} --quiet"
        )]
    } else {
        vec![format!(
            "# the VM {node} was kept; delete it with: cargo xtask cleanup {}",
            plan.run_id
        )]
    };
    ManualSteps {
        setup,
        workflow: ManualSteps::http_workflow(
            &format!("http://127.0.0.1:{port}"),
            session_plan.endpoint.path(),
            &remote.config.profile,
            session_plan.concurrency,
            session_plan.api_key.is_some(),
        ),
        download: vec![format!(
            "gcloud compute tpus tpu-vm scp --recurse {node}:{} artifacts/jax-profile {loc}",
            sh_quote(&plan.remote_profile_dir)
        )],
        cleanup,
    }
}

/// The one reproduction line of `profile_session`, with the TPU flags in
/// front; credentials in a git URL are redacted.
fn reproduction(args: &crate::profile::Args, session_plan: &SessionPlan, plan: &Plan) -> String {
    let tpu = &args.tpu;
    let mut flags: Vec<String> = [
        ("--project", plan.location.project.clone()),
        ("--zone", plan.location.zone.clone()),
        ("--accelerator-type", tpu.accelerator_type.clone()),
        (
            "--runtime-version",
            tpu.runtime_version().unwrap_or_default(),
        ),
        ("--provisioning", plan.provisioning.as_str().to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect();
    if let PackageSource::Git { url, commit } = &plan.source {
        flags.extend([
            "--sglang-jax-git".to_owned(),
            profile_session::redact::url(url),
            "--sglang-jax-commit".to_owned(),
            commit.clone(),
        ]);
    }
    if tpu.queued {
        flags.push("--queued".to_owned());
    }
    let mut session_plan = session_plan.clone();
    session_plan.model_path = Some(plan.model.clone());
    session_plan.reproduction(&flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::DEFAULT_ZONE;

    fn state(create: &str, deleted: Option<&str>) -> RunState {
        let mut res = RunState {
            schema: tpu_cloud::state::STATE_SCHEMA.to_owned(),
            run_id: "r".to_owned(),
            project: "p".to_owned(),
            zone: DEFAULT_ZONE.to_owned(),
            node_id: "sglprof-20260205-184819".to_owned(),
            queued_resource: None,
            create_operation: None,
            accelerator_type: "v6e-1".to_owned(),
            runtime_version: "v6e-ubuntu-2404".to_owned(),
            provisioning: Provisioning::OnDemand,
            owned: true,
            phase: Phase::Deleted,
            create_requested_at: Some(create.to_owned()),
            ready_at: None,
            delete_requested_at: None,
            deleted_at: deleted.map(str::to_owned),
            internal_ip: None,
            last_error: None,
        };
        if deleted.is_none() {
            res.phase = Phase::Kept;
        }
        res
    }

    fn plan() -> Plan {
        Plan {
            run_id: "r".to_owned(),
            run_dir: PathBuf::from("runs/r"),
            location: Location::new("p", DEFAULT_ZONE),
            node_id: "n".to_owned(),
            provisioning: Provisioning::OnDemand,
            model: DEFAULT_MODEL.to_owned(),
            source: PackageSource::PyPi {
                version: Some("0.0.2".to_owned()),
            },
            remote_profile_dir: "/tmp/x".to_owned(),
            prices: PriceTable::runbook_defaults(),
        }
    }

    fn tpu_args() -> TpuProfileArgs {
        TpuProfileArgs {
            accelerator_type: "v6e-1".to_owned(),
            gcs_usd_per_gb_month: cost::GCS_USD_PER_GB_MONTH,
            ..TpuProfileArgs::default()
        }
    }

    /// The seed's Cost Summary: 45 minutes of v6e-1 on demand and 87 MB in GCS.
    #[test]
    fn seed_cost_summary() {
        let state = state("2026-02-05T18:48:19Z", Some("2026-02-05T19:33:19Z"));
        let (rows, source) = cost_rows(
            &tpu_args(),
            &plan(),
            &state,
            SystemTime::now(),
            Some(87_000_000),
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].resource, "TPU v6e-1 (on-demand)");
        assert_eq!(rows[0].duration, "45 minutes");
        // 0.75 h x $1.90 = $1.425, which the seed shows as ~$1.43.
        assert!((rows[0].cost_usd - 1.425).abs() < 1e-9);
        assert_eq!(rows[1].resource, "GCS storage");
        assert_eq!(rows[1].duration, "87 MB");
        assert_eq!(rows[1].unit, "/month");
        assert_eq!(format!("{:.3}", rows[1].cost_usd), "0.002");
        assert!(
            source.starts_with("upstream runbook profiling-infrastructure-setup.md"),
            "{source}"
        );
        assert!(source.contains("$1.90/h"), "{source}");
    }

    #[test]
    fn unknown_price_says_what_to_pass() {
        let mut args = tpu_args();
        args.accelerator_type = "v5p-8".to_owned();
        let state = state("2026-02-05T18:48:19Z", Some("2026-02-05T19:33:19Z"));
        let (rows, source) = cost_rows(&args, &plan(), &state, SystemTime::now(), None);
        assert!(rows.is_empty());
        assert_eq!(
            source,
            "no price for v5p-8 (on-demand); pass --usd-per-hour or --price-file"
        );
    }

    #[test]
    fn hardware_labels() {
        assert_eq!(hardware_label("v6e-1"), "TPU v6e-1 (single chip)");
        assert_eq!(hardware_label("v6e-8"), "TPU v6e-8");
    }

    fn profile_args(argv: &[&str]) -> crate::profile::Args {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: crate::profile::Args,
        }
        Cli::try_parse_from(std::iter::once("profile").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    /// Every flag of the session is in the TPU reproduction line, and no
    /// credential is: not the token of a git URL, not the API key.
    #[test]
    fn tpu_reproduction_keeps_every_flag_and_no_secret() {
        let args = profile_args(&[
            "--tpu",
            "--project",
            "demo",
            "--max-new-tokens",
            "64",
            "--prompt",
            "why?",
            "--python-tracer-level",
            "0",
            "--stream",
            "--api-key",
            "k3y",
            "--sglang-jax-git",
            "https://user:T0KEN@github.com/sgl-project/sglang-jax",
            "--sglang-jax-commit",
            "abc123",
        ]);
        let session_plan = args.plan(profile_session::plan::HostKind::Tpu).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_443_781);
        let plan = super::plan(&args, now).unwrap();
        let line = reproduction(&args, &session_plan, &plan);
        for needle in [
            "cargo xtask profile --tpu --project demo --zone us-east5-b",
            "--max-new-tokens 64",
            "--prompt 'why?'",
            "--python-tracer-level 0",
            "--stream",
            "--sglang-jax-git 'https://<redacted>@github.com/sgl-project/sglang-jax'",
            "--sglang-jax-commit abc123",
        ] {
            assert!(line.contains(needle), "{needle} missing from {line}");
        }
        assert!(!line.contains("T0KEN") && !line.contains("k3y"), "{line}");
    }

    #[test]
    fn tpu_takes_py_spy_and_repeats_it() {
        let args = profile_args(&["--tpu", "--project", "demo", "--py-spy"]);
        let session_plan = args.plan(profile_session::plan::HostKind::Tpu).unwrap();
        assert!(session_plan.py_spy);
        let plan = super::plan(&args, SystemTime::UNIX_EPOCH).unwrap();
        assert!(reproduction(&args, &session_plan, &plan).contains(" --py-spy"));
    }
}
