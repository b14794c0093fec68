//! Sweeps: one session per variant of a plan, and the `index.md` and
//! `index.html` that set the variants side by side.
//!
//! [`run_local`] runs the variants one after another on one server started
//! on this machine, each into its own run folder under the sweep's folder
//! (`<sweep>/<variant>/`, the server's log in `<sweep>/logs/`). A
//! Kubernetes sweep is one Indexed Job instead (the `k8s-job` crate); both
//! end with [`write_index`] over the variants' run folders. The variants
//! and their plans come from the caller, which checks every swept flag and
//! value as the command line would.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use profile_session::plan::{Device, Plan};
use session_report::RunMetadata;

use crate::DriveError;
use crate::events::Progress;
use crate::host::Cancel;
use crate::local::LocalServer;

/// One variant of a sweep: a short name for its folder and its plan.
#[derive(Clone, Debug)]
pub struct Variant {
    /// `request-rate-4`: [`profile_session::sweep::variant_slug`].
    pub slug: String,
    pub plan: Plan,
}

/// The folders a sweep left.
#[derive(Debug)]
pub struct SweepOutcome {
    pub root: PathBuf,
    pub runs: Vec<PathBuf>,
    pub index: PathBuf,
}

/// Runs every variant on one server started here, one after another, into
/// `<root>/<slug>/`, then writes `<root>/index.md`. The server options
/// (release, model, device, port) are the base plan's: the caller refuses
/// sweeps over them.
pub async fn run_local(
    base: &Plan,
    device: Device,
    variants: &[Variant],
    progress: Arc<dyn Progress>,
    cancel: Cancel,
) -> Result<SweepOutcome, DriveError> {
    LocalServer::check(base, device)?;
    let root = crate::run_dir(base, &crate::run_id(base, SystemTime::now()))?;
    claim(&root)?;
    progress.line("profile", &format!("sweep folder {}", root.display()));
    let logs = root.join("logs");
    let work = async {
        let server =
            LocalServer::start(base, device, &logs.join("server.log"), &root, &*progress).await?;
        let mut runs = Vec::new();
        let mut failure = None;
        for variant in variants {
            let mut plan = variant.plan.clone();
            plan.out = Some(root.join(&variant.slug));
            progress.line("profile", &format!("variant {}", variant.slug));
            let mut host = server.running();
            match crate::drive(&plan, &mut host, progress.clone(), crate::host::never()).await {
                Ok(outcome) => runs.push(outcome.run_dir),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        server.stop(&*progress).await;
        match failure {
            Some(err) => Err(err),
            None => Ok(runs),
        }
    };
    let runs = tokio::select! {
        res = work => res?,
        signal = cancel => {
            sglang_server::kill_all_supervised();
            return Err(DriveError::Failed(format!(
                "interrupted by {signal}; the server and its children were killed; the variants \
                 that finished are in {}",
                root.display()
            )));
        }
    };
    let index = write_index(&root, &runs)?;
    progress.line("profile", &format!("sweep index {}", index.display()));
    Ok(SweepOutcome { root, runs, index })
}

/// Makes `root` for a new sweep: absent or empty.
fn claim(root: &Path) -> Result<(), DriveError> {
    let io = |what, source| DriveError::Io {
        what,
        path: root.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(root).map_err(|e| io("cannot create", e))?;
    let mut entries = std::fs::read_dir(root).map_err(|e| io("cannot read", e))?;
    if entries.next().is_some() {
        return Err(profile_session::RunFolderError::NotEmpty(root.to_path_buf()).into());
    }
    Ok(())
}

/// One variant's run, as the index needs it.
#[derive(Debug)]
pub struct VariantRun {
    /// The run folder's name, relative to the index.
    pub folder: String,
    pub metadata: RunMetadata,
    /// `summary.json`, when the report was written.
    pub summary: Option<serde_json::Value>,
}

/// A number of a table cell: one decimal, or empty.
fn ms_cell(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v:.1}"))
}

impl VariantRun {
    /// The row of `index.html`.
    fn html(&self) -> report_html::SweepVariant {
        report_html::SweepVariant {
            folder: self.folder.clone(),
            workload: self
                .metadata
                .workload
                .as_ref()
                .map(|w| report_html::VariantWorkload {
                    requests: w.requests,
                    concurrency: w.concurrency,
                    errors: w.errors,
                    p50_ms: w.latency_ms.p50,
                    p99_ms: w.latency_ms.p99,
                    throughput_rps: w.throughput_rps,
                }),
            top_operation: self.top_operation(),
        }
    }

    /// The serving metrics of its report (`summary.json`'s `serving`).
    pub fn serving(&self) -> Option<session_report::ServingReport> {
        let value = self.summary.as_ref()?.get("serving")?;
        serde_json::from_value(value.clone()).ok()
    }

    /// Its point on the load-latency curve, when it has serving metrics.
    pub fn load_point(&self) -> Option<session_report::LoadPoint> {
        self.serving()
            .map(|it| session_report::LoadPoint::of(&self.folder, &it))
    }

    /// The heaviest operation of its report, when it has one.
    fn top_operation(&self) -> Option<String> {
        self.summary
            .as_ref()
            .and_then(|it| it["top_operations"].get(0))
            .and_then(|it| it["name"].as_str())
            .map(str::to_owned)
    }

    pub fn load(dir: &Path) -> Result<VariantRun, DriveError> {
        let meta_path = dir.join("inputs/run_metadata.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|source| DriveError::Io {
            what: "cannot read",
            path: meta_path.clone(),
            source,
        })?;
        let metadata = RunMetadata::from_json(&text)
            .map_err(|err| DriveError::Failed(format!("{}: {err}", meta_path.display())))?;
        let summary = std::fs::read_to_string(dir.join("summary.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        Ok(VariantRun {
            folder: dir
                .file_name()
                .map(|it| it.to_string_lossy().into_owned())
                .unwrap_or_default(),
            metadata,
            summary,
        })
    }
}

/// Writes `index.md` and `index.html` for the run folders `runs` into
/// `root`, from the same rows.
pub fn write_index(root: &Path, runs: &[PathBuf]) -> Result<PathBuf, DriveError> {
    let rows = runs
        .iter()
        .map(|dir| VariantRun::load(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let page = report_html::render_index(&rows.iter().map(VariantRun::html).collect::<Vec<_>>());
    profile_session::run_folder::write_atomic(&root.join("index.html"), page.as_bytes())?;
    let points: Vec<_> = rows.iter().filter_map(VariantRun::load_point).collect();
    if let Some(svg) = session_report::load_latency_plot(&points) {
        profile_session::run_folder::write_atomic(
            &root.join(session_report::LOAD_LATENCY_PLOT),
            svg.as_bytes(),
        )?;
    }
    let path = root.join("index.md");
    profile_session::run_folder::write_atomic(&path, index_report(&rows).as_bytes())?;
    Ok(path)
}

/// `index.md` of a sweep: the variants side by side.
pub fn index_report(runs: &[VariantRun]) -> String {
    let mut out = String::from("# Sweep\n\n");
    let points: Vec<Option<session_report::LoadPoint>> =
        runs.iter().map(VariantRun::load_point).collect();
    let serving = points.iter().any(Option::is_some);
    if session_report::load_latency_plot(&points.iter().flatten().cloned().collect::<Vec<_>>())
        .is_some()
    {
        out.push_str(&format!(
            "![Load-latency curve: request throughput against TTFT and TPOT at p50 and p99]({})\n\n",
            session_report::LOAD_LATENCY_PLOT
        ));
    }
    out.push_str(
        "| Variant | Requests | Concurrency | Errors | p50 ms | p99 ms | Throughput req/s |",
    );
    if serving {
        out.push_str(" Serving req/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms |");
    }
    out.push_str(" Top operation | Report |\n|---|---:|---:|---:|---:|---:|---:|");
    if serving {
        out.push_str("---:|---:|---:|---:|---:|");
    }
    out.push_str("---|---|\n");
    for (run, point) in runs.iter().zip(&points) {
        let top = run.top_operation().unwrap_or_default().replace('|', "\\|");
        let top = if serving {
            let cells = match point {
                Some(p) => format!(
                    "{:.2} | {} | {} | {} | {}",
                    p.request_throughput,
                    ms_cell(p.ttft_p50_ms),
                    ms_cell(p.ttft_p99_ms),
                    ms_cell(p.tpot_p50_ms),
                    ms_cell(p.tpot_p99_ms)
                ),
                None => " |  |  |  | ".to_owned(),
            };
            format!("{cells} | {top}")
        } else {
            top
        };
        match &run.metadata.workload {
            Some(w) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {} | [report]({}/report.md) |",
                    run.folder,
                    w.requests,
                    concurrency_cell(w.concurrency),
                    w.errors,
                    w.latency_ms.p50,
                    w.latency_ms.p99,
                    w.throughput_rps,
                    top,
                    run.folder
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| {} |  |  |  |  |  |  | {} | [report]({}/report.md) |",
                    run.folder, top, run.folder
                );
            }
        }
    }
    out.push_str("\nLatency percentiles are nearest-rank over the successful requests of each variant; throughput is successful requests per second of workload wall time (docs/metrics.md).\n");
    if serving {
        out.push_str("Serving req/s, TTFT and TPOT are each variant's Serving Metrics (completed requests over the measured phase's duration; percentiles interpolated between ranks), as its report defines them.\n");
    }
    out
}

/// A workload's concurrency as the index shows it: an open-loop load
/// without a cap records 0.
fn concurrency_cell(concurrency: u64) -> String {
    match concurrency {
        0 => "no cap".to_owned(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_compares_variants() {
        let mut runs = Vec::new();
        for (slug, conc, p50, p99, rps) in
            [("c1", 1, 10.0, 12.0, 90.5), ("c4", 4, 30.0, 55.5, 120.25)]
        {
            let mut metadata = RunMetadata::new();
            metadata.workload = Some(session_report::WorkloadSummary {
                endpoint: "/v1/score".into(),
                description: "mix".into(),
                requests: 12,
                concurrency: conc,
                errors: 0,
                wall_s: 1.0,
                latency_ms: session_report::LatencyStats {
                    count: 12,
                    mean: p50,
                    p50,
                    p90: p99,
                    p99,
                    min: p50,
                    max: p99,
                },
                throughput_rps: rps,
                output_tokens_per_s: None,
                parts: Vec::new(),
            });
            runs.push(VariantRun {
                folder: slug.into(),
                metadata,
                summary: Some(serde_json::json!({"top_operations": [{"name": "jit_forward|x"}]})),
            });
        }
        let text = index_report(&runs);
        assert!(text.contains("| c1 | 12 | 1 | 0 | 10.0 | 12.0 | 90.50 | jit_forward\\|x | [report](c1/report.md) |"), "{text}");
        assert!(
            text.contains("| c4 | 12 | 4 | 0 | 30.0 | 55.5 | 120.25 |"),
            "{text}"
        );
        // Without serving metrics, no serving columns and no curve.
        assert!(!text.contains("TTFT"));
        let dist = |median: f64, p99: f64| session_report::Distribution {
            count: 12,
            median,
            percentiles: vec![(90.0, median), (99.0, p99)],
            ..session_report::Distribution::default()
        };
        for (run, (rps, ttft, tpot)) in runs.iter_mut().zip([
            (1.95, (20.0, 31.5), (4.0, 4.5)),
            (7.5, (80.0, 250.0), (9.0, 12.25)),
        ]) {
            let report = session_report::ServingReport {
                request_throughput: rps,
                ttft_ms: Some(dist(ttft.0, ttft.1)),
                tpot_ms: Some(dist(tpot.0, tpot.1)),
                ..session_report::ServingReport::default()
            };
            run.summary.as_mut().unwrap()["serving"] = serde_json::to_value(&report).unwrap();
        }
        let points: Vec<_> = runs.iter().filter_map(VariantRun::load_point).collect();
        let svg = session_report::load_latency_plot(&points).expect("a curve");
        assert!(svg.contains("TTFT p99") && svg.contains("c4: 7.50 req/s, TTFT p99 250.0 ms"));
        let text = index_report(&runs);
        assert!(text.contains("![Load-latency curve"), "{text}");
        assert!(
            text.contains("| 90.50 | 1.95 | 20.0 | 31.5 | 4.0 | 4.5 | jit_forward\\|x |"),
            "{text}"
        );
        assert!(
            text.contains("| 7.50 | 80.0 | 250.0 | 9.0 | 12.2 |"),
            "{text}"
        );
    }
}
