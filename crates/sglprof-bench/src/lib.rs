//! The benchmarks of `cargo xtask bench`, as a library: each group runs
//! sglprof's own binary (the path given as `me`, a build of the xtask) as
//! users run it, next to its baselines, and prints the figures and the
//! ratios measured in the same run.
//!
//! [`run`] measures, in small groups: gzip's floor with our JSON analysis;
//! `xprof-rs aggregate_xplane_events` (PyPI `xprof-rs`, installed once into
//! the sglprof cache) with our XPlane analysis and with `report` (whole
//! process), on each xplane.pb given; xprof's `framework_op_stats` with our
//! device statistics and the report on a large TPU profile; the report at
//! four sizes of a tiled capture; `trace` with xprof's `trace_viewer`
//! conversion when a Python with xprof is given (its conversion time only);
//! the plain-Python JSON baseline last and alone, as it leaves hundreds of
//! MiB to free behind it. The load group (`load`) and the serving
//! comparison (`serving`) set sglprof's sender against sglang-jax's
//! `bench_serving`. In each group every command runs once to warm up, then
//! rounds A B A B ..., each run after a pause; the median and the range are
//! printed with the machine's cores and load average.
//!
//! It prints: the figures on standard output, what it sets up once (the
//! captured trace, xprof-rs, the tilings) on standard error. The measuring
//! itself is `bench-process`'s. The analyses that a group times inside the
//! binary are [`worker`], which the binary runs in its own process (`me
//! bench --worker KIND --file FILE`). It is not a benchmark harness for
//! other programs: the commands it runs are sglprof's subcommands.
#![allow(clippy::disallowed_methods)] // The benchmark runs the commands it measures.

mod inputs;
mod load;
mod serving;
mod show;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bench_process::{Bench, SETTLE, bench, command, machine, measure_group};
use profile_driver::events::Progress;
use xshell::Shell;

use inputs::{default_trace_dir, ensure_xprof_rs, file_size, find_pair};
pub use load::LoadBench;
use show::{print_group, ratio};

