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
    /// Each side's occurrences, in order of start time, are cut into this
    /// many runs of consecutive occurrences (fewer when there are fewer
    /// occurrences), and whole runs are resampled: occurrences close in
    /// time share the machine's state and are not independent.
    pub blocks: usize,
}

impl Default for Bootstrap {
    fn default() -> Bootstrap {
        Bootstrap {
            resamples: 1000,
            seed: 0x5eed_c0de,
            confidence_pct: 95,
            blocks: 16,
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

/// One side prepared for the block bootstrap: its values sorted, where each
/// block's members sit in the sorted order, and each block's sum.
struct Blocked {
    sorted: Vec<i64>,
    /// The sorted positions of each block's members.
    members: Vec<Vec<usize>>,
    sums: Vec<f64>,
}

impl Blocked {
    fn new(values: &[i64], blocks: usize) -> Blocked {
        let n = values.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| values[i]);
        let mut rank = vec![0usize; n];
        for (pos, &i) in order.iter().enumerate() {
            rank[i] = pos;
        }
        let b = blocks.clamp(1, n.max(1));
        let members: Vec<Vec<usize>> = (0..b)
            .map(|k| (k * n / b..(k + 1) * n / b).map(|i| rank[i]).collect())
            .collect();
        let sums = (0..b)
            .map(|k| {
                values[k * n / b..(k + 1) * n / b]
                    .iter()
                    .map(|&v| v as f64)
                    .sum()
            })
            .collect();
        Blocked {
            sorted: order.iter().map(|&i| values[i]).collect(),
            members,
            sums,
        }
    }

    /// One resample: as many blocks as there are, drawn with replacement;
    /// its median and sum.
    fn resample(&self, counts: &mut [u32], rng: &mut ChaCha8Rng) -> (f64, f64) {
        counts.fill(0);
        let mut size = 0usize;
        let mut sum = 0f64;
        let b = self.members.len();
        for _ in 0..b {
            let k = rng.random_range(0..b);
            for &pos in &self.members[k] {
                counts[pos] += 1;
            }
            size += self.members[k].len();
            sum += self.sums[k];
        }
        (median_of_counts(&self.sorted, counts, size), sum)
    }
}

/// The median of a multiset given as counts per position of `sorted`.
fn median_of_counts(sorted: &[i64], counts: &[u32], size: usize) -> f64 {
    if size == 0 {
        return 0.0;
    }
    // 0-based ranks of the middle value(s).
    let (lo, hi) = if size % 2 == 1 {
        (size / 2, size / 2)
    } else {
        (size / 2 - 1, size / 2)
    };
    let (mut at_lo, mut at_hi) = (None, None);
    let mut seen = 0usize;
    for (idx, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        seen += count as usize;
        if at_lo.is_none() && seen > lo {
            at_lo = Some(sorted[idx]);
        }
        if seen > hi {
            at_hi = Some(sorted[idx]);
            break;
        }
    }
    (at_lo.unwrap_or(0) as f64 + at_hi.unwrap_or(0) as f64) / 2.0
}

/// Block-bootstrap percentile intervals of the change in median and in
/// total. `base` and `cand` are each side's durations in order of start
/// time; each is cut into `settings.blocks` runs of consecutive values and
/// resampled by whole runs, `settings.resamples` times (with one value per
/// block this is the ordinary bootstrap).
pub fn bootstrap_change(
    base: &[i64],
    cand: &[i64],
    settings: Bootstrap,
    name: &str,
) -> ChangeInterval {
    if base.is_empty() || cand.is_empty() || settings.resamples == 0 {
        return ChangeInterval {
            median: None,
            total: None,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ fnv1a(name));
    let (b, c) = (
        Blocked::new(base, settings.blocks),
        Blocked::new(cand, settings.blocks),
    );
    let mut counts_b = vec![0u32; base.len()];
    let mut counts_c = vec![0u32; cand.len()];
    let mut medians = Vec::with_capacity(settings.resamples);
    let mut totals = Vec::with_capacity(settings.resamples);
    for _ in 0..settings.resamples {
        let (mb, sb) = b.resample(&mut counts_b, &mut rng);
        let (mc, sc) = c.resample(&mut counts_c, &mut rng);
        medians.push(ratio(mc, mb));
        totals.push(ratio(sc, sb));
    }
    ChangeInterval {
        median: percentile_interval(medians, settings),
        total: percentile_interval(totals, settings),
    }
}

/// Ordinary (one value per block) bootstrap intervals of the change in a
/// percentile `p` of `f64` samples, such as request latencies.
pub fn bootstrap_percentile_change(
    base: &[f64],
    cand: &[f64],
    p: f64,
    settings: Bootstrap,
    name: &str,
) -> Option<(f64, f64)> {
    if base.is_empty() || cand.is_empty() || settings.resamples == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ fnv1a(name) ^ p.to_bits());
    let mut draw = |values: &[f64]| {
        let mut res: Vec<f64> = (0..values.len())
            .map(|_| values[rng.random_range(0..values.len())])
            .collect();
        res.sort_by(f64::total_cmp);
        if p == 50.0 {
            let n = res.len();
            if n % 2 == 1 {
                res[n / 2]
            } else {
                (res[n / 2 - 1] + res[n / 2]) / 2.0
            }
        } else {
            percentile_sorted(&res, p)
        }
    };
    let changes: Vec<f64> = (0..settings.resamples)
        .map(|_| {
            let b = draw(base);
            let c = draw(cand);
            ratio(c, b)
        })
        .collect();
    percentile_interval(changes, settings)
}

/// The central `confidence_pct` interval of bootstrap values (nearest
/// rank); `None` when under nine in ten of them are finite.
fn percentile_interval(mut values: Vec<f64>, settings: Bootstrap) -> Option<(f64, f64)> {
    let tail = (100 - settings.confidence_pct.min(100)) as f64 / 2.0;
    values.retain(|it| it.is_finite());
    if values.len() * 10 < settings.resamples * 9 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((
        percentile_sorted(&values, tail.max(f64::MIN_POSITIVE)),
        percentile_sorted(&values, 100.0 - tail),
    ))
}

/// The median of unsorted `f64` values (mean of the middle two).
pub fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
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

fn fnv1a(text: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in text.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
