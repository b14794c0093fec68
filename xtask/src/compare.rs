//! `cargo xtask compare`: regression verdicts between two profiles or run
//! folders (local or archived), against a named baseline, or against the
//! last N archived runs.
//!
//! This module is the command line: the flags and what to print. Fetching
//! and reading the sides and writing the outputs are
//! `profile_driver::compare`'s (with `profile_driver::archive` and
//! `profile_report::compare_side`), the statistics and verdict rules
//! `profile-compare`'s. Exit codes: 0 no regression (including an
//! inconclusive verdict, said on stderr), 1 regression, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use gcs_artifacts::RunKind;
use profile_compare::{Settings, Verdict};
use profile_driver::archive::Baselines;
use profile_driver::compare::{Against, CompareRequest, compare};
use profile_report::Note;

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
    let conn = args.conn.connection();
    let against = match (&args.baseline_name, args.history) {
        (_, Some(n)) => Against::History {
            kind: RunKind::parse(&args.kind)?,
            count: n as usize,
        },
        (Some(name), None) => Against::Named(name.clone()),
        (None, None) => Against::Input(args.inputs[0].clone()),
    };
    let request = CompareRequest {
        candidate: args.inputs.last().expect("checked"),
        against,
        out: args.out.clone(),
        settings: Settings {
            threshold: args.threshold,
            ..Settings::default()
        },
        baselines: Baselines {
            bucket: args.bucket.as_deref(),
            prefix: &args.prefix,
            model: args.model.as_deref(),
            accelerator: args.accelerator.as_deref(),
            conn: &conn,
        },
    };
    let outcome = block_on(async { Ok(compare(&request, &mut print_note).await?) })?;
    let comparison = outcome.comparison;
    for path in &outcome.written {
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

/// A choice among several runs or hosts of a side, said on stderr.
fn print_note(label: &str, note: Note) {
    match note {
        Note::SeveralRuns { count, chosen } => {
            eprintln!("note: {label}: {count} profiler runs found, comparing the latest, {chosen}")
        }
        Note::SeveralHosts { run, count, chosen } => {
            eprintln!("note: {label}: run {run} has {count} hosts, comparing {chosen}")
        }
        other => eprintln!("note: {label}: {other}"),
    }
}
