//! Latency statistics: nearest-rank percentiles.

use sglang_server::workload::LatencyStats;

#[test]
fn nearest_rank_on_ten_values() {
    let samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
    let stats = LatencyStats::from_samples(&samples);
    assert_eq!(
        (stats.count, stats.min, stats.max, stats.mean),
        (10, 1.0, 10.0, 5.5)
    );
    // ceil(0.5 * 10) = 5, ceil(0.9 * 10) = 9, ceil(0.99 * 10) = 10.
    assert_eq!((stats.p50, stats.p90, stats.p99), (5.0, 9.0, 10.0));
}

#[test]
fn nearest_rank_on_odd_and_single_samples() {
    let stats = LatencyStats::from_samples(&[30.0, 10.0, 20.0]);
    assert_eq!((stats.p50, stats.p90, stats.p99), (20.0, 30.0, 30.0));
    let one = LatencyStats::from_samples(&[7.0]);
    assert_eq!((one.p50, one.p99, one.mean), (7.0, 7.0, 7.0));
}

#[test]
fn empty_and_non_finite_samples_do_not_panic() {
    assert_eq!(LatencyStats::from_samples(&[]), LatencyStats::default());
    let stats = LatencyStats::from_samples(&[f64::NAN, 4.0]);
    assert_eq!((stats.count, stats.p50), (1, 4.0));
}
