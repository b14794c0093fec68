//! `cargo xtask bench`: the flags of the benchmarks, handed to
//! `sglprof_bench::run` with this binary as the one measured (the groups,
//! their commands and their printing are that crate's). The hidden
//! `--worker` runs one timed analysis in this process, as the groups
//! measure it (`sglprof_bench::worker`).

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// A JAX profile folder holding a trace.json.gz at JAX's 1,000,000-event
    /// cap and its xplane.pb [default: <sglprof cache>/bench].
    #[arg(long)]
    pub trace_dir: Option<PathBuf>,
    /// How many measured runs of each command (after one warm-up run).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// More xplane.pb files to compare with xprof-rs (a large synthetic TPU
    /// profile, say).
    #[arg(long)]
    pub xplane: Vec<PathBuf>,
    /// A Python with PyPI xprof 2.24.2: adds its trace_viewer conversion of
    /// the benchmark xplane.pb (conversion time only) to compare `trace` with.
    #[arg(long)]
    pub xprof_python: Option<PathBuf>,
    /// A large TPU profile (`make_tpu_xplane.py --preset large`): compares
    /// our device statistics with xprof's `framework_op_stats` conversion
    /// of it (needs --xprof-python).
    #[arg(long, requires = "xprof_python")]
    pub tpu_xplane: Option<PathBuf>,
    /// A large TPU profile to tile (`trace_xplane::tile`) into captures of
    /// 0.25, 0.5, 1 and 2 GB in the sglprof cache: the report's time and
    /// memory are measured at each size, to show they grow linearly and
    /// that memory beyond the mapped file follows the metadata.
    #[arg(long)]
    pub scale_base: Option<PathBuf>,
    /// Measured runs of each size of the scale group (after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub scale_runs: usize,
    /// Run only the load generator's group: sglprof and sglang-jax's
    /// `bench_serving` against a stub that answers at once, each client
    /// pinned to CPU 0 and the stub to CPU 1 (so nothing else runs).
    #[arg(long)]
    pub load: bool,
    /// Run only the serving comparison: sglprof and sglang-jax's
    /// `bench_serving` against one real local CPU server, on one dataset
    /// file, `--runs` rounds each (counts and TTFT/ITL/E2E medians).
    #[arg(long, conflicts_with = "load")]
    pub serving: bool,
    /// Requests per run of the load group.
    #[arg(long, default_value_t = 6000)]
    pub load_requests: usize,
    /// Requests in flight at most in the load group.
    #[arg(long, default_value_t = 32)]
    pub load_concurrency: usize,
    /// Requests of the load group's one session measured for memory.
    #[arg(long, default_value_t = 100_000)]
    pub memory_requests: usize,
    /// Requests per second of the load group's paced session (Poisson),
    /// whose first-token times are checked away from saturation.
    #[arg(long, default_value_t = 500.0)]
    pub paced_rate: f64,
    /// Also run the plain-Python JSON baseline (last, on its own).
    #[arg(long)]
    pub python: bool,
    /// Internal: run one analysis in this process (`json`, `xplane` or
    /// `device`).
    #[arg(long, hide = true, requires = "file")]
    pub worker: Option<String>,
    #[arg(long, hide = true)]
    pub file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(worker) = &args.worker {
        let file = args.file.as_deref().expect("clap requires --file");
        return Ok(sglprof_bench::worker(worker, file)?);
    }
    let me = std::env::current_exe().context("cannot find the xtask binary")?;
    let options = sglprof_bench::Options {
        trace_dir: args.trace_dir,
        runs: args.runs,
        xplane: args.xplane,
        xprof_python: args.xprof_python,
        tpu_xplane: args.tpu_xplane,
        scale_base: args.scale_base,
        scale_runs: args.scale_runs,
        python: args.python,
        serving: args.serving,
        load: args.load.then_some(sglprof_bench::LoadBench {
            requests: args.load_requests,
            concurrency: args.load_concurrency,
            runs: args.runs,
            memory_requests: args.memory_requests,
            paced_rate: args.paced_rate,
        }),
    };
    Ok(sglprof_bench::run(&me, &options, &crate::util::Lines)?)
}
