//! The verdict rules and the `compare.json` model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use trace_model::{PS_PER_MS, Ps};

use crate::latency::{Latencies, LatencyComparison, compare_latencies};
use crate::machine::{
    Compilation, MachineState, SideShift, caveats, compilation, compilation_caveat, side_shifts,
};
use crate::samples::{OpSamples, Side};
use crate::stats::{self, Bootstrap, FEW_SAMPLES};

/// The value of [`Comparison::schema`].
pub const COMPARE_SCHEMA: &str = "sglprof.compare/1";

/// Everything compared on one side, gathered by the caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Where it came from (a path or a `gs://` address), for the report.
    pub source: String,
    pub ops: Vec<OpSamples>,
    /// The trace's traced time (latest end minus earliest start),
    /// picoseconds: the yardstick of [`Settings::min_share`].
    pub traced_ps: i64,
    /// Session numbers that have one value per side (device step time,
    /// latency percentiles, throughput, device categories), by name. They
    /// are shown next to each other but not tested (see [`SessionRow`]).
    pub session: BTreeMap<String, f64>,
    /// What this side lacks, said in the report (such as "no summary.json").
    pub missing: Vec<String>,
    /// The machine during the profiled window, when the session recorded it.
    pub machine: Option<MachineState>,
    /// Per-request latencies of the profiled workload, when recorded.
    pub latencies: Option<Latencies>,
    /// The machine the session ran on, as the caller can tell machines
    /// apart (host name, hardware); two different ones are a caveat.
    pub host: Option<String>,
}

/// How a comparison decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Smallest relative change in median that counts, e.g. 0.05.
    pub threshold: f64,
    /// False discovery rate for the Benjamini-Hochberg adjustment.
    pub alpha: f64,
    /// Smallest change in an operation's total time, as a share of the
    /// baseline's traced time, that can make it `slower` or `faster`.
    pub min_share: f64,
    /// Smallest change in median duration of a host operation, picoseconds:
    /// host events carry the tracer's own overhead, about a microsecond.
    pub host_floor_ps: i64,
    /// Other processes using this share of a side's cores make it busy.
    pub busy_share: f64,
    pub bootstrap: Bootstrap,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            threshold: 0.05,
            alpha: 0.05,
            min_share: 0.01,
            host_floor_ps: 1_000_000,
            busy_share: 0.2,
            bootstrap: Bootstrap::default(),
        }
    }
}

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regression,
    NoChange,
    Improvement,
    /// Changes were seen, but a busy machine or a shift of a whole side of
    /// the trace explains them as well as the code does.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regression => "regression",
            Verdict::NoChange => "no_change",
            Verdict::Improvement => "improvement",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The verdict on one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpVerdict {
    Slower,
    Faster,
    Same,
    Added,
    Removed,
}

impl OpVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            OpVerdict::Slower => "slower",
            OpVerdict::Faster => "faster",
            OpVerdict::Same => "same",
            OpVerdict::Added => "added",
            OpVerdict::Removed => "removed",
        }
    }
}

/// Bootstrap intervals of the relative changes, `[low, high]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub median: Option<[f64; 2]>,
    pub total: Option<[f64; 2]>,
}

/// One row of `operations` in `compare.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpComparison {
    pub name: String,
    /// `host` or `device`.
    pub side: String,
    pub verdict: OpVerdict,
    pub baseline_total_ms: f64,
    pub candidate_total_ms: f64,
    pub baseline_count: u64,
    pub candidate_count: u64,
    pub baseline_median_ms: Option<f64>,
    pub candidate_median_ms: Option<f64>,
    /// Relative change of the median duration (candidate / baseline - 1),
    /// the number the threshold applies to. `None` for added and removed.
    pub change: Option<f64>,
    /// Relative change of the total time.
    pub total_change: Option<f64>,
    /// Two-sided Mann-Whitney U p-value, before adjustment.
    pub p_value: Option<f64>,
    /// Benjamini-Hochberg adjusted p-value (over every operation on both
    /// sides).
    pub p_adjusted: Option<f64>,
    /// `exact` or `asymptotic`.
    pub method: Option<String>,
    pub ci: Interval,
    /// Fewer than nine occurrences on a side: the test has little power.
    pub few_samples: bool,
    /// Why a significant change beyond the threshold was not flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_flagged: Option<String>,
}

