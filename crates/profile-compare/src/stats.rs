//! The statistics of a comparison: the two-sided Mann-Whitney U test, the
//! Benjamini-Hochberg adjustment, bootstrap intervals and percentiles.
//!
//! The test follows the textbook definitions as SciPy's `mannwhitneyu`
//! implements them, and the unit tests hold SciPy's values for fixed samples.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Below this many occurrences on either side a comparison is flagged as
/// resting on few samples.
pub const FEW_SAMPLES: usize = 9;

/// How the p-value of a Mann-Whitney U test was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The exact distribution of U: used when there are no ties and the
    /// smaller sample has at most [`EXACT_MAX_SMALL`] values (and the larger
    /// at most [`EXACT_MAX_LARGE`]).
    Exact,
    /// The normal approximation with the tie correction of the variance and
    /// a continuity correction of 0.5.
    Asymptotic,
}

pub const EXACT_MAX_SMALL: usize = 8;
pub const EXACT_MAX_LARGE: usize = 1000;

/// The result of a two-sided Mann-Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: the number of pairs (x, y) with x > y, ties
    /// counting one half.
    pub u1: f64,
    pub p_value: f64,
    pub method: Method,
}

/// Two-sided Mann-Whitney U test of `x` against `y`. `None` when either
/// sample is empty.
pub fn mann_whitney_u(x: &[i64], y: &[i64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(i64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_unstable_by_key(|it| it.0);
    // Average ranks over runs of equal values; sum of t^3 - t over the runs.
    let mut rank_sum_x = 0.0f64;
    let mut tie_term = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // Ranks i+1 ..= j, averaged.
        let rank = (i + 1 + j) as f64 / 2.0;
        let in_x = all[i..j].iter().filter(|it| it.1).count() as f64;
        rank_sum_x += rank * in_x;
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let u = u1.max(f1 * f2 - u1);
    let small = n1.min(n2);
    let large = n1.max(n2);
    if tie_term == 0.0 && small <= EXACT_MAX_SMALL && large <= EXACT_MAX_LARGE {
        let p = 2.0 * exact_sf(small, large, u as u64);
        return Some(MannWhitney {
            u1,
            p_value: p.min(1.0),
            method: Method::Exact,
        });
    }
    let n = f1 + f2;
    let var = f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let p = if var <= 0.0 {
        // Every value equal: nothing tells the samples apart.
        1.0
    } else {
        let z = (u - f1 * f2 / 2.0 - 0.5) / var.sqrt();
        2.0 * normal_sf(z)
    };
    Some(MannWhitney {
        u1,
        p_value: p.clamp(0.0, 1.0),
        method: Method::Asymptotic,
    })
}

/// P(U >= u) under the null for samples of sizes `m <= n`, from the counts
/// of the Gaussian binomial coefficient [m+n choose m]_q, whose coefficient
/// of q^k is the number of arrangements with U = k. Built one factor at a
/// time: after step i the polynomial is [n+i choose i]_q, whose
/// coefficients are exact integers.
fn exact_sf(m: usize, n: usize, u: u64) -> f64 {
    let degree = m * n;
    let mut c = vec![0i128; degree + 1];
    c[0] = 1;
    for i in 1..=m {
        // Multiply by (1 - q^(n+i)), then divide by (1 - q^i).
        let k = n + i;
        for j in (k..=degree).rev() {
            c[j] -= c[j - k];
        }
        for j in i..=degree {
            c[j] += c[j - i];
        }
    }
    let total: i128 = c.iter().sum();
    let tail: i128 = c.iter().skip(u as usize).sum();
    tail as f64 / total as f64
}

/// The upper tail of the standard normal distribution.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Benjamini-Hochberg adjusted p-values, in the order given: the smallest
/// false discovery rate at which each test would be rejected.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut res = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank, &idx) in order.iter().enumerate().rev() {
        let q = p[idx] * m as f64 / (rank + 1) as f64;
        running = running.min(q);
        res[idx] = running.min(1.0);
    }
    res
}

