//! Request latency compared like an operation: the per-request latencies of
//! the profiled workload on each side (`inputs/latencies.json`, and TTFT,
//! ITL, TPOT and E2E from `inputs/requests.jsonl`), a Mann-Whitney U test
//! per latency with Benjamini-Hochberg over them all, bootstrap intervals
//! of the change in p50 and p90.

use serde::{Deserialize, Serialize};

use crate::compare::{OpVerdict, Settings};
use crate::stats::{self, FEW_SAMPLES};

/// The per-request latencies of one side, in milliseconds, in send order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latencies {
    pub all: Vec<f64>,
    /// Per kind of a mixed workload (the score mix), by name.
    pub parts: Vec<(String, Vec<f64>)>,
    /// The serving latencies of each request (`TTFT`, `ITL`, `TPOT`,
    /// `E2E`: see `serving_workload::metrics::per_request_latencies`).
    pub serving: Vec<(String, Vec<f64>)>,
}

impl Latencies {
    /// `inputs/latencies.json` (schema `sglprof.latencies/1`); `None` when
    /// it has no `latencies_ms` list.
    pub fn from_json(doc: &serde_json::Value) -> Option<Latencies> {
        let list = |v: &serde_json::Value| -> Option<Vec<f64>> {
            v.get("latencies_ms")?
                .as_array()?
                .iter()
                .map(|x| x.as_f64().filter(|x| x.is_finite()))
                .collect()
        };
        Some(Latencies {
            all: list(doc)?,
            parts: doc
                .get("parts")
                .and_then(|it| it.as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p.get("name")?.as_str()?.to_owned(), list(p)?)))
                .collect(),
            serving: Vec::new(),
        })
    }
}

/// One row of `latency` in `compare.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyComparison {
    /// `request latency`, `request latency: <part>` for a kind of a mix,
    /// or a serving latency: `TTFT`, `ITL`, `TPOT`, `E2E`.
    pub name: String,
    pub verdict: OpVerdict,
    pub baseline_count: u64,
    pub candidate_count: u64,
    /// p50, p90, p99 in ms (p50 is the median; p90 and p99 nearest rank).
    pub baseline_ms: [f64; 3],
    pub candidate_ms: [f64; 3],
    /// Relative change of the median latency: the number the threshold
    /// applies to.
    pub change: Option<f64>,
    pub p90_change: Option<f64>,
    pub p_value: Option<f64>,
    /// Benjamini-Hochberg over the latency rows.
    pub p_adjusted: Option<f64>,
    /// Bootstrap intervals (requests resampled) of the change in p50, p90.
    pub ci_median: Option<[f64; 2]>,
    pub ci_p90: Option<[f64; 2]>,
    pub few_samples: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_flagged: Option<String>,
}

fn percentiles(values: &[f64]) -> [f64; 3] {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    [
        stats::median_f64(&v),
        stats::percentile_sorted(&v, 90.0),
        stats::percentile_sorted(&v, 99.0),
    ]
}

/// Compares the latencies of every name both sides have: the whole
/// workload and each part. Requests are independent enough to be the
/// resampled unit (each is one end-to-end measurement).
pub fn compare_latencies(
    base: &Latencies,
    cand: &Latencies,
    settings: &Settings,
) -> Vec<LatencyComparison> {
    let mut pairs: Vec<(String, &[f64], &[f64])> = Vec::new();
    if !base.all.is_empty() && !cand.all.is_empty() {
        pairs.push(("request latency".to_owned(), &base.all, &cand.all));
    }
    for (name, b) in &base.parts {
        if let Some((_, c)) = cand.parts.iter().find(|(n, _)| n == name)
            && !b.is_empty()
            && !c.is_empty()
        {
            pairs.push((format!("request latency: {name}"), b, c));
        }
    }
    for (name, b) in &base.serving {
        if let Some((_, c)) = cand.serving.iter().find(|(n, _)| n == name)
            && !b.is_empty()
            && !c.is_empty()
        {
            pairs.push((name.clone(), b, c));
        }
    }
    let mut rows: Vec<LatencyComparison> = pairs
        .into_iter()
        .map(|(name, b, c)| {
            let (pb, pc) = (percentiles(b), percentiles(c));
            // The test ranks; microsecond integers keep ties as ties.
            let as_us =
                |v: &[f64]| -> Vec<i64> { v.iter().map(|x| (x * 1000.0).round() as i64).collect() };
            let test = stats::mann_whitney_u(&as_us(b), &as_us(c));
            let ci = |p: f64| {
                stats::bootstrap_percentile_change(b, c, p, settings.bootstrap, &name)
                    .map(|(lo, hi)| [lo, hi])
            };
            LatencyComparison {
                verdict: OpVerdict::Same,
                baseline_count: b.len() as u64,
                candidate_count: c.len() as u64,
                baseline_ms: pb,
                candidate_ms: pc,
                change: Some(stats::ratio(pc[0], pb[0])).filter(|it| it.is_finite()),
                p90_change: Some(stats::ratio(pc[1], pb[1])).filter(|it| it.is_finite()),
                p_value: test.map(|t| t.p_value),
                p_adjusted: None,
                ci_median: ci(50.0),
                ci_p90: ci(90.0),
                few_samples: b.len() < FEW_SAMPLES || c.len() < FEW_SAMPLES,
                not_flagged: None,
                name,
            }
        })
        .collect();
    let tested: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].p_value.is_some())
        .collect();
    let raw: Vec<f64> = tested
        .iter()
        .map(|&i| rows[i].p_value.unwrap_or(1.0))
        .collect();
    for (&i, q) in tested.iter().zip(stats::benjamini_hochberg(&raw)) {
        let row = &mut rows[i];
        row.p_adjusted = Some(q);
        let Some(change) = row.change else { continue };
        if !(q < settings.alpha && change.abs() > settings.threshold) {
            continue;
        }
        match crate::compare::interval_short_of(row.ci_median, change, settings.threshold) {
            Some(why) => row.not_flagged = Some(why),
            None => {
                row.verdict = if change > 0.0 {
                    OpVerdict::Slower
                } else {
                    OpVerdict::Faster
                }
            }
        }
    }
    rows
}
