//! When each request of a load is due: `bench_serving`'s arrival process.
//!
//! With a finite request rate `R` and burstiness `B`, the gap after each
//! request is drawn from a gamma distribution with shape `B` and scale
//! `1 / (R * B)` (vLLM's `--burstiness`: mean gap `1 / R` whatever `B`;
//! `B = 1` is a Poisson process, whose gaps are exponential, and then the
//! draw is exactly `np.random.exponential(1 / R)` as in sglang-jax's
//! `bench_serving`). The first request is due at 0. With an infinite rate
//! every request is due at 0 and nothing is drawn.

use crate::pyrand::NumpyRandom;

/// The arrival process of a load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrivals {
    /// Requests per second; `None` is infinite.
    pub rate: Option<f64>,
    pub burstiness: f64,
}

/// The due time of each of `n` requests, in seconds from the start of
/// the phase, drawing from `rng` (which `bench_serving` shares with the
/// dataset, so a dataset drawn first from the same `rng` gives its gaps).
/// One gap is drawn after every request, the last included, as
/// `bench_serving` does.
pub fn due_times(n: usize, arrivals: &Arrivals, rng: &mut NumpyRandom) -> Vec<f64> {
    let mut res = Vec::with_capacity(n);
    let mut at = 0.0f64;
    for _ in 0..n {
        res.push(at);
        if let Some(rate) = arrivals.rate {
            let gap = if arrivals.burstiness == 1.0 {
                rng.exponential(1.0 / rate)
            } else {
                rng.gamma(arrivals.burstiness, 1.0 / (rate * arrivals.burstiness))
            };
            at += gap;
        }
    }
    res
}