/// A session number with one value per side: shown, not tested.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub metric: String,
    pub baseline: f64,
    pub candidate: f64,
    pub change: f64,
}

/// `compare.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema: String,
    pub verdict: Verdict,
    pub baseline: String,
    pub candidate: String,
    pub threshold: f64,
    pub alpha: f64,
    pub min_share: f64,
    pub host_floor_ms: f64,
    /// `benjamini-hochberg`.
    pub correction: String,
    pub bootstrap_resamples: usize,
    pub bootstrap_seed: u64,
    pub confidence_pct: u32,
    /// Heaviest change first: by |candidate total - baseline total|.
    pub operations: Vec<OpComparison>,
    pub session: Vec<SessionRow>,
    /// Session numbers only one side has, and what a side lacks.
    pub notes: Vec<String>,
    /// What the operations and the latency alone say, before the caveats.
    #[serde(default = "no_change")]
    pub changes_verdict: Verdict,
    /// Why the changes cannot be laid on the code (a busy machine, a shift
    /// of a whole side); with changes, they make the verdict inconclusive.
    #[serde(default)]
    pub caveats: Vec<String>,
    /// Each side's shift as a whole (see [`SideShift`]).
    #[serde(default)]
    pub shifts: Vec<SideShift>,
    #[serde(default)]
    pub baseline_machine: Option<MachineState>,
    #[serde(default)]
    pub candidate_machine: Option<MachineState>,
    /// Request latency, tested per request.
    #[serde(default)]
    pub latency: Vec<LatencyComparison>,
    /// The block count of the bootstrap.
    #[serde(default)]
    pub bootstrap_blocks: usize,
    /// Compilation inside each side's profiled window.
    #[serde(default)]
    pub baseline_compilation: Option<Compilation>,
    #[serde(default)]
    pub candidate_compilation: Option<Compilation>,
}

impl OpComparison {
    /// A row with its counts and totals at zero and nothing measured yet;
    /// callers fill in what their comparison knows.
    pub(crate) fn blank(name: String, side: Side, verdict: OpVerdict) -> OpComparison {
        OpComparison {
            name,
            side: side.as_str().to_owned(),
            verdict,
            baseline_total_ms: 0.0,
            candidate_total_ms: 0.0,
            baseline_count: 0,
            candidate_count: 0,
            baseline_median_ms: None,
            candidate_median_ms: None,
            change: None,
            total_change: None,
            p_value: None,
            p_adjusted: None,
            method: None,
            ci: Interval::default(),
            few_samples: false,
            not_flagged: None,
        }
    }
}

fn no_change() -> Verdict {
    Verdict::NoChange
}

/// Why a change beyond the threshold is not flagged when its bootstrap
/// interval reaches inside the threshold; `None` when the interval lies
/// wholly beyond it (or there is none).
pub(crate) fn interval_short_of(
    ci: Option<[f64; 2]>,
    change: f64,
    threshold: f64,
) -> Option<String> {
    let [lo, hi] = ci?;
    let beyond = if change > 0.0 {
        lo > threshold
    } else {
        hi < -threshold
    };
    (!beyond).then(|| {
        format!(
            "its {}-interval of the change in median, [{:+.1}%, {:+.1}%], reaches inside the ±{:.1}% threshold",
            "95%",
            lo * 100.0,
            hi * 100.0,
            threshold * 100.0
        )
    })
}

/// Why a change beyond the threshold is not flagged when, measured against
/// the shift of its whole side, its interval reaches inside the threshold.
/// Two sessions of one configuration differ as wholes by a few percent
/// (measured on an idle machine: up to 5 % on the host side with no other
/// caveat), which moves every operation's interval by as much; an
/// operation is flagged only when it changed beyond the threshold both
/// alone and relative to its side. A shift beyond the threshold is a
/// caveat of its own (see [`crate::machine::caveats`]), so only shifts
/// within it are taken out here.
pub(crate) fn interval_short_of_shift(
    ci: Option<[f64; 2]>,
    change: f64,
    shift: f64,
    threshold: f64,
) -> Option<String> {
    if shift == 0.0 || shift.abs() > threshold {
        return None;
    }
    let [lo, hi] = ci?;
    let relative = |x: f64| (1.0 + x) / (1.0 + shift) - 1.0;
    interval_short_of(Some([relative(lo), relative(hi)]), change, threshold)
        .map(|why| format!("shift of {:+.1}%, {why}", shift * 100.0))
}

