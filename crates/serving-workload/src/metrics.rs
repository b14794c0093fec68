//! The serving metrics of a measured phase, computed from its records with
//! `bench_serving`'s definitions (`calculate_metrics` in
//! `sgl_jax/bench_serving.py`; `docs/metrics.md` quotes each one):
//!
//! - TTFT: from the send to the first chunk with generated text.
//! - ITL: for each later chunk that added tokens, the time since the
//!   previous such chunk divided evenly over the tokens it added (Δ of
//!   `meta_info.completion_tokens`), once per token.
//! - TPOT: `(E2E - TTFT) / (output tokens - 1)`, for requests with more
//!   than one output token.
//! - E2E: from the send to the end of the answer.
//! - Throughputs: completed requests and tokens over the duration; the
//!   mean concurrency is Σ E2E over the duration.
//!
//! Only completed requests count in the latencies, tokens and
//! throughputs, as there.

use std::collections::BTreeMap;

use session_report::{
    Distribution, Goodput, Overlap, RequestPoint, ServingMetadata, ServingReport, Slo,
};

use crate::record::RequestRecord;

/// `p`-th percentile of sorted values, interpolated linearly between the
/// two nearest ranks (NumPy's default method).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let rank = p / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// The distribution of `values` (any order), or `None` when empty.
pub fn distribution(mut values: Vec<f64>, percentiles: &[f64]) -> Option<Distribution> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    // In place: values equal under `total_cmp` have the same bits, so an
    // unstable sort gives the same sequence as a stable one without the
    // stable sort's scratch copy (a few million ITL values in a long run).
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    Some(Distribution {
        count: values.len() as u64,
        mean,
        std: var.sqrt(),
        median: percentile(&values, 50.0),
        min: values[0],
        max: values[values.len() - 1],
        percentiles: percentiles
            .iter()
            .map(|p| (*p, percentile(&values, *p)))
            .collect(),
    })
}

/// The ITL values of one request, in milliseconds.
pub fn itls_ms(record: &RequestRecord) -> Vec<f64> {
    let mut res = Vec::new();
    for_each_itl(record, &mut |gap_ms, added| {
        res.extend(std::iter::repeat_n(gap_ms, added as usize));
    });
    res
}

/// Each chunk's ITL value of one request in milliseconds, with how many
/// times it counts (the tokens the chunk added).
fn for_each_itl(record: &RequestRecord, each: &mut dyn FnMut(f64, u32)) {
    for pair in record.chunks.windows(2) {
        let [t0, n0] = pair[0];
        let [t1, n1] = pair[1];
        let added = n1.saturating_sub(n0);
        if added == 0 {
            continue;
        }
        each(t1.saturating_sub(t0) as f64 / 1000.0 / added as f64, added);
    }
}

/// How many ITL values [`itls_ms`] gives for `record`: the tokens added
/// by each chunk after the first.
pub fn itl_count(record: &RequestRecord) -> usize {
    record
        .chunks
        .windows(2)
        .map(|pair| pair[1][1].saturating_sub(pair[0][1]) as usize)
        .sum()
}

/// An `f64` ordered by [`f64::total_cmp`], as a map key.
#[derive(Clone, Copy, Debug)]
struct Ordered(f64);

impl PartialEq for Ordered {
    fn eq(&self, other: &Ordered) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Ordered) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Ordered) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The distribution of values given as how many times each occurs: the
/// same figures, bit for bit, as [`distribution`] of the list that repeats
/// each value its count of times, with memory for the distinct values only.
/// The sums run over the values in sorted order, one addition per value,
/// as there; values equal under `total_cmp` have the same bits.
pub fn distribution_of_counts(
    counts: &BTreeMap<impl Copy + Into<f64> + Ord, u64>,
    percentiles: &[f64],
) -> Option<Distribution> {
    let sorted = || {
        counts
            .iter()
            .map(|(v, c)| ((*v).into(), *c))
            .filter(|(v, _): &(f64, u64)| v.is_finite())
    };
    let count: u64 = sorted().map(|(_, c)| c).sum();
    if count == 0 {
        return None;
    }
    let each = || sorted().flat_map(|(v, c)| std::iter::repeat_n(v, c as usize));
    let n = count as f64;
    let mean = each().sum::<f64>() / n;
    let var = each().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    // The value at a place of the sorted list.
    let at = |idx: u64| {
        let mut seen = 0;
        for (v, c) in sorted() {
            seen += c;
            if idx < seen {
                return v;
            }
        }
        unreachable!("a place below the count")
    };
    let percentile = |p: f64| match count {
        1 => at(0),
        _ => {
            let rank = p / 100.0 * (count - 1) as f64;
            let (lo, hi) = (rank.floor(), rank.ceil());
            let (lo_v, hi_v) = (at(lo as u64), at(hi as u64));
            lo_v + (hi_v - lo_v) * (rank - lo)
        }
    };
    Some(Distribution {
        count,
        mean,
        std: var.sqrt(),
        median: percentile(50.0),
        min: at(0),
        max: at(count - 1),
        percentiles: percentiles.iter().map(|p| (*p, percentile(*p))).collect(),
    })
}

