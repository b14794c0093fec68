//! The nightly rule: a run against the last N runs of the same kind.

use std::collections::BTreeMap;

use trace_model::PS_PER_MS;

use crate::compare::{
    COMPARE_SCHEMA, Comparison, OpComparison, OpVerdict, Profile, Settings, Verdict,
};
use crate::machine::compilation;
use crate::samples::Side;
use crate::stats;

/// Per operation, the candidate's median duration against the mean `m` and
/// sample standard deviation `s` of the history's per-run medians: `slower`
/// when it exceeds `m * (1 + threshold)` and `m + 2 s` (the upstream rule,
/// "more than 5 % worse than the mean of the last nights", plus the nights'
/// own spread), `faster` symmetrically; `added` when no past run had the
/// operation, `removed` when every past run had it and the candidate does
/// not. Operations seen in fewer than three past runs are flagged as few
/// samples. There is no p-value: the runs are the samples.
pub fn judge_history(history: &[Profile], candidate: &Profile, settings: &Settings) -> Comparison {
    struct Past {
        side: Side,
        medians: Vec<f64>,
        totals: Vec<f64>,
        counts: Vec<f64>,
    }
    let mut past: BTreeMap<&str, Past> = BTreeMap::new();
    for run in history {
        for op in &run.ops {
            let mut sorted = op.durations.clone();
            sorted.sort_unstable();
            let entry = past.entry(&op.name).or_insert(Past {
                side: op.side,
                medians: Vec::new(),
                totals: Vec::new(),
                counts: Vec::new(),
            });
            entry.medians.push(stats::median_sorted(&sorted));
            entry
                .totals
                .push(sorted.iter().map(|&d| d as f64).sum::<f64>());
            entry.counts.push(sorted.len() as f64);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let sd = |v: &[f64]| {
        if v.len() < 2 {
            return 0.0;
        }
        let m = mean(v);
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    };
    let ms = |ps: f64| ps / PS_PER_MS as f64;
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for op in &candidate.ops {
        seen.insert(op.name.as_str());
        let mut sorted = op.durations.clone();
        sorted.sort_unstable();
        let med = stats::median_sorted(&sorted);
        let total: f64 = sorted.iter().map(|&d| d as f64).sum();
        let mut row = OpComparison {
            candidate_total_ms: ms(total),
            candidate_count: sorted.len() as u64,
            candidate_median_ms: Some(ms(med)),
            few_samples: true,
            ..OpComparison::blank(op.name.clone(), op.side, OpVerdict::Added)
        };
        if let Some(p) = past.get(op.name.as_str()) {
            let (m, s) = (mean(&p.medians), sd(&p.medians));
            let change = stats::ratio(med, m);
            row.baseline_total_ms = ms(mean(&p.totals));
            row.baseline_count = mean(&p.counts).round() as u64;
            row.baseline_median_ms = Some(ms(m));
            row.change = Some(change).filter(|it| it.is_finite());
            row.total_change =
                Some(stats::ratio(total, mean(&p.totals))).filter(|it| it.is_finite());
            row.few_samples = p.medians.len() < 3;
            row.verdict = if change > settings.threshold && med > m + 2.0 * s {
                OpVerdict::Slower
            } else if change < -settings.threshold && med < m - 2.0 * s {
                OpVerdict::Faster
            } else {
                OpVerdict::Same
            };
        }
        rows.push(row);
    }
    for (name, p) in &past {
        if seen.contains(name) || p.medians.len() < history.len() {
            continue;
        }
        rows.push(OpComparison {
            baseline_total_ms: ms(mean(&p.totals)),
            baseline_count: mean(&p.counts).round() as u64,
            baseline_median_ms: Some(ms(mean(&p.medians))),
            few_samples: p.medians.len() < 3,
            ..OpComparison::blank((*name).to_owned(), p.side, OpVerdict::Removed)
        });
    }
    rows.sort_by(|a, b| {
        let da = (a.candidate_total_ms - a.baseline_total_ms).abs();
        let db = (b.candidate_total_ms - b.baseline_total_ms).abs();
        db.total_cmp(&da).then_with(|| a.name.cmp(&b.name))
    });
    let verdict = if rows.iter().any(|it| it.verdict == OpVerdict::Slower) {
        Verdict::Regression
    } else if rows.iter().any(|it| it.verdict == OpVerdict::Faster) {
        Verdict::Improvement
    } else {
        Verdict::NoChange
    };
    let sources: Vec<&str> = history.iter().map(|it| it.source.as_str()).collect();
    Comparison {
        schema: COMPARE_SCHEMA.to_owned(),
        verdict,
        baseline: format!("history of {} runs: {}", history.len(), sources.join(", ")),
        candidate: candidate.source.clone(),
        threshold: settings.threshold,
        alpha: settings.alpha,
        min_share: settings.min_share,
        host_floor_ms: settings.host_floor_ps as f64 / PS_PER_MS as f64,
        correction: "none (history rule: mean and spread of per-run medians)".to_owned(),
        bootstrap_resamples: 0,
        bootstrap_seed: settings.bootstrap.seed,
        confidence_pct: settings.bootstrap.confidence_pct,
        operations: rows,
        session: Vec::new(),
        notes: vec![format!(
            "history rule: slower when the candidate's median is more than {:.1}% above the mean of the past runs' medians and more than two standard deviations above it",
            settings.threshold * 100.0
        )],
        changes_verdict: verdict,
        caveats: Vec::new(),
        shifts: Vec::new(),
        baseline_machine: None,
        candidate_machine: candidate.machine.clone(),
        latency: Vec::new(),
        bootstrap_blocks: 0,
        baseline_compilation: None,
        candidate_compilation: compilation(&candidate.ops),
    }
}