impl Comparison {
    pub fn to_json(&self) -> String {
        let mut res = serde_json::to_string_pretty(self).unwrap_or_default();
        res.push('\n');
        res
    }

    pub fn count(&self, verdict: OpVerdict) -> usize {
        self.operations
            .iter()
            .filter(|it| it.verdict == verdict)
            .count()
    }
}

fn ms(ps: i128) -> f64 {
    ps as f64 / PS_PER_MS as f64
}

fn sorted(durations: &[Ps]) -> Vec<Ps> {
    let mut res = durations.to_vec();
    res.sort_unstable();
    res
}

/// Compares two profiles operation by operation (see docs/metrics.md).
///
/// An operation is `slower` or `faster` only when its Mann-Whitney U test
/// is significant after the Benjamini-Hochberg adjustment (adjusted p below
/// `alpha`), its median duration changed by more than `threshold`, its
/// total moved the same way by at least `min_share` of the baseline's traced
/// time, on the host its median by at least `host_floor_ps`, and its
/// block-bootstrap interval of the change in median lies wholly beyond the
/// threshold;
/// `added` and `removed` when it ran on one side only; `same` otherwise.
/// The overall verdict is a regression when any operation is slower, an
/// improvement when some are faster and none slower.
pub fn compare(baseline: &Profile, candidate: &Profile, settings: &Settings) -> Comparison {
    let mut by_name: BTreeMap<&str, (Option<&OpSamples>, Option<&OpSamples>)> = BTreeMap::new();
    for op in &baseline.ops {
        by_name.entry(&op.name).or_default().0 = Some(op);
    }
    for op in &candidate.ops {
        by_name.entry(&op.name).or_default().1 = Some(op);
    }
    let mut rows = Vec::with_capacity(by_name.len());
    for (name, (b, c)) in by_name {
        rows.push(compare_op(name, b, c, settings));
    }
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].p_value.is_some())
        .collect();
    let raw: Vec<f64> = tested.iter().map(|&i| rows[i].p_value.unwrap()).collect();
    // Each side's shift as a whole, from the changes alone (before any
    // operation is flagged).
    let shifts = side_shifts(&rows, settings);
    for (&i, q) in tested.iter().zip(stats::benjamini_hochberg(&raw)) {
        let row = &mut rows[i];
        row.p_adjusted = Some(q);
        // An operation whose baseline median is zero has no finite change;
        // any growth from zero counts as beyond the threshold.
        let change =
            row.change
                .unwrap_or(match (row.baseline_median_ms, row.candidate_median_ms) {
                    (Some(b), Some(c)) if c > b => f64::INFINITY,
                    _ => 0.0,
                });
        if !(q < settings.alpha && change.abs() > settings.threshold) {
            continue;
        }
        let delta_total = row.candidate_total_ms - row.baseline_total_ms;
        let delta_median =
            row.candidate_median_ms.unwrap_or(0.0) - row.baseline_median_ms.unwrap_or(0.0);
        let material_ms = settings.min_share * ms(baseline.traced_ps as i128);
        let floor_ms = settings.host_floor_ps as f64 / PS_PER_MS as f64;
        let side_shift = shifts.iter().find(|it| it.side == row.side);
        let shift = side_shift.map_or(0.0, |it| it.change);
        row.not_flagged = if let Some(why) =
            interval_short_of(row.ci.median, change, settings.threshold)
        {
            Some(why)
        } else if let Some(why) =
            interval_short_of_shift(row.ci.median, change, shift, settings.threshold)
        {
            Some(format!("measured against the {} side's {why}", row.side))
        } else if let Some((spread, center)) = side_shift.and_then(|it| {
            // Judged against the side's shift when that is within the
            // threshold; a larger shift is a caveat of its own.
            let center = if it.change.abs() <= settings.threshold {
                it.change
            } else {
                0.0
            };
            (!it.stands_out(change, center)).then_some((it, center))
        }) {
            Some(format!(
                "its change, {:+.1}%, lies within {} spreads (±{:.1}% each) of {:+.1}%, the {} side's move as a whole: between two sessions its {} operations vary that much",
                change * 100.0,
                crate::machine::SPREADS,
                spread.spread.exp_m1() * 100.0,
                center * 100.0,
                row.side,
                spread.operations,
            ))
        } else if delta_total * change < 0.0 {
            Some("the total moved the other way (fewer or more occurrences)".to_owned())
        } else if delta_total.abs() < material_ms {
            Some(format!(
                "the total changed by {:.3} ms, under {:.1}% of the baseline's traced time ({material_ms:.3} ms)",
                delta_total.abs(),
                settings.min_share * 100.0
            ))
        } else if row.side == Side::Host.as_str() && delta_median.abs() < floor_ms {
            Some(format!(
                "the median moved by {:.4} ms, under the host tracer's {floor_ms} ms resolution",
                delta_median.abs()
            ))
        } else {
            None
        };
        if row.not_flagged.is_none() {
            row.verdict = if change > 0.0 {
                OpVerdict::Slower
            } else {
                OpVerdict::Faster
            };
        }
    }
    rows.sort_by(|a, b| {
        let da = (a.candidate_total_ms - a.baseline_total_ms).abs();
        let db = (b.candidate_total_ms - b.baseline_total_ms).abs();
        db.total_cmp(&da).then_with(|| a.name.cmp(&b.name))
    });

    let mut session = Vec::new();
    let mut notes = Vec::new();
    for (metric, &bv) in &baseline.session {
        match candidate.session.get(metric) {
            Some(&cv) => session.push(SessionRow {
                metric: metric.clone(),
                baseline: bv,
                candidate: cv,
                change: stats::ratio(cv, bv),
            }),
            None => notes.push(format!("{metric}: only the baseline has it")),
        }
    }
    for metric in candidate.session.keys() {
        if !baseline.session.contains_key(metric) {
            notes.push(format!("{metric}: only the candidate has it"));
        }
    }
    for text in &baseline.missing {
        notes.push(format!("baseline: {text}"));
    }
    for text in &candidate.missing {
        notes.push(format!("candidate: {text}"));
    }
    let latency = match (&baseline.latencies, &candidate.latencies) {
        (Some(b), Some(c)) => compare_latencies(b, c, settings),
        (b, c) => {
            for (label, has) in [("baseline", b.is_some()), ("candidate", c.is_some())] {
                if !has {
                    notes.push(format!(
                        "{label}: no per-request latencies (inputs/latencies.json): latency compared as values only"
                    ));
                }
            }
            Vec::new()
        }
    };
    if !latency.is_empty() {
        // Tested below; the single values would say it twice.
        session.retain(|row| !row.metric.starts_with("request latency"));
    }
    for (label, state) in [
        ("baseline", &baseline.machine),
        ("candidate", &candidate.machine),
    ] {
        if state.is_none() {
            notes.push(format!(
                "{label}: no machine state (inputs/machine.json): a busy machine cannot be told from a change"
            ));
        }
    }

    let verdicts = rows
        .iter()
        .map(|it| it.verdict)
        .chain(latency.iter().map(|it| it.verdict));
    let (slower, faster) = verdicts.fold((false, false), |(s, f), v| {
        (s || v == OpVerdict::Slower, f || v == OpVerdict::Faster)
    });
    let changes_verdict = if slower {
        Verdict::Regression
    } else if faster {
        Verdict::Improvement
    } else {
        Verdict::NoChange
    };
    let mut caveats = caveats(
        baseline.machine.as_ref(),
        candidate.machine.as_ref(),
        &shifts,
        settings,
    );
    let (baseline_compilation, candidate_compilation) =
        (compilation(&baseline.ops), compilation(&candidate.ops));
    caveats.extend(compilation_caveat(
        baseline_compilation.as_ref(),
        candidate_compilation.as_ref(),
        ms(baseline.traced_ps as i128),
        settings,
    ));
    if let (Some(b), Some(c)) = (&baseline.host, &candidate.host)
        && b != c
    {
        caveats.push(format!(
            "the sessions ran on different hosts (baseline `{b}`, candidate `{c}`): \
             the same code runs at different speeds on different machines"
        ));
    }
    // A whole side that moved beyond the threshold is a change in itself,
    // even when no single operation stands out from the others.
    let side_moved = shifts.iter().any(|it| it.change.abs() > settings.threshold);
    let verdict = if (changes_verdict != Verdict::NoChange || side_moved) && !caveats.is_empty() {
        Verdict::Inconclusive
    } else {
        changes_verdict
    };
    Comparison {
        schema: COMPARE_SCHEMA.to_owned(),
        verdict,
        baseline: baseline.source.clone(),
        candidate: candidate.source.clone(),
        threshold: settings.threshold,
        alpha: settings.alpha,
        min_share: settings.min_share,
        host_floor_ms: settings.host_floor_ps as f64 / PS_PER_MS as f64,
        correction: "benjamini-hochberg".to_owned(),
        bootstrap_resamples: settings.bootstrap.resamples,
        bootstrap_seed: settings.bootstrap.seed,
        confidence_pct: settings.bootstrap.confidence_pct,
        operations: rows,
        session,
        notes,
        changes_verdict,
        caveats,
        shifts,
        baseline_machine: baseline.machine.clone(),
        candidate_machine: candidate.machine.clone(),
        latency,
        bootstrap_blocks: settings.bootstrap.blocks,
        baseline_compilation,
        candidate_compilation,
    }
}