/// The median of sorted values (the mean of the two middle ones for an
/// even count).
pub fn median_sorted(sorted: &[i64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2] as f64
    } else {
        (sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0
    }
}

/// The nearest-rank percentile of sorted values: the value at rank
/// `ceil(p/100 * n)` (the definition the session report uses).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Settings of the bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    pub resamples: usize,
    /// Combined with each operation's name, so that an operation gets the
    /// same interval whatever else the traces hold.
    pub seed: u64,
    /// Central share of the interval, in percent.
    pub confidence_pct: u32,
}

impl Default for Bootstrap {
    fn default() -> Bootstrap {
        Bootstrap {
            resamples: 1000,
            seed: 0x5eed_c0de,
            confidence_pct: 95,
        }
    }
}

/// Percentile bootstrap intervals of the relative change (candidate /
/// baseline - 1) in median and in total.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChangeInterval {
    pub median: Option<(f64, f64)>,
    pub total: Option<(f64, f64)>,
}

/// Resamples both sorted samples with replacement (each to its own size)
/// `settings.resamples` times and returns the percentile intervals of the
/// change in median and in total. A resample is drawn as counts per index
/// of the sorted sample, so its median and sum take one pass, no sort.
pub fn bootstrap_change(
    base_sorted: &[i64],
    cand_sorted: &[i64],
    settings: Bootstrap,
    name: &str,
) -> ChangeInterval {
    if base_sorted.is_empty() || cand_sorted.is_empty() || settings.resamples == 0 {
        return ChangeInterval {
            median: None,
            total: None,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ fnv1a(name));
    let mut counts_b = vec![0u32; base_sorted.len()];
    let mut counts_c = vec![0u32; cand_sorted.len()];
    let mut medians = Vec::with_capacity(settings.resamples);
    let mut totals = Vec::with_capacity(settings.resamples);
    for _ in 0..settings.resamples {
        let (mb, sb) = resample(base_sorted, &mut counts_b, &mut rng);
        let (mc, sc) = resample(cand_sorted, &mut counts_c, &mut rng);
        medians.push(ratio(mc, mb));
        totals.push(ratio(sc, sb));
    }
    let tail = (100 - settings.confidence_pct.min(100)) as f64 / 2.0;
    let interval = |mut values: Vec<f64>| -> Option<(f64, f64)> {
        values.retain(|it| it.is_finite());
        // An interval resting on under nine resamples in ten says nothing.
        if values.len() * 10 < settings.resamples * 9 {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some((
            percentile_sorted(&values, tail.max(f64::MIN_POSITIVE)),
            percentile_sorted(&values, 100.0 - tail),
        ))
    };
    ChangeInterval {
        median: interval(medians),
        total: interval(totals),
    }
}

/// candidate / baseline - 1; 0 when both are 0, infinite when only the
/// baseline is.
pub fn ratio(candidate: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        if candidate == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        candidate / baseline - 1.0
    }
}

/// One resample of `sorted`: its median and sum.
fn resample(sorted: &[i64], counts: &mut [u32], rng: &mut ChaCha8Rng) -> (f64, f64) {
    let n = sorted.len();
    counts.fill(0);
    for _ in 0..n {
        counts[rng.random_range(0..n)] += 1;
    }
    // 0-based ranks of the middle value(s).
    let (lo, hi) = if n % 2 == 1 {
        (n / 2, n / 2)
    } else {
        (n / 2 - 1, n / 2)
    };
    let (mut at_lo, mut at_hi) = (None, None);
    let mut seen = 0usize;
    let mut sum = 0f64;
    for (idx, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        sum += sorted[idx] as f64 * count as f64;
        seen += count as usize;
        if at_lo.is_none() && seen > lo {
            at_lo = Some(sorted[idx]);
        }
        if at_hi.is_none() && seen > hi {
            at_hi = Some(sorted[idx]);
        }
    }
    let median = (at_lo.unwrap_or(0) as f64 + at_hi.unwrap_or(0) as f64) / 2.0;
    (median, sum)
}

fn fnv1a(text: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in text.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
