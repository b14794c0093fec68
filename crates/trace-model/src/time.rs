//! Time in the trace model: signed 64-bit picoseconds relative to an origin
//! chosen by the reader.
//!
//! XPlane stores picoseconds on a line clock in nanoseconds (counted from the
//! profiler's start in the JAX captures we read), and picoseconds on an
//! absolute clock would not fit in 64 bits, so every reader
//! subtracts an origin of its own choosing and reports it in
//! [`crate::ReadSummary::origin_ps`]. Relative 64-bit
//! picoseconds cover more than 100 days either side of the origin.

/// Picoseconds relative to the trace origin (see the module docs).
pub type Ps = i64;

pub const PS_PER_NS: Ps = 1_000;
pub const PS_PER_US: Ps = 1_000_000;
pub const PS_PER_MS: Ps = 1_000_000_000;

/// Converts fractional milliseconds to picoseconds, rounded; `None` when
/// `ms` is not finite or out of the range of [`Ps`].
pub fn ms_to_ps(ms: f64) -> Option<Ps> {
    let ps = ms * PS_PER_MS as f64;
    (ps.is_finite() && ps.abs() < i64::MAX as f64).then(|| ps.round() as Ps)
}

/// Converts picoseconds to fractional milliseconds, the unit of every report
/// table.
pub fn ps_to_ms(ps: i128) -> f64 {
    // Split to keep full precision for large sums before the float division.
    let whole = ps / PS_PER_MS as i128;
    let rest = ps % PS_PER_MS as i128;
    whole as f64 + rest as f64 / PS_PER_MS as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_conversion_keeps_precision() {
        assert_eq!(ps_to_ms(1_500_000_000), 1.5);
        assert_eq!(ps_to_ms(-2_000_000_000), -2.0);
        let big = 1_000_000_000_000_000_000_000i128 + 250_000_000;
        assert_eq!(ps_to_ms(big), 1e12 + 0.25);
        assert_eq!(ms_to_ps(1.5), Some(1_500_000_000));
        assert_eq!(ms_to_ps(-0.25), Some(-250_000_000));
        assert_eq!(ms_to_ps(f64::NAN), None);
        assert_eq!(ms_to_ps(1e13), None);
    }
}