impl From<Ordered> for f64 {
    fn from(value: Ordered) -> f64 {
        value.0
    }
}

/// TPOT of one request in milliseconds, when it has more than one token
/// and a first token.
pub fn tpot_ms(record: &RequestRecord) -> Option<f64> {
    let tokens = record.completion_tokens?;
    let ttft = record.ttft_ms()?;
    (tokens > 1).then(|| (record.e2e_ms() - ttft) / (tokens - 1) as f64)
}

/// The per-request latencies that `compare` tests, in milliseconds, one
/// value per completed request that has it, in id order: `TTFT`, `ITL`
/// (the mean of the request's own ITL values, so that requests stay the
/// independent unit), `TPOT` and `E2E`. Latencies no request has are left
/// out.
pub fn per_request_latencies(records: &[RequestRecord]) -> Vec<(String, Vec<f64>)> {
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
    let mean_itl = |r: &RequestRecord| {
        let itls = itls_ms(r);
        (!itls.is_empty()).then(|| itls.iter().sum::<f64>() / itls.len() as f64)
    };
    let lists: [(&str, Vec<f64>); 4] = [
        ("TTFT", ok.iter().filter_map(|r| r.ttft_ms()).collect()),
        ("ITL", ok.iter().filter_map(|r| mean_itl(r)).collect()),
        ("TPOT", ok.iter().filter_map(|r| tpot_ms(r)).collect()),
        ("E2E", ok.iter().map(|r| r.e2e_ms()).collect()),
    ];
    lists
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(name, values)| (name.to_owned(), values))
        .collect()
}

/// The most requests in flight at one instant, of `(start_ns, end_ns)`
/// spans (one that ends as another starts does not overlap it).
fn peak_concurrency(spans: impl ExactSizeIterator<Item = (u64, u64)>) -> u64 {
    let mut edges: Vec<(u64, i64)> = Vec::with_capacity(spans.len() * 2);
    for (start, end) in spans {
        edges.push((start, 1));
        edges.push((end.max(start), -1));
    }
    // Ends sort before starts at the same instant.
    edges.sort_unstable();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    peak as u64
}

/// Inclusive runs of consecutive ids.
fn ranges(ids: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut res: Vec<(u64, u64)> = Vec::new();
    for id in ids {
        match res.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => res.push((id, id)),
        }
    }
    res
}

/// The serving report of the measured phase's `records` (in id order).
pub fn serving_report(records: &[RequestRecord], load: &ServingMetadata) -> ServingReport {
    let mut tally = ServingTally::default();
    for record in records {
        tally.add(record);
    }
    tally.report(load)
}

/// What the metrics need of one record: its times and latencies, without
/// its chunk times and strings.
#[derive(Clone, Copy, Debug)]
struct Kept {
    id: u64,
    start_ns: u64,
    end_ns: u64,
    ttft_ms: Option<f64>,
    tpot_ms: Option<f64>,
    ok: bool,
}

impl Kept {
    fn of(record: &RequestRecord) -> Kept {
        Kept {
            id: record.id,
            start_ns: record.start_ns,
            end_ns: record.end_ns,
            ttft_ms: record.ttft_ms(),
            tpot_ms: tpot_ms(record),
            ok: record.ok(),
        }
    }

    /// [`RequestRecord::e2e_ms`].
    fn e2e_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }

    /// Whether a completed request met every objective given. A request
    /// with one output token has no TPOT and meets a TPOT objective, as in
    /// vLLM's goodput; a TTFT objective needs a streamed answer.
    fn meets(&self, slo: &Slo) -> bool {
        if !self.ok {
            return false;
        }
        let ttft_ok = slo
            .ttft_ms
            .is_none_or(|max| self.ttft_ms.is_some_and(|t| t <= max));
        let tpot_ok = slo
            .tpot_ms
            .is_none_or(|max| self.tpot_ms.is_none_or(|t| t <= max));
        let e2e_ok = slo.e2e_ms.is_none_or(|max| self.e2e_ms() <= max);
        ttft_ok && tpot_ok && e2e_ok
    }
}

