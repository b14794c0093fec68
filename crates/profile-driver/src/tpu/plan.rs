//! What a TPU run decided before it started (the VM, the package source,
//! the prices), and what it records at the end: the Cost Summary and the
//! commands of the report's Reproduction block.

use std::path::Path;
use std::time::{Duration, SystemTime};

use profile_session::manual::ManualSteps;
use profile_session::plan::{Plan, TpuOptions};
use tpu_cloud::Location;
use tpu_cloud::api::{NetworkConfig, Provisioning};
use tpu_cloud::cost::{self, PriceTable};
use tpu_cloud::lease::{self, Deadlines, NodeRequest};
use tpu_cloud::script::{PackageSource, sh_quote};
use tpu_cloud::state::{Phase, RunState};

use crate::DriveError;

/// The model a TPU server loads when `--model-path` is not given.
pub const DEFAULT_MODEL: &str = "TinyLlama/TinyLlama-1.1B-Chat-v1.0";
/// Where the server writes the trace on the VM.
const REMOTE_PROFILE_ROOT: &str = "/tmp/sglprof-profile";

/// Everything a TPU run decided before it started.
pub struct TpuRun {
    pub run_id: String,
    pub location: Location,
    pub node_id: String,
    pub model: String,
    pub source: PackageSource,
    pub runtime_version: String,
    pub remote_profile_dir: String,
    pub prices: PriceTable,
}

/// A dry run without a project shows this instead.
pub const PROJECT_PLACEHOLDER: &str = "PROJECT_ID";

/// The project of `options`; a placeholder in a dry run.
pub fn project(project: Option<&str>, dry_run: bool) -> Result<String, DriveError> {
    match project {
        Some(p) if !p.is_empty() => Ok(p.to_owned()),
        _ if dry_run => Ok(PROJECT_PLACEHOLDER.to_owned()),
        _ => Err(DriveError::Failed(
            "no Google Cloud project: pass --project or set CLOUDSDK_CORE_PROJECT".to_owned(),
        )),
    }
}

