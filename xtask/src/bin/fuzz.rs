//! `cargo xtask fuzz` (which runs this binary): mutation fuzzing of every
//! reader over the fixtures, in this process and on every core (see the
//! `trace-fuzz` crate, whose `campaign` this binary runs with its flags). A
//! binary of its own, so that its counting allocator is registered here and
//! nowhere else.
//!
//! Prints inputs per second per reader; on the first failure writes the
//! input to `target/fuzz-failures/` and names the seed and index that
//! reproduce it (`--reader R --seed S --index I`).

use std::path::Path;

use anyhow::Context;
use clap::Parser;
use trace_fuzz::campaign;

/// Counts each thread's live bytes, for the memory bound of every input.
#[global_allocator]
static ALLOC: trace_fuzz::CountingAlloc = trace_fuzz::CountingAlloc;

/// Mutation-fuzz every reader over the fixtures.
#[derive(Parser)]
#[command(name = "cargo xtask fuzz")]
struct Args {
    /// Inputs per reader.
    #[arg(long, default_value_t = 10_000)]
    inputs: u64,
    /// Seed of the run: the same seed gives the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only these readers (repeatable): chrome-json, chrome-gzip, xplane,
    /// pyspy-raw, speedscope, manifest, run-metadata.
    #[arg(long = "reader")]
    readers: Vec<String>,
    /// Threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Run the single input with this index (with --reader and --seed) and
    /// write it to target/fuzz-failures/.
    #[arg(long, requires = "readers")]
    index: Option<u64>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", trace_fuzz::one_line(&format!("{err:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // A dev tool: the checkout it was built from has the fixtures.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the checkout")?
        .to_path_buf();
    let options = campaign::Options {
        out_dir: root.join("target").join("fuzz-failures"),
        root,
        inputs: args.inputs,
        seed: args.seed,
        readers: args.readers,
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        index: args.index,
    };
    Ok(campaign::run(&options, &mut |line| eprintln!("{line}"))?)
}
