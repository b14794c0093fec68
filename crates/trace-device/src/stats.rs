//! Statistics of step durations.

use trace_model::Ps;

use crate::model::{Step, StepStats};

/// Count, mean, nearest-rank p50/p90, min, max and population standard
/// deviation of the steps' durations; `None` without steps.
pub fn step_stats(steps: &[Step]) -> Option<StepStats> {
    if steps.is_empty() {
        return None;
    }
    let mut durations: Vec<Ps> = steps.iter().map(|it| it.duration_ps).collect();
    durations.sort_unstable();
    let n = durations.len();
    let sum: i128 = durations.iter().map(|&it| i128::from(it)).sum();
    let mean = sum as f64 / n as f64;
    let var = durations
        .iter()
        .map(|&it| (it as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    // Nearest rank: the smallest value with at least p % of values at or below it.
    let rank = |p: usize| durations[(n * p).div_ceil(100).clamp(1, n) - 1];
    Some(StepStats {
        count: n,
        mean_ps: mean,
        p50_ps: rank(50),
        p90_ps: rank(90),
        min_ps: durations[0],
        max_ps: durations[n - 1],
        stdev_ps: var.sqrt(),
    })
}
