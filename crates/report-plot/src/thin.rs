//! Fewer points for the plots of long runs: a chart with one element per
//! request of a 100,000-request session weighs tens of MB in a page and
//! shows nothing more than one with a thousand. Both ways of thinning keep
//! what a reader looks for: a curve keeps its ends and evenly spaced
//! ranks, a scatter keeps the fastest and the slowest of each run of
//! neighbours.

/// The most points a thinned series draws.
pub const MAX_POINTS: usize = 1_000;

/// The ranks to draw of a cumulative curve over `n` sorted values: every
/// one when `n <= max`, else `max` ranks spread evenly from the first to
/// the last, both included.
pub fn curve_ranks(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    let mut res: Vec<usize> = (0..max)
        .map(|j| ((j as f64 * (n - 1) as f64 / (max - 1) as f64).round() as usize).min(n - 1))
        .collect();
    res.dedup();
    res
}

/// The indices of `values` to draw as a scatter, in order: every one when
/// there are at most `max`, else the smallest and the largest of each of
/// `max / 2` runs of consecutive values (the envelope, so that no outlier
/// is dropped). Values that are not finite are never picked.
pub fn envelope(values: &[f64], max: usize) -> Vec<usize> {
    let n = values.len();
    let finite = |i: &usize| values[*i].is_finite();
    if n <= max || max < 2 {
        return (0..n).filter(finite).collect();
    }
    let groups = max / 2;
    let mut res = Vec::with_capacity(max);
    for g in 0..groups {
        let (lo, hi) = (g * n / groups, (g + 1) * n / groups);
        let mut picked: Option<(usize, usize)> = None;
        for i in (lo..hi).filter(finite) {
            picked = Some(match picked {
                None => (i, i),
                Some((min, max)) => (
                    if values[i] < values[min] { i } else { min },
                    if values[i] > values[max] { i } else { max },
                ),
            });
        }
        if let Some((min, max)) = picked {
            res.push(min.min(max));
            if min != max {
                res.push(min.max(max));
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_keep_both_ends_and_short_ones_whole() {
        assert_eq!(curve_ranks(5, 10), vec![0, 1, 2, 3, 4]);
        let ranks = curve_ranks(100_000, 1_000);
        assert_eq!(ranks.len(), 1_000);
        assert_eq!((ranks[0], ranks[999]), (0, 99_999));
        assert!(ranks.windows(2).all(|w| w[0] < w[1]));
        // Evenly spaced: every gap is 100 ranks, give or take the rounding.
        assert!(
            ranks
                .windows(2)
                .all(|w| (99..=101).contains(&(w[1] - w[0])))
        );
    }

    #[test]
    fn scatters_keep_every_outlier() {
        let mut values: Vec<f64> = (0..100_000).map(|i| (i % 7) as f64).collect();
        values[12_345] = 1e6;
        values[77_777] = -5.0;
        values[500] = f64::NAN;
        let picked = envelope(&values, 1_000);
        assert!(picked.len() <= 1_000, "{}", picked.len());
        assert!(picked.contains(&12_345) && picked.contains(&77_777));
        assert!(!picked.contains(&500));
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        // Every run of 200 draws its smallest (0) and its largest (6)
        // at least.
        let drawn: Vec<f64> = picked.iter().map(|i| values[*i]).collect();
        assert_eq!(drawn.iter().filter(|v| **v == 6.0).count(), 499);
        assert_eq!(envelope(&[3.0, f64::NAN, 1.0], 1_000), vec![0, 2]);
    }
}
