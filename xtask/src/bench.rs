//! `cargo xtask bench`: the trace readers and the trace export against
//! their baselines, printed as ratios measured in the same run.
//!
//! Each measurement is a separate process, timed on the wall clock and
//! asked for its peak resident memory through `wait4`. Commands are
//! compared in small groups: gzip's floor with our JSON analysis;
//! `xprof-rs aggregate_xplane_events` (PyPI `xprof-rs`, installed once into
//! the sglprof cache) with our XPlane analysis, on each xplane.pb given;
//! `cargo xtask trace` with xprof's `trace_viewer` conversion when a Python
//! with xprof is given (its conversion time only); the plain-Python JSON
//! baseline last and alone, as it leaves hundreds of MiB to free behind it.
//! In each group every command runs once to warm up, then `--runs` rounds
//! A B A B ..., each run after a pause; the median and the range are
//! printed with the machine's cores and load average.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, format_err};
use trace_model::locate;
use xshell::{Shell, cmd};

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
    /// Also run the plain-Python JSON baseline (last, on its own).
    #[arg(long)]
    pub python: bool,
    /// Internal: run one analysis in this process (`json` or `xplane`).
    #[arg(long, hide = true, requires = "file")]
    pub worker: Option<String>,
    #[arg(long, hide = true)]
    pub file: Option<PathBuf>,
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

/// One command of a comparison group.
struct Bench {
    name: String,
    cmd: Command,
    /// Take the time the command prints (`CONVERT_SECONDS s`) instead of
    /// its wall time.
    inner_time: bool,
}

fn bench(name: impl Into<String>, cmd: Command) -> Bench {
    Bench {
        name: name.into(),
        cmd,
        inner_time: false,
    }
}

/// The machine the figures were taken on, printed with them.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |it| it.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|it| it.starts_with("MemTotal:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "? GiB".to_owned());
    format!("{cores} cores, {mem}, load average {}", load())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|it| it.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// How long to wait before each measured command, so that what the last
/// one left behind (freed memory, written pages) settles first.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// Runs each command of a group once to warm up, then `runs` rounds of
/// every command in turn (A B A B ...), each after a pause.
fn measure_group(group: &mut [Bench], runs: usize) -> anyhow::Result<Vec<Stats>> {
    for bench in group.iter_mut() {
        std::thread::sleep(SETTLE);
        measure(bench).with_context(|| format!("benchmark command `{}` failed", bench.name))?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
    for _ in 0..runs {
        for (idx, bench) in group.iter_mut().enumerate() {
            std::thread::sleep(SETTLE);
            let sample = measure(bench)
                .with_context(|| format!("benchmark command `{}` failed", bench.name))?;
            samples[idx].push(sample);
        }
    }
    Ok(samples.iter().map(|it| Stats::of(it)).collect())
}

/// Median, smallest and largest of a command's runs.
#[derive(Clone, Copy)]
struct Stats {
    wall: (f64, f64, f64),
    rss: (f64, f64, f64),
}

impl Stats {
    fn of(samples: &[Sample]) -> Stats {
        let spread = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            (
                values[values.len() / 2],
                values[0],
                values[values.len() - 1],
            )
        };
        Stats {
            wall: spread(samples.iter().map(|it| it.wall_s).collect()),
            rss: spread(samples.iter().map(|it| it.peak_rss_mib).collect()),
        }
    }
}

fn print_group(title: &str, group: &[Bench], stats: &[Stats]) {
    println!("\n{title}  [load average after: {}]", load());
    println!(
        "{:<40} {:>22} {:>26}",
        "command", "wall s: median (min-max)", "peak RSS MiB: median (min-max)"
    );
    for (bench, st) in group.iter().zip(stats) {
        println!(
            "{:<40} {:>8.3} ({:.3}-{:.3}) {:>10.1} ({:.1}-{:.1})",
            bench.name, st.wall.0, st.wall.1, st.wall.2, st.rss.0, st.rss.1, st.rss.2
        );
    }
}

fn ratio(what: &str, ours: &Stats, base: &Stats, time_target: &str, mem_target: &str) {
    println!(
        "{what:<40} {:>6.2}x time (spread {:.2}-{:.2}; target {time_target}), {:.2}x memory (target {mem_target})",
        ours.wall.0 / base.wall.0,
        ours.wall.1 / base.wall.2,
        ours.wall.2 / base.wall.1,
        ours.rss.0 / base.rss.0
    );
}

