//! `cargo xtask trace`: the whole session as one Chrome trace JSON file (or
//! numbered chunks) that Perfetto's UI opens; the flags, handed to
//! `profile_report::export`, which picks the source, streams the events and
//! publishes the chunks as one output set.

use std::ops::RangeInclusive;
use std::path::PathBuf;

use profile_report::export::{TraceRequest, parse_steps};
use trace_export::Selection;
use trace_model::Ps;

#[derive(clap::Args)]
pub struct Args {
    /// A JAX profile folder, a `plugins/profile/<run>/` folder, an sglprof
    /// run folder, or one `.xplane.pb` / `.trace.json(.gz)` file.
    pub profile: PathBuf,
    /// The file to write: `.json.gz` (gzip) or `.json`. With
    /// `--split-events`, chunks are named `<stem>.000.json.gz`, ...
    #[arg(long)]
    pub out: PathBuf,
    /// The `plugins/profile/<run>` to export [default: the latest].
    #[arg(long)]
    pub run: Option<String>,
    /// The host to export [default: the first].
    #[arg(long)]
    pub host: Option<String>,
    /// Keep events that end after this many milliseconds from the trace's
    /// start (ts 0).
    #[arg(long)]
    pub from_ms: Option<f64>,
    /// Keep events that start at or before this many milliseconds.
    #[arg(long)]
    pub to_ms: Option<f64>,
    /// Keep the time of device steps A to B (inclusive), from the `Steps`
    /// line of the device planes: `--steps 10..20`.
    #[arg(long, value_parser = parse_steps)]
    pub steps: Option<RangeInclusive<u64>>,
    /// Keep the events of threads whose name (or process name) contains
    /// this text.
    #[arg(long)]
    pub threads: Option<String>,
    /// Write numbered chunks of at most N events each, every one with the
    /// process and thread names (for viewers that struggle with more than
    /// about 1,000,000 events).
    #[arg(long)]
    pub split_events: Option<u64>,
    /// Leave out the "Requests" process (the client's requests of a run
    /// folder, one track per concurrency slot).
    #[arg(long)]
    pub no_requests: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let request = TraceRequest {
        profile: args.profile,
        out: args.out,
        run: args.run,
        host: args.host,
        selection: Selection {
            from: args.from_ms.map(ms_to_ps).transpose()?,
            to: args.to_ms.map(ms_to_ps).transpose()?,
            threads: args.threads,
            split_events: args.split_events,
        },
        steps: args.steps,
        requests: !args.no_requests,
    };
    let outcome = profile_report::export::export(&request)?;
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    for path in &outcome.written {
        println!("wrote {}", path.display());
    }
    let summary = &outcome.summary;
    eprintln!(
        "{} events from {}{}",
        summary.events,
        outcome.source.display(),
        if summary.left_out > 0 {
            format!(" ({} left out by the selection)", summary.left_out)
        } else {
            String::new()
        }
    );
    if let Some(added) = &outcome.requests {
        eprintln!(
            "{} requests on the \"Requests\" process; {}",
            added.requests,
            added.placement.describe()
        );
    }
    Ok(())
}

fn ms_to_ps(ms: f64) -> anyhow::Result<Ps> {
    trace_model::ms_to_ps(ms).ok_or_else(|| anyhow::anyhow!("time {ms} ms is out of range"))
}
