//! The state of this machine around the profiled window, for servers that
//! run here: how busy the CPUs were, and how much of that was other
//! processes (neither this process nor its descendants, which are the
//! server and its helpers). A comparison of two runs needs it to tell a
//! slower build from a busier machine (`docs/metrics.md`, Comparison).
//!
//! Everything is read from Linux's `/proc`; elsewhere [`Snapshot::take`]
//! gives `None` and nothing is recorded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The value of [`MachineRecord::schema`].
pub const MACHINE_SCHEMA: &str = "sglprof.machine/1";

/// Other processes using at least this share of the machine's cores count
/// as load (0.4 of a core on a 2-core machine).
pub const BUSY_OTHERS_SHARE: f64 = 0.2;

/// One reading of the CPU counters and of every process's CPU time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    at: Instant,
    /// `/proc/stat`'s first line: all CPUs, in clock ticks.
    busy: u64,
    steal: u64,
    total: u64,
    cores: usize,
    load_avg: [f64; 3],
    /// `/proc/pressure/cpu`, `some total=` in microseconds.
    pressure_us: Option<u64>,
    /// pid -> (parent pid, name, user + system ticks, major faults).
    procs: HashMap<u32, ProcStat>,
}

/// (parent pid, name, user + system ticks, major page faults) of a process.
type ProcStat = (u32, String, u64, u64);

/// Processes of one name, other than this session's, that used the CPU
/// during a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusyProcess {
    /// One of them.
    pub pid: u32,
    /// The kernel's short name of the processes (`/proc/<pid>/comm`), with
    /// ` xN` when N processes have it.
    pub name: String,
    /// Average CPU use over the window, in cores.
    pub cores: f64,
}

/// What the machine did between two snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineWindow {
    pub seconds: f64,
    /// Share of all CPU time that was not idle (steal included).
    pub busy_share: f64,
    /// Share of all CPU time the hypervisor gave to other guests.
    pub steal_share: f64,
    /// CPU used by processes outside this session, in cores.
    pub others_cores: f64,
    /// Share of the window in which some runnable task waited for a CPU
    /// (Linux pressure stall information; the server's own threads count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure_share: Option<f64>,
    /// CPU used by this session (sglprof, the server and their children),
    /// in cores, and their major page faults (reads from disk: a page
    /// cache emptied by a build shows here).
    #[serde(default)]
    pub session_cores: f64,
    #[serde(default)]
    pub session_major_faults: u64,
    /// The 1, 5 and 15 minute load averages at the end of the window.
    pub load_avg: [f64; 3],
    /// The busiest other processes by name, at most five, each at least
    /// 0.05 core.
    pub busiest_others: Vec<BusyProcess>,
}

impl MachineWindow {
    /// Other processes used at least [`BUSY_OTHERS_SHARE`] of the cores,
    /// or the hypervisor took at least a tenth of the CPU time.
    pub fn is_busy(&self, cores: usize) -> bool {
        self.others_cores >= BUSY_OTHERS_SHARE * cores.max(1) as f64 || self.steal_share >= 0.1
    }

    /// One line for the session's progress output.
    pub fn describe(&self, cores: usize) -> String {
        let names: Vec<String> = self
            .busiest_others
            .iter()
            .map(|it| format!("{} {:.2}", it.name, it.cores))
            .collect();
        format!(
            "other processes used {:.2} of {cores} cores ({}), steal {:.1}%, load average {:.2}",
            self.others_cores,
            if names.is_empty() {
                "none busy".to_owned()
            } else {
                names.join(", ")
            },
            self.steal_share * 100.0,
            self.load_avg[0]
        )
    }
}

/// `inputs/machine.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub schema: String,
    pub cores: usize,
    /// Seconds spent waiting for the machine to calm down before the
    /// profiled window, and whether it did.
    pub quiet_wait_s: f64,
    pub quiet_before: bool,
    /// The last second before the profiled window.
    pub before: Option<MachineWindow>,
    /// The profiled window (from `/start_profile` to the last answer).
    pub profiled: MachineWindow,
    /// `profiled.is_busy(cores)`, as the session judged it.
    pub busy: bool,
}

