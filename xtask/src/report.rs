//! `cargo xtask report`: the flags of `profile_report::generate`, and its
//! notes and outputs printed.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A JAX `output_dir`, a `plugins/profile/<run>/` folder, a trace file, or
    /// an sglprof run folder (its `inputs/run_metadata.json` is used).
    pub dir: PathBuf,
    /// Where to write report.md and summary.json [default: the input folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rows of the top-operations tables.
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    /// The `plugins/profile/<run>` to analyse when there are several
    /// [default: the latest].
    #[arg(long)]
    pub run: Option<String>,
    /// The host to analyse when a run has several [default: the first].
    #[arg(long)]
    pub host: Option<String>,
    /// Analyse the xplane.pb even when the JSON is complete.
    #[arg(long)]
    pub prefer_xplane: bool,
    /// Do not write the whole session as `trace-full.json.gz` (chunks of
    /// 1,000,000 events when longer) beside the report, which happens when
    /// JAX's JSON stopped at its 1,000,000-event cap or is absent.
    #[arg(long)]
    pub no_full_trace: bool,
    #[command(flatten)]
    pub meta: MetaFlags,
}

/// Metadata for the report header when there is no run metadata file; a
/// flag also overrides the file.
#[derive(clap::Args, Default)]
pub struct MetaFlags {
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub hardware: Option<String>,
    #[arg(long)]
    pub zone: Option<String>,
    /// The profiled endpoint, e.g. /generate.
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub jax_version: Option<String>,
    #[arg(long)]
    pub sglang_jax_version: Option<String>,
    /// YYYY-MM-DD [default: from the run folder's name].
    #[arg(long)]
    pub date: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| profile_report::Request::default_out_dir(&args.dir));
    let meta = args.meta;
    let defaults = profile_report::Request::for_run_folder(&out);
    let request = profile_report::Request {
        input: args.dir,
        out_dir: out,
        full_trace: !args.no_full_trace,
        full_trace_chunk_events: defaults.full_trace_chunk_events,
        json_event_cap: defaults.json_event_cap,
        top_n: args.top,
        run: args.run,
        host: args.host,
        prefer_xplane: args.prefer_xplane,
        overrides: profile_report::Overrides {
            model: meta.model,
            hardware: meta.hardware,
            zone: meta.zone,
            endpoint: meta.endpoint,
            jax_version: meta.jax_version,
            sglang_jax_version: meta.sglang_jax_version,
            date: meta.date,
        },
    };
    let outcome = profile_report::generate(&request)?;
    for note in &outcome.notes {
        let kind = if note.is_warning() { "warning" } else { "note" };
        eprintln!("{kind}: {note}");
    }
    for path in &outcome.written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
