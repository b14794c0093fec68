//! Whole-process measurement, as `cargo xtask bench` does it: each run of a
//! command is a separate process, timed on the wall clock (or by the time
//! it prints itself) with its peak resident memory from `wait4`; commands
//! are compared in groups measured A B A B ... after one warm-up run each,
//! with a pause before every run, and summarised by the median and the
//! range; a single run ([`measure`]) also gives its CPU time. [`machine`] and [`load`] describe the machine the figures were
//! taken on.
//!
//! It is not a statistics library and prints nothing: what a benchmark
//! compares and how it shows the figures is its caller's. Linux only
//! (`wait4`, `/proc`).
#![allow(clippy::disallowed_methods)] // A benchmark runs the commands it measures.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One command of a comparison group.
pub struct Bench {
    pub name: String,
    pub cmd: Command,
    /// Take the time the command prints (`CONVERT_SECONDS s`) instead of
    /// its wall time.
    pub inner_time: bool,
}

/// `cmd`, timed on the wall clock, as `name`.
pub fn bench(name: impl Into<String>, cmd: Command) -> Bench {
    Bench {
        name: name.into(),
        cmd,
        inner_time: false,
    }
}

/// Why a group could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("benchmark command `{name}` failed")]
    Command {
        name: String,
        #[source]
        source: RunError,
    },
}

/// Why one run of a command failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spawn(std::io::Error),
    #[error("wait4 failed")]
    Wait(#[source] std::io::Error),
    #[error("exit status {status}: {last_line}")]
    Exit { status: i32, last_line: String },
    #[error("the command printed no CONVERT_SECONDS line")]
    NoInnerTime,
}

/// The machine the figures were taken on: cores, memory and load average.
pub fn machine() -> String {
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

/// The 1, 5 and 15 minute load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|it| it.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// How long to wait before each measured command, so that what the last
/// one left behind (freed memory, written pages) settles first.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Runs each command of a group once to warm up, then `runs` rounds of
/// every command in turn (A B A B ...), each after a pause.
pub fn measure_group(group: &mut [Bench], runs: usize) -> Result<Vec<Stats>, Error> {
    let failed = |bench: &Bench| {
        let name = bench.name.clone();
        move |source| Error::Command { name, source }
    };
    for bench in group.iter_mut() {
        std::thread::sleep(SETTLE);
        measure(bench).map_err(failed(bench))?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); group.len()];
    for _ in 0..runs {
        for (idx, bench) in group.iter_mut().enumerate() {
            std::thread::sleep(SETTLE);
            let sample = measure(bench).map_err(failed(bench))?;
            samples[idx].push(sample);
        }
    }
    Ok(samples.iter().map(|it| Stats::of(it)).collect())
}

/// Median, smallest and largest of a command's runs: wall seconds and peak
/// RSS in MiB.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub wall: (f64, f64, f64),
    pub rss: (f64, f64, f64),
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

/// `program args...` with no input, its output dropped and its errors kept
/// (the last line is shown when it fails).
pub fn command(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// One run of a command.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Wall seconds, or the seconds the command printed.
    pub wall_s: f64,
    /// User and system CPU time.
    pub cpu_s: f64,
    pub peak_rss_mib: f64,
}

/// Runs a command to completion and reports its wall time (or the time it
/// printed), its CPU time and its peak RSS.
pub fn measure(bench: &mut Bench) -> Result<Sample, RunError> {
    let start = Instant::now();
    let mut child = bench.cmd.spawn().map_err(RunError::Spawn)?;
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
        return Err(RunError::Wait(std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(RunError::Exit {
            status,
            last_line: stderr.lines().last().unwrap_or("").to_owned(),
        });
    }
    let wall_s = if bench.inner_time {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("CONVERT_SECONDS "))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or(RunError::NoInnerTime)?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_measured_and_a_failure_named() {
        let sh = |script: &str| command("sh", &["-c".as_ref(), script.as_ref()]);
        let mut group = vec![bench("true", sh("true")), bench("sleep", sh("sleep 0.2"))];
        let stats = measure_group(&mut group, 3).unwrap();
        assert!(stats[1].wall.1 >= 0.2, "{stats:?}");
        assert!(stats[0].wall.0 < stats[1].wall.0, "{stats:?}");
        assert!(stats[1].rss.0 > 0.0, "{stats:?}");
        let mut busy = bench(
            "busy",
            sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"),
        );
        let sample = measure(&mut busy).unwrap();
        assert!(
            sample.cpu_s > 0.0 && sample.cpu_s <= sample.wall_s + 0.01,
            "{sample:?}"
        );
        let (median, low, high) = stats[1].wall;
        assert!(low <= median && median <= high);
        let mut printed = sh("echo CONVERT_SECONDS 1.5");
        printed.stdout(Stdio::piped());
        let mut group = vec![Bench {
            name: "inner".into(),
            cmd: printed,
            inner_time: true,
        }];
        assert_eq!(measure_group(&mut group, 1).unwrap()[0].wall.0, 1.5);
        let mut group = vec![bench("fails", sh("echo bad >&2; exit 3"))];
        let err = measure_group(&mut group, 1).unwrap_err();
        let Error::Command { name, source } = &err;
        assert_eq!(name, "fails");
        assert_eq!(source.to_string(), "exit status 768: bad");
    }
}
