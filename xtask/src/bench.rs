//! `cargo xtask bench`: the trace readers against their baselines, on a real
//! 1,000,000-event trace pair, printed as ratios measured in the same run.
//!
//! Each measurement is a separate process, timed on the wall clock and
//! asked for its peak resident memory through `wait4`:
//! - `gzip -dc trace.json.gz > /dev/null`, the floor for any reader of the
//!   compressed JSON;
//! - a plain Python `json.load` plus dict aggregation of the same numbers;
//! - our JSON analysis (`bench --worker json`);
//! - `xprof-rs aggregate_xplane_events` (PyPI `xprof-rs`, installed once
//!   into the sglprof cache);
//! - our XPlane analysis (`bench --worker xplane`).
//!
//! Every command runs `--runs` times, alternating, and the median wall time
//! and the largest peak memory are reported.

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
    /// How many times to run each command.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
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

    println!(
        "trace.json.gz: {} ({} bytes)",
        json.display(),
        file_size(&json)?
    );
    println!(
        "xplane.pb:     {} ({} bytes)",
        xplane.display(),
        file_size(&xplane)?
    );
    println!("runs per command: {runs} (median wall time, largest peak RSS)\n");

    let commands: Vec<(&str, Command)> = vec![
        (
            "gzip -dc (floor)",
            command("gzip", &["-dc".as_ref(), json.as_os_str()]),
        ),
        (
            "python json.load + dicts",
            command(
                "python3",
                &["-c".as_ref(), PYTHON_BASELINE.as_ref(), json.as_os_str()],
            ),
        ),
        (
            "sglprof JSON analysis",
            command(
                me.as_os_str(),
                &[
                    "bench".as_ref(),
                    "--worker".as_ref(),
                    "json".as_ref(),
                    "--file".as_ref(),
                    json.as_os_str(),
                ],
            ),
        ),
        (
            "xprof-rs aggregate_xplane_events",
            command(
                xprof_rs.as_os_str(),
                &["aggregate_xplane_events".as_ref(), xplane.as_os_str()],
            ),
        ),
        (
            "sglprof XPlane analysis",
            command(
                me.as_os_str(),
                &[
                    "bench".as_ref(),
                    "--worker".as_ref(),
                    "xplane".as_ref(),
                    "--file".as_ref(),
                    xplane.as_os_str(),
                ],
            ),
        ),
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); commands.len()];
    let mut commands = commands;
    for _ in 0..runs {
        for (idx, (name, cmd)) in commands.iter_mut().enumerate() {
            let sample =
                measure(cmd).with_context(|| format!("benchmark command `{name}` failed"))?;
            samples[idx].push(sample);
        }
    }
    let results: Vec<(String, f64, f64)> = commands
        .iter()
        .zip(&samples)
        .map(|((name, _), runs)| {
            let mut walls: Vec<f64> = runs.iter().map(|it| it.wall_s).collect();
            walls.sort_by(f64::total_cmp);
            let rss = runs.iter().map(|it| it.peak_rss_mib).fold(0.0, f64::max);
            (name.to_string(), walls[walls.len() / 2], rss)
        })
        .collect();
    println!(
        "{:<34} {:>10} {:>14}",
        "command", "wall (s)", "peak RSS (MiB)"
    );
    for (name, wall, rss) in &results {
        println!("{name:<34} {wall:>10.3} {rss:>14.1}");
    }
    let [gzip, python, json_ours, xprof, xplane_ours] = &results[..] else {
        unreachable!()
    };
    println!();
    println!(
        "JSON:   sglprof / gzip -dc        = {:.2}x time (target <= 1.20x)",
        json_ours.1 / gzip.1
    );
    println!(
        "JSON:   sglprof / python          = {:.3}x time, {:.2}x memory",
        json_ours.1 / python.1,
        json_ours.2 / python.2
    );
    println!(
        "JSON:   sglprof peak RSS          = {:.1} MiB (target < 64 MiB)",
        json_ours.2
    );
    println!(
        "XPlane: sglprof / xprof-rs        = {:.2}x time (target <= 1.00x), {:.2}x memory (target <= 0.50x)",
        xplane_ours.1 / xprof.1,
        xplane_ours.2 / xprof.2
    );
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

/// Runs `cmd` to completion and reports its wall time and peak RSS.
fn measure(cmd: &mut Command) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    // Drain stderr while the child runs: a full pipe would block it.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; pid is our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let res = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall_s = start.elapsed().as_secs_f64();
    let stderr = stderr.and_then(|it| it.join().ok()).unwrap_or_default();
    if res != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "exit status {status}: {}",
            stderr.lines().last().unwrap_or("")
        );
    }
    // ru_maxrss is in KiB on Linux.
    Ok(Sample {
        wall_s,
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}
