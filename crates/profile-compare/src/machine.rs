//! What can make a pair of sessions differ without a change in the code:
//! the machine's state during each profiled window (`inputs/machine.json`)
//! and a shift of a whole side of the trace.

use serde::{Deserialize, Serialize};

use crate::compare::{OpComparison, Settings};
use crate::samples::Side;
use crate::stats::FEW_SAMPLES;

/// One side's machine during the profiled window, as the session recorded
/// it (`inputs/machine.json`, `profiled`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    pub cores: usize,
    /// CPU used by processes other than the session's, in cores.
    pub others_cores: f64,
    pub steal_share: f64,
    pub load_avg_1m: f64,
    /// Whether the session found the machine quiet before the window.
    pub quiet_before: bool,
    /// The busiest other processes, as `name cores`.
    pub busiest_others: Vec<String>,
    /// CPU the session itself got, in cores, and its major page faults.
    #[serde(default)]
    pub session_cores: f64,
    #[serde(default)]
    pub session_major_faults: u64,
}

impl MachineState {
    /// The `profiled` window of `inputs/machine.json` (schema
    /// `sglprof.machine/1`); `None` when the document lacks it.
    pub fn from_record(doc: &serde_json::Value) -> Option<MachineState> {
        let window = doc.get("profiled")?;
        let num = |v: &serde_json::Value, key: &str| v.get(key).and_then(|it| it.as_f64());
        Some(MachineState {
            cores: doc.get("cores")?.as_u64()? as usize,
            others_cores: num(window, "others_cores")?,
            steal_share: num(window, "steal_share").unwrap_or(0.0),
            load_avg_1m: window
                .get("load_avg")
                .and_then(|it| it.get(0)?.as_f64())
                .unwrap_or(0.0),
            quiet_before: doc
                .get("quiet_before")
                .and_then(|it| it.as_bool())
                .unwrap_or(false),
            busiest_others: window
                .get("busiest_others")
                .and_then(|it| it.as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some(format!(
                        "{} {:.2}",
                        p.get("name")?.as_str()?,
                        num(p, "cores")?
                    ))
                })
                .collect(),
            session_cores: num(window, "session_cores").unwrap_or(0.0),
            session_major_faults: window
                .get("session_major_faults")
                .and_then(|it| it.as_u64())
                .unwrap_or(0),
        })
    }

    /// Other processes used at least `busy_share` of the cores, or the
    /// hypervisor took a tenth of the CPU time.
    pub fn busy(&self, settings: &Settings) -> bool {
        self.others_cores >= settings.busy_share * self.cores.max(1) as f64
            || self.steal_share >= 0.1
    }

    fn describe(&self) -> String {
        let mut res = format!(
            "other processes used {:.2} of {} cores during the profiled window",
            self.others_cores, self.cores
        );
        if !self.busiest_others.is_empty() {
            res.push_str(&format!(" ({})", self.busiest_others.join(", ")));
        }
        if self.steal_share >= 0.01 {
            res.push_str(&format!(
                ", the hypervisor took {:.0}%",
                self.steal_share * 100.0
            ));
        }
        res
    }
}

/// How much one side of the trace moved as a whole: the median, over the
/// operations with enough occurrences on both sides, of their change in
/// median duration (a geometric median: the median of log ratios).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideShift {
    /// `host` or `device`.
    pub side: String,
    pub change: f64,
    /// How many operations it is the median of.
    pub operations: usize,
    /// How far the operations' changes spread around it: 1.4826 times the
    /// median absolute deviation of their log ratios from the median (a
    /// robust standard deviation, in log units). Between two sessions of
    /// one configuration this is the noise of a single operation.
    #[serde(default)]
    pub spread: f64,
}

/// How many spreads an operation's change must lie from its side's shift
/// to be told from how much one pair of sessions varies.
pub const SPREADS: f64 = 3.0;

impl SideShift {
    /// Whether a change (relative, like `OpComparison::change`) lies more
    /// than [`SPREADS`] spreads from `center`: the side's shift when that
    /// is within the threshold, else no change (a larger shift is a caveat
    /// of its own, and the operations are judged as they are).
    pub fn stands_out(&self, change: f64, center: f64) -> bool {
        if change.is_nan() || change <= -1.0 {
            // No log ratio (a duration gone to zero, or not a number): the
            // other rules decide.
            return true;
        }
        let distance = ((1.0 + change).ln() - center.ln_1p()).abs();
        if !distance.is_finite() {
            return true;
        }
        distance > SPREADS * self.spread
    }

    /// The smallest slowdown and speed-up of one operation this pair can
    /// tell from its own variation, relative to the side's shift.
    pub fn smallest_visible(&self) -> (f64, f64) {
        let d = SPREADS * self.spread;
        (d.exp_m1(), (-d).exp_m1())
    }
}

/// Fewer operations than this on a side say nothing about a shift.
pub const SHIFT_MIN_OPERATIONS: usize = 10;