impl Snapshot {
    /// Reads `/proc`; `None` when it is not there (not Linux) or unreadable.
    pub fn take() -> Option<Snapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (busy, steal, total) = cpu_line(stat.lines().next()?)?;
        let cores = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count()
            .max(1);
        let load_avg = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| {
                let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
                Some([it.next()??, it.next()??, it.next()??])
            })
            .unwrap_or_default();
        let pressure_us = std::fs::read_to_string("/proc/pressure/cpu")
            .ok()
            .and_then(|text| pressure_total(&text));
        let mut procs = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may end between the listing and the read.
            if let Some(proc) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|text| proc_stat(&text))
            {
                procs.insert(pid, proc);
            }
        }
        Some(Snapshot {
            at: Instant::now(),
            busy,
            steal,
            total,
            cores,
            load_avg,
            pressure_us,
            procs,
        })
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The window from `self` to `later`, with "this session" being the
    /// process `me` and its descendants (as `later` sees them).
    pub fn window_to(&self, later: &Snapshot, me: u32) -> MachineWindow {
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        // Clock ticks per core over the window.
        let per_core = total / self.cores as f64;
        let ours = descendants(&later.procs, me);
        // Per name: a build shows as many short `rustc`s, which together
        // are the load.
        let mut by_name: HashMap<&str, (u32, u32, u64)> = HashMap::new();
        let mut others_ticks = 0u64;
        let (mut own_ticks, mut own_faults) = (0u64, 0u64);
        for (pid, (_, name, ticks, faults)) in &later.procs {
            if ours.contains(pid) {
                let before = self.procs.get(pid);
                own_ticks += ticks.saturating_sub(before.map_or(0, |it| it.2));
                own_faults += faults.saturating_sub(before.map_or(0, |it| it.3));
                continue;
            }
            let before = self.procs.get(pid).map_or(0, |it| it.2);
            let used = ticks.saturating_sub(before);
            others_ticks += used;
            let entry = by_name.entry(name).or_insert((*pid, 0, 0));
            entry.1 += 1;
            entry.2 += used;
        }
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        let mut others: Vec<BusyProcess> = by_name
            .into_iter()
            .map(|(name, (pid, count, used))| BusyProcess {
                pid,
                name: if count > 1 {
                    format!("{name} x{count}")
                } else {
                    name.to_owned()
                },
                cores: round(used as f64 / per_core),
            })
            .filter(|it| it.cores >= 0.05)
            .collect();
        others.sort_by(|a, b| {
            b.cores
                .total_cmp(&a.cores)
                .then_with(|| a.name.cmp(&b.name))
        });
        others.truncate(5);
        let cpu_pressure_share = match (self.pressure_us, later.pressure_us) {
            (Some(a), Some(b)) if seconds > 0.0 => {
                Some(round((b.saturating_sub(a) as f64 / 1e6 / seconds).min(1.0)))
            }
            _ => None,
        };
        MachineWindow {
            seconds: round(seconds),
            busy_share: round(later.busy.saturating_sub(self.busy) as f64 / total),
            steal_share: round(later.steal.saturating_sub(self.steal) as f64 / total),
            others_cores: round(others_ticks as f64 / per_core),
            session_cores: round(own_ticks as f64 / per_core),
            session_major_faults: own_faults,
            cpu_pressure_share,
            load_avg: later.load_avg,
            busiest_others: others,
        }
    }
}

/// Waits until processes other than `me` and its descendants use under
/// [`BUSY_OTHERS_SHARE`] of the cores over one second, for at most `limit`.
/// Returns the time waited, whether the machine got quiet, and the last
/// second's window; `None` without `/proc`.
pub async fn wait_for_quiet(me: u32, limit: Duration) -> Option<(Duration, bool, MachineWindow)> {
    let started = Instant::now();
    let mut prev = Snapshot::take()?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = Snapshot::take()?;
        let window = prev.window_to(&now, me);
        if !window.is_busy(now.cores) {
            return Some((started.elapsed(), true, window));
        }
        if started.elapsed() >= limit {
            return Some((started.elapsed(), false, window));
        }
        prev = now;
    }
}

