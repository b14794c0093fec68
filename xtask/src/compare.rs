//! `cargo xtask compare`: regression verdicts between two profiles or run
//! folders (local or archived), against a named baseline, or against the
//! last N archived runs.
//!
//! This module is the command line: which sides to fetch and read, and what
//! to print. Reading a side and writing the outputs are
//! `profile_report::compare_side`'s, fetching archived runs, named
//! baselines and a candidate's history `profile_driver::archive`'s, the statistics and verdict rules
//! `profile-compare`'s. Exit codes: 0 no regression (including an
//! inconclusive verdict, said on stderr), 1 regression, 2 error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use gcs_artifacts::RunKind;
use profile_compare::{Profile, Settings, Verdict};
use profile_driver::archive::{self, Baselines};
use profile_report::Note;
use profile_report::compare_side::{load_side, write_comparison};

use crate::archive::{ConnFlags, block_on};

#[derive(clap::Args)]
pub struct Args {
    /// The baseline, then the candidate: JAX profile folders, sglprof run
    /// folders, trace files, or `gs://` addresses of archived runs. With
    /// --baseline or --history, only the candidate.
    #[arg(required = true, num_args = 1..=2, value_name = "PROFILE")]
    pub inputs: Vec<String>,
    /// Where to write compare.md, compare.json and compare.svg [default: the
    /// candidate folder when it is local, else the current folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Smallest change in median duration that counts, in percent (`5%` or
    /// `5`).
    #[arg(long, default_value = "5%", value_parser = parse_threshold)]
    pub threshold: f64,
    /// Compare with the named baseline of the candidate's model and
    /// accelerator in the bucket (see `artifacts promote`).
    #[arg(long = "baseline", value_name = "NAME", conflicts_with = "history")]
    pub baseline_name: Option<String>,
    /// Judge the candidate against the last N archived runs of --kind with
    /// the same model, hardware and endpoint.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub history: Option<u32>,
    /// The kind of archived runs --history reads.
    #[arg(long, value_parser = ["manual", "nightly"], default_value = "nightly")]
    pub kind: String,
    /// The model of --baseline [default: the candidate's run metadata].
    #[arg(long)]
    pub model: Option<String>,
    /// The accelerator of --baseline [default: the candidate's hardware].
    #[arg(long)]
    pub accelerator: Option<String>,
    #[arg(long, env = "SGLPROF_BUCKET")]
    pub bucket: Option<String>,
    #[arg(long = "bucket-prefix", default_value = gcs_artifacts::DEFAULT_PREFIX)]
    pub prefix: String,
    #[command(flatten)]
    pub conn: ConnFlags,
}

fn parse_threshold(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage such as 5%"))?;
    if !(0.0..=1000.0).contains(&value) {
        return Err(format!("`{text}` is outside 0%..1000%"));
    }
    Ok(value / 100.0)
}

/// Runs the command and maps its outcome to the exit code: 0 no
/// regression, 1 regression, 2 error (printed as one line).
pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(Verdict::Regression) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Verdict> {
    let by_name = args.baseline_name.is_some() || args.history.is_some();
    let want = if by_name { 1 } else { 2 };
    if args.inputs.len() != want {
        bail!(
            "compare: expected {} (got {})",
            if by_name {
                "only the candidate with --baseline or --history"
            } else {
                "a baseline and a candidate"
            },
            args.inputs.len()
        );
    }
    let candidate_input = args.inputs.last().expect("checked").clone();
    let scratch = tempfile::Builder::new()
        .prefix("sglprof-compare-")
        .tempdir()
        .context("cannot create a scratch folder")?;
    let conn = args.conn.connection();
    let fetch_input = |input: &str, dest: PathBuf| {
        block_on(async { Ok(archive::fetch_input(input, &dest, &conn).await?) })
    };
    let baselines = Baselines {
        bucket: args.bucket.as_deref(),
        prefix: &args.prefix,
        model: args.model.as_deref(),
        accelerator: args.accelerator.as_deref(),
        conn: &conn,
    };
    let candidate_dir = fetch_input(&candidate_input, scratch.path().join("candidate"))?;
    // Every local file read, so that no output replaces one.
    let mut read = Vec::new();
    let candidate = load(&candidate_dir, &candidate_input, &mut read)?;
    let settings = Settings {
        threshold: args.threshold,
        ..Settings::default()
    };

    let comparison = if let Some(n) = args.history {
        let kind = RunKind::parse(&args.kind)?;
        let dirs = block_on(async {
            let (dir, input) = (&candidate_dir, &candidate_input);
            Ok(baselines
                .history(kind, n as usize, dir, input, scratch.path())
                .await?)
        })?;
        let mut read = Vec::new();
        let history = dirs
            .iter()
            .map(|(dir, url)| load(dir, url, &mut read))
            .collect::<anyhow::Result<Vec<_>>>()?;
        profile_compare::judge_history(&history, &candidate, &settings)
    } else {
        let (baseline_dir, baseline_label) = match &args.baseline_name {
            Some(name) => block_on(async {
                Ok(baselines
                    .named(name, &candidate_dir, scratch.path())
                    .await?)
            })?,
            None => {
                let input = &args.inputs[0];
                (
                    fetch_input(input, scratch.path().join("baseline"))?,
                    input.clone(),
                )
            }
        };
        let baseline = load(&baseline_dir, &baseline_label, &mut read)?;
        profile_compare::compare(&baseline, &candidate, &settings)
    };

    let out = match &args.out {
        Some(out) => out.clone(),
        None if Path::new(&candidate_input).is_dir() => {
            profile_report::outputs::default_dir(Path::new(&candidate_input))
        }
        None => PathBuf::from("."),
    };
    for path in write_comparison(&comparison, &out, &read)? {
        println!("wrote {}", path.display());
    }
    println!(
        "verdict: {} ({} slower, {} faster)",
        comparison.verdict.as_str(),
        comparison.count(profile_compare::OpVerdict::Slower),
        comparison.count(profile_compare::OpVerdict::Faster)
    );
    if comparison.verdict == Verdict::Inconclusive {
        eprintln!(
            "WARNING: inconclusive: the changes alone say {}, but:",
            comparison.changes_verdict.as_str()
        );
    }
    for caveat in &comparison.caveats {
        eprintln!("WARNING: {caveat}");
    }
    Ok(comparison.verdict)
}

/// One side, read; a choice among several runs or hosts is said on stderr.
pub fn load(dir: &Path, label: &str, read: &mut Vec<PathBuf>) -> anyhow::Result<Profile> {
    let mut notes = Vec::new();
    let profile = load_side(dir, label, read, &mut notes)?;
    for note in notes {
        match note {
            Note::SeveralRuns { count, chosen } => eprintln!(
                "note: {label}: {count} profiler runs found, comparing the latest, {chosen}"
            ),
            Note::SeveralHosts { run, count, chosen } => {
                eprintln!("note: {label}: run {run} has {count} hosts, comparing {chosen}")
            }
            other => eprintln!("note: {label}: {other}"),
        }
    }
    Ok(profile)
}