/// The serving metrics of records handed over one at a time, in id order,
/// as a session answers them or a report reads them: the same figures as
/// [`serving_report`] of the list, holding a few numbers per request
/// instead of every record with its chunk times.
#[derive(Debug, Default)]
pub struct ServingTally {
    kept: Vec<Kept>,
    phase_start: Option<u64>,
    phase_end: u64,
    total_input_tokens: u64,
    total_output_tokens: u64,
    server_prompt_tokens: u64,
    cached_tokens: u64,
    first_error: Option<String>,
    /// Every completed request's ITL values, counted by value: a long run
    /// has a few million values but far fewer distinct ones (each is a
    /// gap in whole microseconds over a small token count).
    itl: BTreeMap<Ordered, u64>,
    server_e2e_ms: Vec<f64>,
}

impl ServingTally {
    /// Counts the next record.
    pub fn add(&mut self, r: &RequestRecord) {
        self.phase_start = Some(self.phase_start.map_or(r.due_ns, |t| t.min(r.due_ns)));
        self.phase_end = self.phase_end.max(r.end_ns);
        self.kept.push(Kept::of(r));
        if !r.ok() {
            if self.first_error.is_none() {
                self.first_error.clone_from(&r.error);
            }
            return;
        }
        let count = |n: Option<u32>| n.map_or(0, u64::from);
        self.total_input_tokens += count(r.input_len.or(r.prompt_tokens));
        self.total_output_tokens += count(r.completion_tokens);
        self.server_prompt_tokens += count(r.prompt_tokens);
        self.cached_tokens += count(r.cached_tokens);
        let itl = &mut self.itl;
        for_each_itl(r, &mut |v, times| {
            *itl.entry(Ordered(v)).or_default() += u64::from(times);
        });
        if let Some(ns) = r.server_e2e_ns {
            self.server_e2e_ms.push(ns as f64 / 1e6);
        }
    }

    /// The serving report of the records counted.
    pub fn report(self, load: &ServingMetadata) -> ServingReport {
        let kept = &self.kept;
        let phase_start = self.phase_start.unwrap_or(0);
        let duration_s = self.phase_end.saturating_sub(phase_start) as f64 / 1e9;
        let per_s = |n: f64| {
            if duration_s > 0.0 {
                n / duration_s
            } else {
                0.0
            }
        };
        let p = &load.percentiles;
        let done = || kept.iter().filter(|k| k.ok);
        let completed = done().count() as u64;
        let e2e: Vec<f64> = done().map(Kept::e2e_ms).collect();
        let good = load.slo.map(|slo| {
            let good = done().filter(|k| k.meets(&slo)).count() as u64;
            Goodput {
                slo,
                good,
                share: if kept.is_empty() {
                    0.0
                } else {
                    good as f64 / kept.len() as f64
                },
                requests_per_s: per_s(good as f64),
            }
        });
        let overlap = load.trace_window.map(|window| {
            let inside = kept
                .iter()
                .filter(|k| k.start_ns < window.end_ns && k.end_ns > window.start_ns);
            let ids: Vec<u64> = inside.map(|k| k.id).collect();
            Overlap {
                count: ids.len() as u64,
                ranges: ranges(ids.into_iter()),
            }
        });
        let (input, output) = (self.total_input_tokens, self.total_output_tokens);
        ServingReport {
            load: load.clone(),
            requests: kept.len() as u64,
            completed,
            failed: kept.len() as u64 - completed,
            first_error: self.first_error,
            duration_s,
            total_input_tokens: input,
            total_output_tokens: output,
            server_prompt_tokens: self.server_prompt_tokens,
            cached_tokens: self.cached_tokens,
            cache_hit_rate: (self.server_prompt_tokens > 0)
                .then(|| self.cached_tokens as f64 / self.server_prompt_tokens as f64),
            request_throughput: per_s(completed as f64),
            input_throughput: per_s(input as f64),
            output_throughput: per_s(output as f64),
            total_throughput: per_s((input + output) as f64),
            mean_concurrency: per_s(e2e.iter().sum::<f64>() / 1000.0),
            peak_concurrency: peak_concurrency(kept.iter().map(|k| (k.start_ns, k.end_ns))),
            ttft_ms: distribution(done().filter_map(|k| k.ttft_ms).collect(), p),
            itl_ms: distribution_of_counts(&self.itl, p),
            tpot_ms: distribution(done().filter_map(|k| k.tpot_ms).collect(), p),
            e2e_ms: distribution(e2e, p),
            server_e2e_ms: distribution(self.server_e2e_ms, p),
            goodput: good,
            overlap,
            points: kept
                .iter()
                .map(|k| RequestPoint {
                    id: k.id,
                    start_s: k.start_ns.saturating_sub(phase_start) as f64 / 1e9,
                    ttft_ms: k.ttft_ms,
                    e2e_ms: k.ok.then(|| k.e2e_ms()),
                    ok: k.ok,
                })
                .collect(),
        }
    }
}
