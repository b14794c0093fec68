//! JSON numbers as exact decimals, and microseconds to picoseconds without
//! going through `f64`.
//!
//! A number is kept as `mantissa * 10^exp` with at most 38 significant
//! digits in a `u128`. Digits past the 38th only matter for times when they
//! would reach below a picosecond of a value that is too large anyway, so
//! they are dropped and remembered as `inexact`.

/// A JSON number as read: `(-1)^neg * mantissa * 10^exp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decimal {
    pub(crate) neg: bool,
    pub(crate) mantissa: u128,
    pub(crate) exp: i64,
    /// Nonzero digits were dropped past the 38th significant one.
    pub(crate) inexact: bool,
    /// Written without a fraction or an exponent.
    pub(crate) integer: bool,
}

pub(crate) const MAX_DIGITS: u32 = 38;

const POW10: [u128; 39] = {
    let mut table = [1u128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

impl Decimal {
    /// The value in picoseconds of this many microseconds, rounded to the
    /// nearest picosecond, halves away from zero; `None` when it does not
    /// fit in an `i128`.
    pub(crate) fn us_to_ps(self) -> Option<i128> {
        let magnitude = scale_round(self.mantissa, self.exp.saturating_add(6), self.inexact)?;
        let magnitude = i128::try_from(magnitude).ok()?;
        Some(if self.neg { -magnitude } else { magnitude })
    }

    /// The value as an integer, when it is written as one and fits.
    pub(crate) fn as_i128(self) -> Option<i128> {
        if !self.integer || self.inexact || self.exp != 0 {
            return None;
        }
        let magnitude = i128::try_from(self.mantissa).ok()?;
        Some(if self.neg { -magnitude } else { magnitude })
    }
}

/// `mantissa * 10^exp`, rounded to an integer, halves up.
fn scale_round(mantissa: u128, exp: i64, inexact: bool) -> Option<u128> {
    if mantissa == 0 {
        return Some(0);
    }
    if exp >= 0 {
        // Dropped digits would land at or above the units digit here.
        if inexact {
            return None;
        }
        let scale = POW10.get(usize::try_from(exp).ok()?)?;
        return mantissa.checked_mul(*scale);
    }
    let k = exp.unsigned_abs();
    // The mantissa is below 10^38, so below half of 10^39 or more.
    if k > u64::from(MAX_DIGITS) {
        return Some(0);
    }
    let k = k as usize;
    // Dropped digits add less than one unit to the mantissa. With an even
    // divisor, `r + f >= p / 2` holds exactly when `r >= p / 2`, so they
    // never change the rounding.
    if let Ok(m) = u64::try_from(mantissa) {
        // Constant divisors become multiplications.
        let q = match k {
            1 => div_round::<10>(m),
            2 => div_round::<100>(m),
            3 => div_round::<1_000>(m),
            4 => div_round::<10_000>(m),
            5 => div_round::<100_000>(m),
            6 => div_round::<1_000_000>(m),
            7 => div_round::<10_000_000>(m),
            8 => div_round::<100_000_000>(m),
            9 => div_round::<1_000_000_000>(m),
            10 => div_round::<10_000_000_000>(m),
            11 => div_round::<100_000_000_000>(m),
            12 => div_round::<1_000_000_000_000>(m),
            13 => div_round::<10_000_000_000_000>(m),
            14 => div_round::<100_000_000_000_000>(m),
            15 => div_round::<1_000_000_000_000_000>(m),
            16 => div_round::<10_000_000_000_000_000>(m),
            17 => div_round::<100_000_000_000_000_000>(m),
            18 => div_round::<1_000_000_000_000_000_000>(m),
            19 => div_round::<10_000_000_000_000_000_000>(m),
            // A u64 is below half of 10^20.
            _ => 0,
        };
        return Some(u128::from(q));
    }
    let p = POW10[k];
    let (q, r) = (mantissa / p, mantissa % p);
    Some(q + u128::from(r >= p - r))
}

/// `m / P` rounded, halves up.
#[inline]
fn div_round<const P: u64>(m: u64) -> u64 {
    let (q, r) = (m / P, m % P);
    q + u64::from(r >= P - r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(neg: bool, mantissa: u128, exp: i64) -> Option<i128> {
        Decimal {
            neg,
            mantissa,
            exp,
            inexact: false,
            integer: false,
        }
        .us_to_ps()
    }

    #[test]
    fn rounds_half_away_from_zero() {
        // 1.0000005 us = 1000000.5 ps
        assert_eq!(ps(false, 10_000_005, -7), Some(1_000_001));
        assert_eq!(ps(true, 10_000_005, -7), Some(-1_000_001));
        assert_eq!(ps(false, 10_000_004_999, -10), Some(1_000_000));
        // 9.9999999999999995e-07 us
        assert_eq!(ps(false, 99_999_999_999_999_995, -23), Some(1));
        assert_eq!(ps(false, 4, -7), Some(0));
        assert_eq!(ps(false, 5, -7), Some(1));
        assert_eq!(ps(false, 1, -400), Some(0));
        assert_eq!(ps(false, u128::from(u64::MAX), -26), Some(0));
        assert_eq!(ps(false, 5 * 10u128.pow(18), -25), Some(1));
        assert_eq!(
            ps(false, 10u128.pow(30) + 5 * 10u128.pow(9), -16),
            Some(100_000_000_000_000_000_001)
        );
    }

    #[test]
    fn scales_up_exactly() {
        assert_eq!(ps(false, 15_172_000_000_000_001, -15), Some(15_172_000));
        assert_eq!(ps(false, 17, 14), Some(1_700_000_000_000_000_000_000));
        assert_eq!(ps(false, 1, 40), None);
        assert_eq!(ps(false, 0, 4000), Some(0));
    }
}