fn compare_op(
    name: &str,
    b: Option<&OpSamples>,
    c: Option<&OpSamples>,
    settings: &Settings,
) -> OpComparison {
    let total = |op: Option<&OpSamples>| {
        op.map_or(0.0, |it| ms(it.durations.iter().map(|&d| d as i128).sum()))
    };
    let count = |op: Option<&OpSamples>| op.map_or(0, |it| it.durations.len() as u64);
    let side = b.or(c).map_or(Side::Host, |it| it.side);
    let mut row = OpComparison {
        baseline_total_ms: total(b),
        candidate_total_ms: total(c),
        baseline_count: count(b),
        candidate_count: count(c),
        ..OpComparison::blank(name.to_owned(), side, OpVerdict::Same)
    };
    let (b, c) = match (b, c) {
        (Some(b), Some(c)) => (b, c),
        (None, _) => {
            row.verdict = OpVerdict::Added;
            row.few_samples = row.candidate_count < FEW_SAMPLES as u64;
            return row;
        }
        (_, None) => {
            row.verdict = OpVerdict::Removed;
            row.few_samples = row.baseline_count < FEW_SAMPLES as u64;
            return row;
        }
    };
    let (bs, cs) = (sorted(&b.durations), sorted(&c.durations));
    // The bootstrap takes them in order of start time.
    let (mb, mc) = (stats::median_sorted(&bs), stats::median_sorted(&cs));
    row.baseline_median_ms = Some(mb / PS_PER_MS as f64);
    row.candidate_median_ms = Some(mc / PS_PER_MS as f64);
    row.change = Some(stats::ratio(mc, mb)).filter(|it| it.is_finite());
    row.total_change = Some(stats::ratio(row.candidate_total_ms, row.baseline_total_ms))
        .filter(|it| it.is_finite());
    row.few_samples = bs.len() < FEW_SAMPLES || cs.len() < FEW_SAMPLES;
    if let Some(test) = stats::mann_whitney_u(&bs, &cs) {
        row.p_value = Some(test.p_value);
        row.method = Some(
            match test.method {
                stats::Method::Exact => "exact",
                stats::Method::Asymptotic => "asymptotic",
            }
            .to_owned(),
        );
    }
    let ci = stats::bootstrap_change(&b.durations, &c.durations, settings.bootstrap, name);
    row.ci = Interval {
        median: ci.median.map(|(lo, hi)| [lo, hi]),
        total: ci.total.map(|(lo, hi)| [lo, hi]),
    };
    row
}
