//! `cargo xtask profile --k8s` once the Job is built: run it
//! ([`k8s_job::run_job`]: progress, logs, explained pending pods, deletion
//! on every exit path, SIGINT, SIGTERM, SIGHUP and SIGQUIT included), read
//! the archive address each pod logs, download every variant's run
//! verified against its manifest, and write a sweep's `index.md`. The Job
//! itself (flags, pod argv, assets) is `crate::k8s`'s.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use k8s_job::{JobConfig, Progress, RunOptions};
use session_report::RunMetadata;

use crate::k8s::{dry_run_text, job_config};
use crate::profile::{Args, Endpoint};

/// `profile --k8s`.
pub fn profile_k8s(args: &Args) -> anyhow::Result<()> {
    let endpoint = match args.endpoint {
        Endpoint::Generate => "generate",
        Endpoint::Score => "score",
    };
    let run_id = format!(
        "{}Z-{endpoint}-k8s",
        tpu_cloud::time::compact_stamp(SystemTime::now()).replace('-', "T")
    );
    if args.tpu.dry_run {
        print!("{}", dry_run_text(args, &run_id)?);
        return Ok(());
    }
    let config = job_config(args, &run_id, false)?;
    let job = k8s_job::build_job(&config)?;
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => std::env::current_dir()?.join("runs").join(&run_id),
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let client = k8s_job::client_from_env(args.k8s.kube_context.as_deref()).await?;
        let opts = RunOptions {
            pending_timeout: Duration::from_secs(args.k8s.pending_timeout),
            ..RunOptions::default()
        };
        let mut archived: Vec<(u32, String)> = Vec::new();
        let mut pods: std::collections::BTreeMap<String, u32> = Default::default();
        // The Job is deleted on every exit path, a signal included.
        let cancel = async {
            crate::profile::shutdown_signal().await;
        };
        eprintln!(
            "[k8s] job {} in namespace {} ({} variant(s))",
            config.name,
            config.namespace,
            config.variants.len()
        );
        let outcome = k8s_job::run_job(client, &job, &opts, cancel, &mut |event| {
            report_progress(&event, &mut pods, &mut archived)
        })
        .await?;
        eprintln!(
            "[k8s] job {} finished in {:.0} s and was deleted",
            outcome.job,
            outcome.took.as_secs_f64()
        );
        fetch_runs(args, &config, &outcome, &archived, &out_dir).await
    })
}

/// Prints one event; remembers the archive address each pod logs.
fn report_progress(
    event: &Progress,
    pods: &mut std::collections::BTreeMap<String, u32>,
    archived: &mut Vec<(u32, String)>,
) {
    match event {
        Progress::Created { job } => eprintln!("[k8s] created job {job}"),
        Progress::Phase { pod, phase } => {
            let next = pods.len() as u32;
            pods.entry(pod.clone()).or_insert(next);
            eprintln!("[k8s] pod {pod}: {phase}")
        }
        Progress::Pending { pod, explanation } => {
            eprintln!("[k8s] pod {pod} pending: {explanation}")
        }
        Progress::Log { pod, line } => {
            eprintln!("[{pod}] {line}");
            if let Some(url) = archive_url(line) {
                archived.push((pods.get(pod).copied().unwrap_or(0), url));
            }
        }
        Progress::Deleted { job } => eprintln!("[k8s] deleted job {job} (background propagation)"),
    }
}

/// The address in the session's `[profile] archived: gs://...` line.
fn archive_url(line: &str) -> Option<String> {
    let rest = line.split_once("[profile] archived: ")?.1.trim();
    rest.starts_with("gs://").then(|| rest.to_owned())
}

async fn fetch_runs(
    args: &Args,
    config: &JobConfig,
    outcome: &k8s_job::JobOutcome,
    archived: &[(u32, String)],
    out_dir: &Path,
) -> anyhow::Result<()> {
    if archived.len() != config.variants.len() {
        bail!(
            "{} of {} pod(s) logged an archive address; the run folders are in gs://{}/{}",
            archived.len(),
            config.variants.len(),
            config.bucket,
            args.archive.bucket_prefix
        );
    }
    let _ = outcome;
    let mut folders = Vec::new();
    for (idx, (_, url)) in archived.iter().enumerate() {
        let dir = if archived.len() == 1 {
            out_dir.to_path_buf()
        } else {
            out_dir.join(format!("variant-{idx}"))
        };
        crate::archive::download(url, Some(dir.clone()), false, &args.archive.conn).await?;
        folders.push(dir);
    }
    if folders.len() == 1 {
        eprintln!("[k8s] report {}", folders[0].join("report.md").display());
        return Ok(());
    }
    let mut rows = Vec::new();
    for dir in &folders {
        rows.push(VariantRun::load(dir)?);
    }
    let index = index_report(&rows);
    let path = out_dir.join("index.md");
    profile_session::run_folder::write_atomic(&path, index.as_bytes())?;
    eprintln!("[k8s] sweep index {}", path.display());
    Ok(())
}

/// One variant's run, as the index report needs it.
#[derive(Debug)]
pub struct VariantRun {
    pub folder: String,
    pub metadata: RunMetadata,
    /// `summary.json`, when the report was written.
    pub summary: Option<serde_json::Value>,
}

impl VariantRun {
    fn load(dir: &Path) -> anyhow::Result<VariantRun> {
        let meta_path = dir.join("inputs/run_metadata.json");
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("cannot read {}", meta_path.display()))?;
        let metadata = RunMetadata::from_json(&text)
            .map_err(|err| anyhow::anyhow!("{}: {err}", meta_path.display()))?;
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

/// `index.md` of a sweep: the variants side by side.
pub fn index_report(runs: &[VariantRun]) -> String {
    let mut out = String::from("# Sweep\n\n");
    out.push_str("| Variant | Requests | Concurrency | Errors | p50 ms | p99 ms | Throughput req/s | Top operation | Report |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for run in runs {
        let top = run
            .summary
            .as_ref()
            .and_then(|it| it["top_operations"].get(0))
            .and_then(|it| it["name"].as_str())
            .unwrap_or("")
            .replace('|', "\\|");
        match &run.metadata.workload {
            Some(w) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {} | [report]({}/report.md) |",
                    run.folder,
                    w.requests,
                    w.concurrency,
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_lines() {
        assert_eq!(
            archive_url("[profile] archived: gs://b/sglprof/manual/2026-11-30/x/"),
            Some("gs://b/sglprof/manual/2026-11-30/x/".to_owned())
        );
        assert_eq!(archive_url("[profile] report runs/x/report.md"), None);
    }

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
    }
}