fn worker(me: &Path, kind: &str, file: &Path) -> Command {
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

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(worker) = &args.worker {
        return run_worker(worker, args.file.as_deref().expect("clap requires --file"));
    }
    let me = std::env::current_exe().context("cannot find the xtask binary")?;
    let dir = match args.trace_dir {
        Some(dir) => dir,
        None => default_trace_dir(&me)?,
    };
    let (json, xplane) = find_pair(&dir)?;
    let runs = args.runs.max(1);
    let sh = Shell::new()?;
    let xprof_rs = ensure_xprof_rs(&sh)?;
    let scratch = crate::local_env::cache_root()?.join("bench-scratch");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;

    println!("machine: {} (at start)", machine());
    println!(
        "trace.json.gz: {} ({} bytes)",
        json.display(),
        file_size(&json)?
    );
    let mut xplanes = vec![xplane];
    xplanes.extend(args.xplane.iter().cloned());
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
        bench("sglprof JSON analysis", worker(&me, "json", &json)),
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
            bench("sglprof XPlane analysis", worker(&me, "xplane", path)),
        ];
        let stats = measure_group(&mut group, runs)?;
        print_group(&format!("XPlane: {}", path.display()), &group, &stats);
        ratio(
            "XPlane: sglprof / xprof-rs",
            &stats[1],
            &stats[0],
            "<= 0.50x",
            "<= 0.50x",
        );
    }

    // The trace conversion, against xprof's trace_viewer when a Python with
    // xprof 2.24.2 is given.
    let out = scratch.join("bench-trace.json.gz");
    let mut group = vec![bench(
        "sglprof trace -> .json.gz",
        command(
            me.as_os_str(),
            &[
                "trace".as_ref(),
                xplanes[0].as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
        ),
    )];
    if let Some(python) = &args.xprof_python {
        let copy = scratch.join("xprof-input/run");
        std::fs::create_dir_all(&copy)?;
        let input = copy.join(xplanes[0].file_name().unwrap_or_default());
        std::fs::copy(&xplanes[0], &input)
            .with_context(|| format!("cannot copy {}", xplanes[0].display()))?;
        let mut cmd = command(
            python.as_os_str(),
            &[
                "-c".as_ref(),
                XPROF_CONVERT.as_ref(),
                input.as_os_str(),
                "trace_viewer".as_ref(),
            ],
        );
        cmd.stdout(Stdio::piped());
        group.push(Bench {
            name: "xprof 2.24.2 trace_viewer (conversion)".to_owned(),
            cmd,
            inner_time: true,
        });
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
    if args.python {
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

/// Runs one analysis in this process and prints a line of its result, so
/// the parent can measure this process alone.
fn run_worker(kind: &str, file: &Path) -> anyhow::Result<()> {
    let analysis = match kind {
        "json" => profile_report::analyse_json(file)?,
        "xplane" => profile_report::analyse_xplane(file)?.0,
        other => bail!("unknown bench worker `{other}`"),
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

/// `<cache>/bench`: a trace pair captured once from the local CPU server
/// with a workload long enough to reach JAX's 1,000,000-event JSON cap
/// (12 /generate requests at concurrency 4, stopped with /stop_profile).
fn default_trace_dir(me: &Path) -> anyhow::Result<PathBuf> {
    let cache = crate::local_env::cache_root()?;
    let dir = cache.join("bench");
    if dir.join("READY").is_file() {
        return Ok(dir);
    }
    eprintln!(
        "capturing the benchmark trace once with `cargo xtask profile --local` into {}",
        dir.display()
    );
    let run = cache.join("bench-run");
    let _ = std::fs::remove_dir_all(&run);
    let status = Command::new(me)
        .args([
            "profile",
            "--local",
            "--requests",
            "12",
            "--concurrency",
            "4",
            "--out",
        ])
        .arg(&run)
        .status()
        .context("cannot run `xtask profile --local`")?;
    if !status.success() {
        bail!("capturing the benchmark trace failed ({status})");
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(run.join("artifacts/jax-profile"), &dir)
        .with_context(|| format!("cannot move the captured profile to {}", dir.display()))?;
    std::fs::write(dir.join("READY"), b"").context("cannot mark the benchmark trace complete")?;
    Ok(dir)
}

fn find_pair(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !dir.is_dir() {
        bail!(
            "no benchmark trace at {}: give a JAX profile folder with --trace-dir, or leave it out to capture one",
            dir.display()
        );
    }
    let files = profile_report::list_files(dir)?;
    locate(&files)
        .into_iter()
        .flat_map(|run| run.hosts)
        .find_map(|host| Some((host.trace_json?, host.xplane?)))
        .ok_or_else(|| format_err!("{}: no trace.json.gz with its xplane.pb", dir.display()))
}

fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// Installs `xprof-rs` from PyPI into the sglprof cache once.
fn ensure_xprof_rs(sh: &Shell) -> anyhow::Result<PathBuf> {
    let venv = crate::local_env::cache_root()?.join("bench-tools");
    let bin = venv.join("bin/xprof-rs");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("installing xprof-rs into {} (once)", venv.display());
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .context("cannot create the bench-tools venv")?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install -q xprof-rs==0.1.3")
        .run()
        .context("cannot install xprof-rs from PyPI")?;
    Ok(bin)
}

fn command(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[derive(Clone, Copy)]
struct Sample {
    wall_s: f64,
    peak_rss_mib: f64,
}

/// Runs a command to completion and reports its wall time (or the time it
/// printed) and peak RSS.
fn measure(bench: &mut Bench) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let mut child = bench.cmd.spawn()?;
    // Drain the pipes while the child runs: a full pipe would block it.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        pipe.map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
                text
            })
        })
    };
    let stderr = drain(child.stderr.take().map(|it| Box::new(it) as _));
    let stdout = drain(child.stdout.take().map(|it| Box::new(it) as _));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let res = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = start.elapsed().as_secs_f64();
    let stderr = stderr.and_then(|it| it.join().ok()).unwrap_or_default();
    let stdout = stdout.and_then(|it| it.join().ok()).unwrap_or_default();
    if res != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "exit status {status}: {}",
            stderr.lines().last().unwrap_or("")
        );
    }
    let wall_s = if bench.inner_time {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("CONVERT_SECONDS "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format_err!("the command printed no CONVERT_SECONDS line"))?
    } else {
        wall_s
    };
    // ru_maxrss is in KiB on Linux.
    Ok(Sample {
        wall_s,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}