impl TpuRun {
    pub fn new(
        plan: &Plan,
        tpu: &TpuOptions,
        run_id: &str,
        now: SystemTime,
    ) -> Result<TpuRun, DriveError> {
        let source = match &tpu.git {
            Some(git) => PackageSource::Git {
                url: git.url.clone(),
                commit: git.commit.clone(),
            },
            None => PackageSource::PyPi {
                version: Some(plan.sglang_jax_version.clone()),
            },
        };
        let mut prices = match &tpu.price_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| DriveError::Io {
                    what: "cannot read",
                    path: path.clone(),
                    source,
                })?;
                PriceTable::from_json(&text).map_err(DriveError::cloud(format!(
                    "cannot read the prices in {}",
                    path.display()
                )))?
            }
            None => PriceTable::runbook_defaults(),
        };
        if let Some(usd) = tpu.usd_per_hour {
            prices = PriceTable {
                source: format!("--usd-per-hour {usd} on the command line"),
                prices: vec![cost::Price {
                    accelerator_type: tpu.accelerator_type.clone(),
                    provisioning: tpu.provisioning,
                    usd_per_hour: usd,
                }],
            };
        }
        Ok(TpuRun {
            location: Location::new(&project(tpu.project.as_deref(), tpu.dry_run)?, &tpu.zone),
            node_id: tpu.vm.clone().unwrap_or_else(|| lease::node_name_for(now)),
            model: plan
                .model_path
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            runtime_version: tpu_cloud::runtime::runtime_version(
                &tpu.accelerator_type,
                tpu.runtime_version.as_deref(),
            )
            .map_err(|err| DriveError::Failed(err.to_string()))?,
            remote_profile_dir: format!("{REMOTE_PROFILE_ROOT}/{run_id}"),
            source,
            prices,
            run_id: run_id.to_owned(),
        })
    }

    /// The create request of the run's VM.
    pub fn node_request(&self, tpu: &TpuOptions) -> NodeRequest {
        NodeRequest {
            location: self.location.clone(),
            node_id: self.node_id.clone(),
            run_id: self.run_id.clone(),
            accelerator_type: tpu.accelerator_type.clone(),
            runtime_version: self.runtime_version.clone(),
            provisioning: tpu.provisioning,
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
}

/// `TPU v6e-1 (single chip)`, as in the seed report.
pub fn hardware_label(accelerator_type: &str) -> String {
    match accelerator_type.rsplit_once('-') {
        Some((_, "1")) => format!("TPU {accelerator_type} (single chip)"),
        _ => format!("TPU {accelerator_type}"),
    }
}

/// The Cost Summary rows and the note on where the prices come from.
pub fn cost_rows(
    tpu: &TpuOptions,
    run: &TpuRun,
    state: &RunState,
    now: SystemTime,
    uploaded_bytes: Option<u64>,
) -> (Vec<session_report::CostRow>, String) {
    let mut rows = Vec::new();
    let mut source = run.prices.source.clone();
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
        run.prices
            .usd_per_hour(&tpu.accelerator_type, tpu.provisioning),
    ) {
        (Some(billed), Some(usd)) => {
            let line = cost::tpu_line(&tpu.accelerator_type, tpu.provisioning, billed, usd);
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
                tpu.provisioning.as_str()
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

/// The TPU run as gcloud commands, from the values it used: create,
/// install, launch, tunnel; copy the traces home; delete. `server_line` is
/// what a real VM is sent; a rehearsal's `stand_in` (what its local
/// workers ran instead) follows as a comment marked "rehearsal only".
pub fn manual_steps(
    tpu: &TpuOptions,
    run: &TpuRun,
    server_line: &str,
    stand_in: Option<&str>,
    local_port: u16,
    remote_port: u16,
    run_dir: &Path,
) -> ManualSteps {
    let loc = format!(
        "--project {} --zone {}",
        sh_quote(&run.location.project),
        sh_quote(&run.location.zone)
    );
    let node = sh_quote(&run.node_id);
    let ssh = |command: &str| {
        format!(
            "gcloud compute tpus tpu-vm ssh {node} {loc} --command {}",
            sh_quote(command)
        )
    };
    let billing = match tpu.provisioning {
        Provisioning::Spot => " --spot",
        Provisioning::Preemptible => " --preemptible",
        Provisioning::OnDemand => "",
    };
    let install = match &run.source {
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
    let mut setup = Vec::new();
    if tpu.vm.is_none() {
        setup.push(format!(
            "gcloud compute tpus tpu-vm create {node} {loc} --accelerator-type {} --version {}{billing}",
            sh_quote(&tpu.accelerator_type),
            sh_quote(&run.runtime_version)
        ));
    }
    setup.push(ssh(&install));
    // `env` carries the variables: `nohup VAR=x cmd` would look for a
    // program named `VAR=x`.
    setup.push(ssh(&format!(
        "cd sglprof && nohup env {} > server.log 2>&1 &",
        server_line.replace("python ", "venv/bin/python ")
    )));
    setup.push(format!(
        "gcloud compute tpus tpu-vm ssh {node} {loc} -- -N -L {local_port}:127.0.0.1:{remote_port} &"
    ));
    if let Some(stand_in) = stand_in {
        setup.push(format!(
            "# rehearsal only: the simulated VM installed the CPU variant and ran, on this machine, {stand_in}"
        ));
    }
    let cleanup = if tpu.vm.is_none() && !tpu.keep {
        vec![format!(
            "gcloud compute tpus tpu-vm delete {node} {loc} --quiet"
        )]
    } else {
        vec![format!(
            "# the VM {node} was kept; delete it with: cargo xtask cleanup {}",
            sh_quote(&run_dir.display().to_string())
        )]
    };
    ManualSteps {
        setup,
        workflow: Vec::new(),
        download: vec![format!(
            "gcloud compute tpus tpu-vm scp --recurse {node}:{} artifacts/jax-profile {loc}",
            sh_quote(&run.remote_profile_dir)
        )],
        cleanup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(create: &str, deleted: Option<&str>) -> RunState {
        let mut res = RunState {
            schema: tpu_cloud::state::STATE_SCHEMA.to_owned(),
            run_id: "r".to_owned(),
            project: "p".to_owned(),
            zone: "us-east5-b".to_owned(),
            node_id: "sglprof-20260205-184819".to_owned(),
            queued_resource: None,
            create_operation: None,
            accelerator_type: "v6e-1".to_owned(),
            runtime_version: "v2-alpha-tpuv6e".to_owned(),
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

    fn run() -> TpuRun {
        TpuRun {
            run_id: "r".to_owned(),
            location: Location::new("p", "us-east5-b"),
            node_id: "n".to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            source: PackageSource::PyPi {
                version: Some("0.0.2".to_owned()),
            },
            runtime_version: "v2-alpha-tpuv6e".to_owned(),
            remote_profile_dir: "/tmp/x".to_owned(),
            prices: PriceTable::runbook_defaults(),
        }
    }

    fn options() -> TpuOptions {
        TpuOptions {
            project: Some("p".into()),
            zone: "us-east5-b".into(),
            accelerator_type: "v6e-1".into(),
            runtime_version: None,
            provisioning: Provisioning::OnDemand,
            queued: false,
            vm: None,
            keep: false,
            git: None,
            price_file: None,
            usd_per_hour: None,
            gcs_usd_per_gb_month: cost::GCS_USD_PER_GB_MONTH,
            gcloud_flags: Vec::new(),
            dry_run: false,
            rehearsal: None,
            api_url: tpu_cloud::GOOGLE_API_URL.into(),
        }
    }

    /// The seed's Cost Summary: 45 minutes of v6e-1 on demand and 87 MB in GCS.
    #[test]
    fn seed_cost_summary() {
        let state = state("2026-02-05T18:48:19Z", Some("2026-02-05T19:33:19Z"));
        let (rows, source) = cost_rows(
            &options(),
            &run(),
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
        let mut options = options();
        options.accelerator_type = "v5p-8".to_owned();
        let state = state("2026-02-05T18:48:19Z", Some("2026-02-05T19:33:19Z"));
        let (rows, source) = cost_rows(&options, &run(), &state, SystemTime::now(), None);
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

    #[test]
    fn the_printed_launch_runs_in_a_shell_and_its_tunnel_reaches_it() {
        let steps = manual_steps(
            &options(),
            &run(),
            "HF_HOME=/tmp/hf python -m sgl_jax.launch_server --port 30000",
            None,
            8123,
            30000,
            Path::new("runs/r"),
        );
        let launch = &steps.setup[2];
        assert!(
            launch.contains("nohup env HF_HOME=/tmp/hf venv/bin/python -m sgl_jax.launch_server"),
            "{launch}"
        );
        assert!(steps.setup[3].contains("-L 8123:127.0.0.1:30000"));
        assert!(steps.setup[0].contains("--version v2-alpha-tpuv6e"));
    }
}
