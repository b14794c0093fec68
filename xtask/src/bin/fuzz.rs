//! `cargo xtask fuzz` (which runs this binary): mutation fuzzing of every
//! reader over the fixtures, in this process and on every core (see the
//! `trace-fuzz` crate). A binary of its own, so that its counting allocator
//! is registered here and nowhere else.
//!
//! Prints inputs per second per reader; on the first failure writes the
//! input to `target/fuzz-failures/` and names the seed and index that
//! reproduce it (`--reader R --seed S --index I`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use trace_fuzz::{Budget, Config, Reader, Seeds};

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
    let readers = args
        .readers
        .iter()
        .map(|name| Reader::parse(name).with_context(|| format!("unknown reader `{name}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let readers = if readers.is_empty() {
        Reader::ALL.to_vec()
    } else {
        readers
    };
    // A dev tool: the checkout it was built from has the fixtures.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the checkout")?
        .to_path_buf();
    let fixtures = root.join("fixtures");
    let seeds = Seeds::build(&mut |rel| {
        std::fs::read(fixtures.join(rel)).map_err(|e| format!("cannot read: {e}"))
    })
    .map_err(anyhow::Error::msg)?;
    let budget = Budget::default();
    let out_dir = root.join("target").join("fuzz-failures");

    if let Some(index) = args.index {
        for reader in readers {
            let input = trace_fuzz::make_input(reader, &seeds, args.seed, index);
            let path = save(&out_dir, reader, args.seed, index, &input)?;
            match trace_fuzz::check_input(reader, &input, &budget) {
                Ok(usage) => eprintln!(
                    "[fuzz] {} input {index}: ok ({} bytes, {:.2} ms CPU, peak {} bytes); written to {}",
                    reader.name(),
                    input.len(),
                    usage.cpu.as_secs_f64() * 1e3,
                    usage.peak_bytes,
                    path.display()
                ),
                Err(problem) => bail!(
                    "fuzz: {} input {index} (seed {}): {problem}; written to {}",
                    reader.name(),
                    args.seed,
                    path.display()
                ),
            }
        }
        return Ok(());
    }

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let config = Config {
        seed: args.seed,
        inputs: args.inputs,
        threads,
        budget,
    };
    eprintln!(
        "[fuzz] seed {}, {} inputs per reader, {threads} threads",
        args.seed, args.inputs
    );
    // Panics are expected to be caught and reported as failures; the default
    // hook would print each one in the middle of the progress lines.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = None;
    for reader in readers {
        let report = trace_fuzz::fuzz(reader, &seeds, &config);
        eprintln!(
            "[fuzz] {:<12} {:>9} inputs  {:>8.0} inputs/s  {:>7.1} MB  {} failures  worst: {:.1}% of time budget, {:.1}% of memory bound",
            reader.name(),
            report.inputs,
            report.inputs_per_s(),
            report.bytes as f64 / 1e6,
            report.failures.len(),
            report.worst_time_share * 100.0,
            report.worst_mem_share * 100.0
        );
        if let Some(first) = report.failures.into_iter().next() {
            failed = Some(first);
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some(failure) = failed {
        let input = trace_fuzz::make_input(failure.reader, &seeds, failure.seed, failure.index);
        let path = save(
            &out_dir,
            failure.reader,
            failure.seed,
            failure.index,
            &input,
        )?;
        bail!(
            "fuzz: {} input {} (seed {}): {}; written to {}; rerun with --reader {} --seed {} --index {}",
            failure.reader.name(),
            failure.index,
            failure.seed,
            failure.problem,
            path.display(),
            failure.reader.name(),
            failure.seed,
            failure.index
        );
    }
    Ok(())
}

fn save(
    dir: &std::path::Path,
    reader: Reader,
    seed: u64,
    index: u64,
    input: &[u8],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}-{seed}-{index}.bin", reader.name()));
    std::fs::write(&path, input).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
