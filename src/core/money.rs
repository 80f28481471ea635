//! Money as integers.
//!
//! A cache-read token of a Sonnet model costs $0.30 per million tokens, which is 0.3 micro-dollars:
//! rounding each response to whole micro-dollars would drift from Claude Code's own total by up to
//! half a micro-dollar per response. So amounts are kept as integer **nano-dollars** (every list
//! price in USD per million tokens is a whole number of nano-dollars per token) and rounded to
//! micro-dollars or cents only when shown. No floating point touches a running total.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// An amount of US dollars, in integer nano-dollars (1 USD = 1_000_000_000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub i64);

pub const NANOS_PER_USD: i64 = 1_000_000_000;
/// The largest amount a user may give as a budget: a typo like `--budget 2000000` is an error.
pub const MAX_BUDGET: Usd = Usd(1_000_000 * NANOS_PER_USD);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub fn nanos(self) -> i64 {
        self.0
    }
    /// Rounded to whole micro-dollars (half away from zero).
    pub fn micros(self) -> i64 {
        let n = self.0;
        if n >= 0 {
            (n + 500) / 1000
        } else {
            (n - 500) / 1000
        }
    }
    /// As a float, for JSON output only (ccusage-compatible fields are numbers of dollars).
    pub fn as_f64(self) -> f64 {
        self.micros() as f64 / 1e6
    }
    /// Build from a float number of dollars read from JSON or a TOML config value.
    /// Returns `None` for NaN, infinities, or amounts out of range.
    pub fn from_f64(v: f64) -> Option<Usd> {
        if !v.is_finite() || v.abs() > 9.0e9 {
            return None;
        }
        Some(Usd((v * NANOS_PER_USD as f64).round() as i64))
    }
    /// Percent of `limit` reached, in whole per-mille precision (0..=u32::MAX), for thresholds.
    pub fn permille_of(self, limit: Usd) -> u64 {
        if limit.0 <= 0 {
            return u64::MAX;
        }
        ((self.0.max(0) as i128 * 1000) / limit.0 as i128) as u64
    }

    /// Parse a user-given dollar amount: `2`, `2.50`, `$2.5`, `0.005`. Exact (no float), at most
    /// 9 decimal places, must be greater than zero and at most [`MAX_BUDGET`].
    pub fn parse_budget(s: &str) -> Result<Usd, String> {
        let t = s.trim();
        // Shown in messages: escaped, so a message stays one line and cannot drive the terminal.
        let s = &crate::core::human::excerpt(s, crate::core::human::EXCERPT);
        let t = t.strip_prefix('$').unwrap_or(t);
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (t, ""),
        };
        // `007` is 7: leading zeros do not make an amount larger than the largest budget.
        let int = match int.trim_start_matches('0') {
            "" if !int.is_empty() => "0",
            rest => rest,
        };
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if t.is_empty() || (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
            return Err(format!("'{s}' is not an amount of dollars: write it like 2 or 2.50"));
        }
        if frac.len() > 9 {
            return Err(format!("'{s}' has more than 9 decimal places"));
        }
        let int_v: i64 = if int.is_empty() {
            0
        } else if int.len() > 7 {
            return Err(format!("'{s}' is more than the largest budget, $1000000"));
        } else {
            int.parse().map_err(|_| format!("'{s}' is not an amount of dollars"))?
        };
        let mut frac_v: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_v += (b - b'0') as i64 * 10i64.pow(8 - i as u32);
        }
        let v = Usd(int_v * NANOS_PER_USD + frac_v);
        if v.0 <= 0 {
            return Err(format!("'{s}' must be more than $0"));
        }
        if v > MAX_BUDGET {
            return Err(format!("'{s}' is more than the largest budget, $1000000"));
        }
        Ok(v)
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, o: Usd) -> Usd {
        Usd(self.0.saturating_add(o.0))
    }
}
impl AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        self.0 = self.0.saturating_add(o.0);
    }
}
impl Sub for Usd {
    type Output = Usd;
    fn sub(self, o: Usd) -> Usd {
        Usd(self.0.saturating_sub(o.0))
    }
}
impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, |a, b| a + b)
    }
}

/// `$1.23`: cents for amounts of a dollar or more, more digits for small amounts so that a
/// $0.004 session does not read as $0.00.
impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.micros();
        let sign = if micros < 0 { "-" } else { "" };
        let m = micros.unsigned_abs();
        if m >= 1_000_000 || m == 0 {
            let cents = (m + 5_000) / 10_000;
            write!(f, "{sign}${}.{:02}", cents / 100, cents % 100)
        } else {
            // Below a dollar: four decimals, trimmed to at least two.
            let tenth_millis = (m + 50) / 100;
            let s = format!("{:04}", tenth_millis);
            let s = s.trim_end_matches('0');
            let s = if s.len() < 2 { format!("{s:0<2}") } else { s.to_string() };
            write!(f, "{sign}$0.{s}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets_exactly() {
        let ok = [
            ("2", 2_000_000_000),
            ("2.50", 2_500_000_000),
            ("$2.5", 2_500_000_000),
            ("0.005", 5_000_000),
            (".5", 500_000_000),
            ("1000000", 1_000_000 * NANOS_PER_USD),
            ("0.000000001", 1),
            ("00000002", 2_000_000_000),
            ("0000000.5", 500_000_000),
        ];
        for (s, n) in ok {
            assert_eq!(Usd::parse_budget(s), Ok(Usd(n)), "{s}");
        }
    }

    #[test]
    fn rejects_bad_budgets() {
        for s in [
            "",
            "-1",
            "abc",
            "1e309",
            "inf",
            "NaN",
            "0",
            "0.0",
            "1.2.3",
            "1,5",
            "1000001",
            "99999999999",
            ".",
            "0.0000000001",
            "+1",
            " ",
        ] {
            assert!(Usd::parse_budget(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn displays_at_the_edge() {
        let cases = [
            (0, "$0.00"),
            (1_000_000_000, "$1.00"),
            (12_345_000_000, "$12.35"),
            (4_000_000, "$0.004"),
            (120_000_000, "$0.12"),
            (627_000_000, "$0.627"),
            (1_234_000, "$0.0012"),
            (-2_500_000_000, "-$2.50"),
        ];
        for (n, s) in cases {
            assert_eq!(Usd(n).to_string(), s, "{n}");
        }
    }

    #[test]
    fn rounds_to_micros_half_away_from_zero() {
        assert_eq!(Usd(1_499).micros(), 1);
        assert_eq!(Usd(1_500).micros(), 2);
        assert_eq!(Usd(-1_500).micros(), -2);
        assert_eq!(Usd(2_000_000_000).permille_of(Usd(4_000_000_000)), 500);
    }
}