/// Why a benchmark could not be run. Each message names what failed; the
/// cause is its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder of the bench could not be read, written or moved,
    /// or a command could not be started.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran but did not give what the bench needs.
    #[error("{0}")]
    Failed(String),
    /// One measured run failed.
    #[error("{what}")]
    Run {
        what: String,
        #[source]
        source: bench_process::RunError,
    },
    /// A tool's results are not JSON.
    #[error("{what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A capture could not be tiled.
    #[error("{what}")]
    Tile {
        what: String,
        #[source]
        source: trace_xplane::TileError,
    },
    /// A setup command (the xprof-rs venv) failed.
    #[error("{what}")]
    Shell {
        what: String,
        #[source]
        source: xshell::Error,
    },
    #[error(transparent)]
    Group(#[from] bench_process::Error),
    #[error(transparent)]
    Env(#[from] profile_driver::pyenv::EnvError),
    #[error(transparent)]
    Report(#[from] profile_report::Error),
    #[error(transparent)]
    Server(#[from] sglang_server::Error),
}

/// `what` as the message of an IO error.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// What to measure: the flags of `cargo xtask bench`.
#[derive(Clone, Debug)]
pub struct Options {
    /// A JAX profile folder holding a trace.json.gz and its xplane.pb; by
    /// default one captured once into `<sglprof cache>/bench`.
    pub trace_dir: Option<PathBuf>,
    /// Measured runs of each command (after one warm-up run).
    pub runs: usize,
    /// More xplane.pb files to compare with xprof-rs.
    pub xplane: Vec<PathBuf>,
    /// A Python with PyPI xprof 2.24.2, for its conversions.
    pub xprof_python: Option<PathBuf>,
    /// A large TPU profile for the device group (needs `xprof_python`).
    pub tpu_xplane: Option<PathBuf>,
    /// A large TPU profile to tile into 0.25, 0.5, 1 and 2 GB captures.
    pub scale_base: Option<PathBuf>,
    /// Measured runs of each size of the scale group.
    pub scale_runs: usize,
    /// The plain-Python JSON baseline too (last, on its own).
    pub python: bool,
    /// Only the serving comparison against one real CPU server.
    pub serving: bool,
    /// Only the load generator's group, with these sizes.
    pub load: Option<LoadBench>,
}

const PYTHON_BASELINE: &str = r#"
import gzip, json, sys
with gzip.open(sys.argv[1], "rb") as f:
    doc = json.load(f)
events = doc["traceEvents"] if isinstance(doc, dict) else doc
phases, ops = {}, {}
first, last = None, None
for e in events:
    ph = e.get("ph", "(none)")
    phases[ph] = phases.get(ph, 0) + 1
    ts = e.get("ts")
    if ts is None or ph == "M":
        continue
    dur = e.get("dur", 0.0) if ph == "X" else 0.0
    first = ts if first is None or ts < first else first
    last = ts + dur if last is None or ts + dur > last else last
    if ph == "X":
        acc = ops.get(e["name"])
        if acc is None:
            ops[e["name"]] = [1, dur, dur]
        else:
            acc[0] += 1; acc[1] += dur; acc[2] = max(acc[2], dur)
top = sorted(ops.items(), key=lambda kv: (-kv[1][1], kv[0]))[:15]
print(len(events), len(ops), (last - first) / 1e3, phases, top[0][0])
"#;

/// Converts one xplane.pb with PyPI xprof and prints how long the
/// conversion itself took (imports and start-up excluded). xprof writes a
/// cache next to its input, so the bench hands it a fresh copy each time.
const XPROF_CONVERT: &str = r#"
import sys, time
from xprof.convert import raw_to_tool_data as r
t = time.perf_counter()
data, ctype = r.xspace_to_tool_data([sys.argv[1]], sys.argv[2], {"use_saved_result": False})
print("CONVERT_SECONDS", time.perf_counter() - t, len(data))
"#;

/// `me bench --worker KIND --file FILE`: one analysis alone in a process.
fn worker_command(me: &Path, kind: &str, file: &Path) -> Command {
    command(
        me.as_os_str(),
        &[
            "bench".as_ref(),
            "--worker".as_ref(),
            kind.as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
        ],
    )
}

/// Runs the groups `options` asks for with the sglprof binary `me`, and
/// prints them.
pub fn run(me: &Path, options: &Options, progress: &dyn Progress) -> Result<(), Error> {
    let dir = match &options.trace_dir {
        Some(dir) => dir.clone(),
        None => default_trace_dir(me)?,
    };
    let (json, xplane) = find_pair(&dir)?;
    let runs = options.runs.max(1);
    let scratch = profile_driver::pyenv::cache_root()?.join("bench-scratch");
    if options.serving {
        println!("machine: {} (at start)", machine());
        serving::serving_group(me, &scratch, runs, progress)?;
        println!("\nmachine: {} (at end)", machine());
        return Ok(());
    }
    if let Some(spec) = &options.load {
        println!("machine: {} (at start)", machine());
        let spec = LoadBench {
            requests: spec.requests.max(1),
            concurrency: spec.concurrency.max(1),
            runs,
            memory_requests: spec.memory_requests.max(1),
            paced_rate: spec.paced_rate,
        };
        load::load_group(me, &dir, &scratch, &spec, progress)?;
        println!("\nmachine: {} (at end)", machine());
        return Ok(());
    }
    let sh = Shell::new().map_err(|source| Error::Shell {
        what: "cannot start a shell".into(),
        source,
    })?;
    let xprof_rs = ensure_xprof_rs(&sh)?;
    // The report folders and the trace export's files are the bench's own:
    // those of an older sglprof (without the outputs record) would be
    // refused, not replaced.
    for own in ["bench-report", "bench-scale-report"] {
        let dir = scratch.join(own);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(format!("cannot clear {}", dir.display())))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(&scratch) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("bench-trace") || name == ".sglprof-outputs.json" {
                std::fs::remove_file(entry.path())
                    .map_err(io(format!("cannot clear {}", entry.path().display())))?;
            }
        }
    }
    std::fs::create_dir_all(&scratch)
        .map_err(io(format!("cannot create {}", scratch.display())))?;

    println!("machine: {} (at start)", machine());
    println!(
        "trace.json.gz: {} ({} bytes)",
        json.display(),
        file_size(&json)?
    );
    let mut xplanes = vec![xplane];
    xplanes.extend(options.xplane.iter().cloned());
    for path in &xplanes {
        println!(
            "xplane.pb:     {} ({} bytes)",
            path.display(),
            file_size(path)?
        );
    }
    println!(
        "each group: one warm-up run per command, then {runs} rounds A B A B ..., {} ms pause before every run",
        SETTLE.as_millis()
    );

    let mut group = vec![
        bench(
            "gzip -dc (floor)",
            command("gzip", &["-dc".as_ref(), json.as_os_str()]),
        ),
        bench("sglprof JSON analysis", worker_command(me, "json", &json)),
    ];
    let json_stats = measure_group(&mut group, runs)?;
    print_group("JSON", &group, &json_stats);
    println!(
        "JSON: sglprof / gzip -dc                 {:>6.2}x time (target <= 1.20x); peak RSS {:.1} MiB (target < 64 MiB)",
        json_stats[1].wall.0 / json_stats[0].wall.0,
        json_stats[1].rss.0
    );

    for path in &xplanes {
        let mut group = vec![
            bench(
                "xprof-rs aggregate_xplane_events",
                command(
                    xprof_rs.as_os_str(),
                    &["aggregate_xplane_events".as_ref(), path.as_os_str()],
                ),
            ),
            bench(
                "sglprof XPlane analysis",
                worker_command(me, "xplane", path),
            ),
            bench(
                "sglprof report, no full trace (process)",
                report(me, path, &scratch.join("bench-report")),
            ),
        ];
        let stats = measure_group(&mut group, runs)?;
        print_group(&format!("XPlane: {}", path.display()), &group, &stats);
        ratio(
            "XPlane: sglprof analysis / xprof-rs",
            &stats[1],
            &stats[0],
            "<= 0.50x",
            "<= 0.50x",
        );
        ratio(
            "XPlane: sglprof report / xprof-rs",
            &stats[2],
            &stats[0],
            "<= 0.50x",
            "<= 0.50x",
        );
    }

    // The device statistics of a large TPU profile against xprof's
    // framework_op_stats (its conversion time; its peak memory includes
    // Python and its imports, about 100 MiB of its gigabytes).
    if let (Some(path), Some(python)) = (&options.tpu_xplane, &options.xprof_python) {
        println!(
            "TPU xplane.pb: {} ({} bytes)",
            path.display(),
            file_size(path)?
        );
        let input = xprof_copy(&scratch, "xprof-tpu-input/run", path)?;
        let mut group = vec![
            xprof_tool(python, &input, "framework_op_stats"),
            bench("sglprof device view", worker_command(me, "device", path)),
            bench(
                "sglprof report, no full trace (process)",
                report(me, path, &scratch.join("bench-report")),
            ),
        ];
        let stats = measure_group(&mut group, runs)?;
        print_group(&format!("Device: {}", path.display()), &group, &stats);
        ratio(
            "device: sglprof / xprof framework_op_stats",
            &stats[1],
            &stats[0],
            "<= 0.03x",
            "<= 0.05x",
        );
        ratio(
            "device: report / xprof framework_op_stats",
            &stats[2],
            &stats[0],
            "<= 0.03x",
            "<= 0.05x",
        );
    }

    if let Some(base) = &options.scale_base {
        scale_group(me, base, &scratch, options.scale_runs.max(1))?;
    }

    // The trace conversion, against xprof's trace_viewer when a Python with
    // xprof 2.24.2 is given, on the first --xplane file (the 38 MB capture
    // of the target) or else the captured one.
    let traced = xplanes.get(1).unwrap_or(&xplanes[0]);
    println!("\ntrace export of {}", traced.display());
    let out = scratch.join("bench-trace.json.gz");
    let mut group = vec![bench(
        "sglprof trace -> .json.gz",
        command(
            me.as_os_str(),
            &[
                "trace".as_ref(),
                traced.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
        ),
    )];
    if let Some(python) = &options.xprof_python {
        let input = xprof_copy(&scratch, "xprof-input/run", traced)?;
        group.push(xprof_tool(python, &input, "trace_viewer"));
    }
    let stats = measure_group(&mut group, runs)?;
    print_group("Trace export", &group, &stats);
    if stats.len() == 2 {
        ratio(
            "trace: sglprof / xprof trace_viewer",
            &stats[0],
            &stats[1],
            "<= 0.33x",
            "<= 0.10x",
        );
    }
    let _ = std::fs::remove_file(&out);

    // Last and alone: the Python baseline frees hundreds of MiB on exit,
    // which slows whatever runs right after it.
    if options.python {
        let mut group = vec![bench(
            "python json.load + dicts",
            command(
                "python3",
                &["-c".as_ref(), PYTHON_BASELINE.as_ref(), json.as_os_str()],
            ),
        )];
        let py = measure_group(&mut group, runs)?;
        print_group("Python baseline", &group, &py);
        println!(
            "JSON: sglprof / python                   {:>6.3}x time, {:.3}x memory",
            json_stats[1].wall.0 / py[0].wall.0,
            json_stats[1].rss.0 / py[0].rss.0
        );
    }
    println!("\nmachine: {} (at end)", machine());
    Ok(())
}

/// The report of the 0.25, 0.5, 1 and 2 GB tilings of `base`: time and
/// peak RSS at each size, per GB, and the RSS beyond the mapped file as a
/// share of the file (target at most 10 %).
fn scale_group(me: &Path, base: &Path, scratch: &Path, runs: usize) -> Result<(), Error> {
    const SIZES: [(f64, &str); 4] = [(0.25, "0.25"), (0.5, "0.5"), (1.0, "1"), (2.0, "2")];
    println!("\nscale: {} tiled to 0.25, 0.5, 1 and 2 GB", base.display());
    let files = inputs::ensure_tiles(base, &SIZES.map(|it| it.0))?;
    let mut group: Vec<Bench> = SIZES
        .iter()
        .zip(&files)
        .map(|((_, label), file)| {
            bench(
                format!("report, no full trace, {label} GB"),
                report(me, file, &scratch.join("bench-scale-report")),
            )
        })
        .collect();
    let stats = measure_group(&mut group, runs)?;
    print_group("Scale: sglprof report", &group, &stats);
    for ((bench, st), file) in group.iter().zip(&stats).zip(&files) {
        let bytes = file_size(file)? as f64;
        let file_mib = bytes / (1 << 20) as f64;
        let beyond = st.rss.0 - file_mib;
        println!(
            "{:<40} {:>6.3} s per GB; RSS {:.1} MiB = file {:.1} MiB + {:.1} MiB ({:.1} % of the file; target <= 10 %)",
            bench.name,
            st.wall.0 / (bytes / 1e9),
            st.rss.0,
            file_mib,
            beyond,
            beyond / file_mib * 100.0
        );
    }
    Ok(())
}

/// `cargo xtask report` of one xplane.pb as a user runs it, but without
/// the full-session trace it writes when no JSON holds every event: that
/// is `cargo xtask trace`'s work, which its own group measures against
/// xprof's trace_viewer.
fn report(me: &Path, xplane: &Path, out: &Path) -> Command {
    command(
        me.as_os_str(),
        &[
            "report".as_ref(),
            xplane.as_os_str(),
            "--prefer-xplane".as_ref(),
            "--no-full-trace".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
    )
}

/// A copy of `path` in `<scratch>/<dir>`, for xprof, which writes a cache
/// next to its input.
fn xprof_copy(scratch: &Path, dir: &str, path: &Path) -> Result<PathBuf, Error> {
    let copy = scratch.join(dir);
    std::fs::create_dir_all(&copy).map_err(io(format!("cannot create {}", copy.display())))?;
    let input = copy.join(path.file_name().unwrap_or_default());
    std::fs::copy(path, &input).map_err(io(format!("cannot copy {}", path.display())))?;
    Ok(input)
}

/// One of xprof's tools on `input`, timed by the conversion it prints.
fn xprof_tool(python: &Path, input: &Path, tool: &str) -> Bench {
    let mut cmd = command(
        python.as_os_str(),
        &[
            "-c".as_ref(),
            XPROF_CONVERT.as_ref(),
            input.as_os_str(),
            tool.as_ref(),
        ],
    );
    cmd.stdout(Stdio::piped());
    Bench {
        name: format!("xprof 2.24.2 {tool} (conversion)"),
        cmd,
        inner_time: true,
    }
}

/// The device view of an xplane.pb alone, as the report computes it.
fn device_worker(file: &Path) -> Result<(), Error> {
    for plane in profile_report::device_view(file)? {
        println!(
            "{}: {} ops, busy {:.3} ms, window {:.3} ms, {} steps",
            plane.plane,
            plane.ops.len(),
            trace_model::ps_to_ms(plane.busy_ps as i128),
            trace_model::ps_to_ms(plane.window_ps as i128),
            plane.steps.len()
        );
    }
    Ok(())
}

/// Runs one analysis (`json`, `xplane` or `device`) of `file` in this
/// process and prints a line of its result, so that a group can measure
/// that process alone: the binary calls it for `bench --worker KIND`.
pub fn worker(kind: &str, file: &Path) -> Result<(), Error> {
    if kind == "device" {
        return device_worker(file);
    }
    let analysis = match kind {
        "json" => profile_report::analyse_json(file)?,
        "xplane" => profile_report::analyse_xplane(file)?.0,
        other => return Err(Error::Failed(format!("unknown bench worker `{other}`"))),
    };
    println!(
        "{} events, {} operations, {:.3} ms, top {:?}",
        analysis.total_events,
        analysis.unique_operations(),
        trace_model::ps_to_ms(analysis.traced_time_ps() as i128),
        analysis.ops.first().map(|it| it.name.as_str())
    );
    Ok(())
}
