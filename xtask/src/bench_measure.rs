//! How `cargo xtask bench` runs and times its commands: groups measured
//! A B A B ... after a warm-up, each run a separate process timed on the
//! wall clock with its peak resident memory from `wait4`; median and range
//! printed with the machine's cores and load average.
#![allow(clippy::disallowed_methods)] // The benchmark runs the commands it measures.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, format_err};

/// One command of a comparison group.
pub(crate) struct Bench {
    pub(crate) name: String,
    pub(crate) cmd: Command,
    /// Take the time the command prints (`CONVERT_SECONDS s`) instead of
    /// its wall time.
    pub(crate) inner_time: bool,
}

pub(crate) fn bench(name: impl Into<String>, cmd: Command) -> Bench {
    Bench {
        name: name.into(),
        cmd,
        inner_time: false,
    }
}

/// The machine the figures were taken on, printed with them.
pub(crate) fn machine() -> String {
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

pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|it| it.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// How long to wait before each measured command, so that what the last
/// one left behind (freed memory, written pages) settles first.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// Runs each command of a group once to warm up, then `runs` rounds of
/// every command in turn (A B A B ...), each after a pause.
pub(crate) fn measure_group(group: &mut [Bench], runs: usize) -> anyhow::Result<Vec<Stats>> {
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
pub(crate) struct Stats {
    pub(crate) wall: (f64, f64, f64),
    pub(crate) rss: (f64, f64, f64),
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

pub(crate) fn print_group(title: &str, group: &[Bench], stats: &[Stats]) {
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

pub(crate) fn ratio(what: &str, ours: &Stats, base: &Stats, time_target: &str, mem_target: &str) {
    println!(
        "{what:<40} {:>6.2}x time (spread {:.2}-{:.2}; target {time_target}), {:.2}x memory (target {mem_target})",
        ours.wall.0 / base.wall.0,
        ours.wall.1 / base.wall.2,
        ours.wall.2 / base.wall.1,
        ours.rss.0 / base.rss.0
    );
}

pub(crate) fn command(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) wall_s: f64,
    /// User and system CPU time.
    pub(crate) cpu_s: f64,
    pub(crate) peak_rss_mib: f64,
}

/// Runs a command to completion and reports its wall time (or the time it
/// printed) and peak RSS.
pub(crate) fn measure(bench: &mut Bench) -> anyhow::Result<Sample> {
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
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // ru_maxrss is in KiB on Linux.
    Ok(Sample {
        wall_s,
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
    })
}