/// The shift of each side, from the compared rows: operations with at
/// least [`FEW_SAMPLES`] occurrences on both sides and, on the host, a
/// baseline median of at least the host floor.
pub fn side_shifts(rows: &[OpComparison], settings: &Settings) -> Vec<SideShift> {
    let floor_ms = settings.host_floor_ps as f64 / trace_model::PS_PER_MS as f64;
    let mut res = Vec::new();
    for side in [Side::Host, Side::Device] {
        let mut logs: Vec<f64> = rows
            .iter()
            .filter(|r| r.side == side.as_str())
            .filter(|r| {
                r.baseline_count >= FEW_SAMPLES as u64 && r.candidate_count >= FEW_SAMPLES as u64
            })
            .filter(|r| {
                r.baseline_median_ms
                    .is_some_and(|m| m > 0.0 && (side == Side::Device || m >= floor_ms))
            })
            .filter_map(|r| r.change)
            .filter(|c| c.is_finite() && *c > -1.0)
            .map(|c| (1.0 + c).ln())
            .collect();
        if logs.len() < SHIFT_MIN_OPERATIONS {
            continue;
        }
        logs.sort_by(f64::total_cmp);
        let n = logs.len();
        let mid = if n % 2 == 1 {
            logs[n / 2]
        } else {
            (logs[n / 2 - 1] + logs[n / 2]) / 2.0
        };
        let mut deviations: Vec<f64> = logs.iter().map(|x| (x - mid).abs()).collect();
        deviations.sort_by(f64::total_cmp);
        let mad = if n % 2 == 1 {
            deviations[n / 2]
        } else {
            (deviations[n / 2 - 1] + deviations[n / 2]) / 2.0
        };
        res.push(SideShift {
            side: side.as_str().to_owned(),
            change: mid.exp_m1(),
            operations: n,
            spread: 1.4826 * mad,
        });
    }
    res
}

/// The reasons a change between these two sessions cannot be laid on the
/// code: a busy machine on either side, or a whole side of the trace that
/// moved beyond the threshold.
pub fn caveats(
    baseline: Option<&MachineState>,
    candidate: Option<&MachineState>,
    shifts: &[SideShift],
    settings: &Settings,
) -> Vec<String> {
    let mut res = Vec::new();
    for (label, state) in [("baseline", baseline), ("candidate", candidate)] {
        if let Some(state) = state
            && state.busy(settings)
        {
            res.push(format!(
                "the {label} ran on a busy machine: {}",
                state.describe()
            ));
        }
    }
    for shift in shifts {
        if shift.change.abs() > settings.threshold {
            res.push(format!(
                "the {} side as a whole is {:.1}% {} in the candidate (median change over {} operations): \
                 a shift of the whole session, which one pair of sessions cannot tell from a busier or slower machine",
                shift.side,
                shift.change.abs() * 100.0,
                if shift.change > 0.0 { "slower" } else { "faster" },
                shift.operations
            ));
        }
    }
    res
}

/// Compilation inside a profiled window: the programs compiled and the
/// time, from the heaviest runtime operation whose name says `Compile`
/// (such as `PjRtCpuClient::Compile`; the runtime nests several of them,
/// so they are not added up).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Compilation {
    pub operation: String,
    pub count: u64,
    pub total_ms: f64,
}

/// The compilation of one side, `None` when it compiled nothing.
pub fn compilation(ops: &[crate::OpSamples]) -> Option<Compilation> {
    ops.iter()
        .filter(|op| trace_analysis::is_compilation(&op.name))
        .map(|op| Compilation {
            operation: op.name.clone(),
            count: op.durations.len() as u64,
            total_ms: op.durations.iter().map(|&d| d as f64).sum::<f64>()
                / trace_model::PS_PER_MS as f64,
        })
        .max_by(|a, b| a.total_ms.total_cmp(&b.total_ms))
}

/// A caveat when the two sides spent different time compiling inside the
/// window, by at least `min_share` of the baseline's traced time: which
/// batch shapes concurrent requests form depends on their timing, and a
/// shape the warmup did not meet is compiled inside the profile, in the
/// scheduler's own path.
pub fn compilation_caveat(
    baseline: Option<&Compilation>,
    candidate: Option<&Compilation>,
    traced_ms: f64,
    settings: &Settings,
) -> Option<String> {
    let ms = |c: Option<&Compilation>| c.map_or(0.0, |it| it.total_ms);
    let count = |c: Option<&Compilation>| c.map_or(0, |it| it.count);
    if (ms(baseline) - ms(candidate)).abs() < settings.min_share * traced_ms {
        return None;
    }
    Some(format!(
        "the sessions compiled different amounts inside the profiled window (baseline {} programs in {:.0} ms, candidate {} in {:.0} ms): \
         batch shapes the warmup did not compile were met, and the operations that called the compiler carry that time",
        count(baseline),
        ms(baseline),
        count(candidate),
        ms(candidate)
    ))
}