/// `me` and every process whose parent chain leads to it.
fn descendants(procs: &HashMap<u32, ProcStat>, me: u32) -> std::collections::HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, (ppid, ..)) in procs {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut res = std::collections::HashSet::from([me]);
    let mut stack = vec![me];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if res.insert(child) {
                stack.push(child);
            }
        }
    }
    res
}

/// The aggregate `cpu` line of `/proc/stat`: (busy, steal, total) ticks.
/// Guest time is already inside user time and is not added again.
fn cpu_line(line: &str) -> Option<(u64, u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some((total - idle, v[7], total))
}

/// `some ... total=N` of a pressure file.
fn pressure_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()
}

/// `/proc/<pid>/stat`: (parent pid, name, utime + stime, major faults). The
/// name is in parentheses and may hold spaces and parentheses itself.
fn proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... majflt(9) ... utime(11) stime(12).
    let ppid = rest.get(1)?.parse().ok()?;
    let majflt: u64 = rest.get(9)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((ppid, name, utime + stime, majflt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_lines() {
        assert_eq!(
            cpu_line("cpu  100 5 20 800 10 1 2 30 7 0"),
            Some((158, 30, 968))
        );
        assert_eq!(cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        let text = "some avg10=1.00 avg60=2.00 avg300=3.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(pressure_total(text), Some(123_456));
        let stat =
            "4242 (tokio (w) 1) S 17 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(
            proc_stat(stat),
            Some((17, "tokio (w) 1".to_owned(), 300, 0))
        );
    }

    fn snap(at: Instant, busy: u64, total: u64, procs: &[(u32, u32, &str, u64)]) -> Snapshot {
        Snapshot {
            at,
            busy,
            steal: 0,
            total,
            cores: 2,
            load_avg: [1.0, 1.0, 1.0],
            pressure_us: Some(0),
            procs: procs
                .iter()
                .map(|&(pid, ppid, name, ticks)| (pid, (ppid, name.to_owned(), ticks, ticks / 10)))
                .collect(),
        }
    }

    #[test]
    fn others_exclude_this_process_and_its_descendants() {
        let t0 = Instant::now();
        // Two cores, 100 ticks per core per second, one second.
        let a = snap(
            t0,
            0,
            0,
            &[
                (10, 1, "me", 0),
                (11, 10, "server", 0),
                (12, 11, "scheduler", 0),
                (20, 1, "rustc", 0),
            ],
        );
        let b = snap(
            t0 + Duration::from_secs(1),
            190,
            200,
            &[
                (10, 1, "me", 5),
                (11, 10, "server", 40),
                (12, 11, "scheduler", 90),
                (20, 1, "rustc", 55),
                (21, 1, "cc", 3),
            ],
        );
        let w = a.window_to(&b, 10);
        assert_eq!(w.others_cores, 0.58);
        assert_eq!(w.busy_share, 0.95);
        assert_eq!((w.session_cores, w.session_major_faults), (1.35, 13));
        assert_eq!(
            w.busiest_others,
            vec![BusyProcess {
                pid: 20,
                name: "rustc".into(),
                cores: 0.55
            }]
        );
        assert!(w.is_busy(2));
        assert!(w.describe(2).contains("0.58 of 2 cores (rustc 0.55)"));
        let quiet = a.window_to(
            &snap(
                t0 + Duration::from_secs(1),
                100,
                200,
                &[(10, 1, "me", 5), (20, 1, "rustc", 10)],
            ),
            10,
        );
        assert!(!quiet.is_busy(2), "{quiet:?}");
    }

    #[test]
    fn a_real_snapshot_sees_this_process() {
        let Some(a) = Snapshot::take() else { return };
        assert!(a.procs.contains_key(&std::process::id()));
        let b = Snapshot::take().unwrap();
        let w = a.window_to(&b, std::process::id());
        assert!(w.others_cores >= 0.0 && w.busy_share <= 1.0);
    }
}
