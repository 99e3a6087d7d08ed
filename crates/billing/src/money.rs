//! Exact integer money: [`Money`] counts picodollars (10⁻¹² USD) in an `i128`.
//!
//! # Why picodollars
//! Prices are configured as decimal strings per 1K or per 1M tokens, and cost
//! is computed per token, so the unit must make *price ÷ 1000* and
//! *price ÷ 1 000 000* exact for every realistic price:
//!
//! - a price per 1M tokens with up to 6 decimal places (micro-dollars per
//!   million tokens, e.g. `0.0375`) is an integer number of picodollars per
//!   token, because 10¹² / 10⁶ = 10⁶;
//! - a price per 1K tokens with up to 9 decimal places is exact too
//!   (10¹² / 10³ = 10⁹); the reference `$0.01` per 1K is 10 000 000 pUSD per
//!   token.
//!
//! Nanodollars would not do: `$0.0375` per 1M is 37.5 nUSD per token. Prices
//! that are not exact in picodollars are rejected, never rounded
//! ([`Money::per_token`]).
//!
//! An `i128` of picodollars reaches ±1.7 × 10¹⁴ USD, far beyond any bill; every
//! arithmetic operation is still checked. A single request's cost fits an
//! `i64` up to about $9.2 million ([`Money::to_i64_units`]), which is what a
//! database column needs; sums should be taken here, in `i128`.
//!
//! No floating point is used anywhere: parsing and formatting work on digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::BillingError;

/// Money units (picodollars) per US dollar.
pub const UNITS_PER_DOLLAR: i128 = 1_000_000_000_000;
/// Decimal places of one unit.
pub const UNIT_DECIMALS: u32 = 12;
/// Decimal places always shown when formatting (micro-dollars, as in `$0.000130`).
pub const MIN_DISPLAY_DECIMALS: u32 = 6;

/// An exact amount of US dollars, in picodollars. Serialises as a decimal
/// string (`"0.000130"`) so JSON never turns it into a float.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i128);

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// From a raw count of picodollars.
    pub const fn from_units(units: i128) -> Money {
        Money(units)
    }

    /// The raw count of picodollars.
    pub const fn units(self) -> i128 {
        self.0
    }

    /// From whole dollars.
    pub const fn from_dollars(dollars: i64) -> Money {
        Money(dollars as i128 * UNITS_PER_DOLLAR)
    }

    /// From a raw `i64` of picodollars, as stored in a database column.
    pub const fn from_i64_units(units: i64) -> Money {
        Money(units as i128)
    }

    /// The picodollars as an `i64` for storage; fails beyond about ±$9.2M.
    pub fn to_i64_units(self) -> Result<i64, BillingError> {
        i64::try_from(self.0).map_err(|_| BillingError::Overflow { op: "to_i64_units" })
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + other`, or an overflow error.
    pub fn checked_add(self, other: Money) -> Result<Money, BillingError> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or(BillingError::Overflow { op: "add" })
    }

    /// `self - other`, or an overflow error.
    pub fn checked_sub(self, other: Money) -> Result<Money, BillingError> {
        self.0
            .checked_sub(other.0)
            .map(Money)
            .ok_or(BillingError::Overflow { op: "sub" })
    }

    /// `self × n` (a token count), or an overflow error.
    pub fn checked_mul(self, n: u64) -> Result<Money, BillingError> {
        self.0
            .checked_mul(i128::from(n))
            .map(Money)
            .ok_or(BillingError::Overflow { op: "mul" })
    }

    /// The exact sum of many amounts, or an overflow error.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(items: I) -> Result<Money, BillingError> {
        items
            .into_iter()
            .try_fold(Money::ZERO, |acc, m| acc.checked_add(m))
    }

    /// The larger of `self` and zero.
    pub fn max_zero(self) -> Money {
        Money(self.0.max(0))
    }

    /// Parses a decimal dollar amount: optional `-`, optional `$`, digits,
    /// optional `.` and up to 12 significant decimals (`"20"`, `"$0.000130"`,
    /// `"-1.5"`). Extra decimals must be zeros; nothing is rounded.
    pub fn parse(input: &str) -> Result<Money, BillingError> {
        let dec = Decimal::parse(input)?;
        dec.units_per(1)
            .ok_or_else(|| BillingError::InvalidAmount {
                input: input.to_string(),
                reason: "more than 12 significant decimal places or too large",
            })
            .map(Money)
    }

    /// The exact per-token price of `price` dollars per `per_tokens` tokens
    /// (`per_token("0.01", 1000)` is the reference input price). Fails with
    /// [`BillingError::InexactPrice`] if the result is not a whole number of
    /// picodollars, and rejects negative prices.
    pub fn per_token(price: &str, per_tokens: u64) -> Result<Money, BillingError> {
        let dec = Decimal::parse(price)?;
        if dec.negative && dec.mantissa != 0 {
            return Err(BillingError::InvalidAmount {
                input: price.to_string(),
                reason: "prices must not be negative",
            });
        }
        if per_tokens == 0 {
            return Err(BillingError::InvalidAmount {
                input: price.to_string(),
                reason: "price must be per at least one token",
            });
        }
        dec.units_per(i128::from(per_tokens))
            .map(Money)
            .ok_or_else(|| BillingError::InexactPrice {
                price: price.to_string(),
                per_tokens,
                max_decimals: max_exact_decimals(per_tokens),
            })
    }

    /// The plain decimal form without `$`: at least 6 decimals, more only
    /// when needed to be exact (`"0.000130"`, `"20.000000"`, `"0.00000000015"`).
    pub fn to_decimal_string(self) -> String {
        let negative = self.0 < 0;
        let abs = self.0.unsigned_abs();
        let whole = abs / UNITS_PER_DOLLAR as u128;
        let frac = abs % UNITS_PER_DOLLAR as u128;
        let mut frac_digits = format!("{frac:0width$}", width = UNIT_DECIMALS as usize);
        while frac_digits.len() > MIN_DISPLAY_DECIMALS as usize && frac_digits.ends_with('0') {
            frac_digits.pop();
        }
        let sign = if negative { "-" } else { "" };
        format!("{sign}{whole}.{frac_digits}")
    }
}

/// How many decimal places a price per `per_tokens` tokens may have and still
/// be exact in picodollars per token (6 for per-1M, 9 for per-1K).
fn max_exact_decimals(per_tokens: u64) -> u32 {
    let mut decimals = UNIT_DECIMALS;
    let mut per = per_tokens;
    while per > 1 && decimals > 0 {
        let (quotient, rest) = (per / 10, per % 10);
        if rest != 0 {
            break;
        }
        per = quotient;
        decimals -= 1;
    }
    decimals
}

impl fmt::Display for Money {
    /// `$0.000130`, `-$1.500000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_decimal_string();
        match s.strip_prefix('-') {
            Some(rest) => write!(f, "-${rest}"),
            None => write!(f, "${s}"),
        }
    }
}

impl FromStr for Money {
    type Err = BillingError;
    fn from_str(s: &str) -> Result<Money, BillingError> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_decimal_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let s = String::deserialize(deserializer)?;
        Money::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A parsed decimal literal: `(-1)^negative × mantissa / 10^scale`.
struct Decimal {
    negative: bool,
    mantissa: i128,
    scale: u32,
}

impl Decimal {
    fn parse(input: &str) -> Result<Decimal, BillingError> {
        let bad = |reason: &'static str| BillingError::InvalidAmount {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let s = s.strip_prefix('$').unwrap_or(s);
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(bad("no digits"));
        }
        if !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(bad("only digits and one decimal point are allowed"));
        }
        // Trailing fractional zeros carry no value; drop them so they cannot overflow.
        let frac = frac.trim_end_matches('0');
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or_else(|| bad("too many digits"))?;
        }
        let scale = u32::try_from(frac.len()).map_err(|_| bad("too many digits"))?;
        Ok(Decimal {
            negative,
            mantissa,
            scale,
        })
    }

    /// `value × 10¹² / divisor` (picodollars per `divisor`) if it is an
    /// exact integer that fits; powers of ten cancel first so that
    /// large amounts with many decimals do not overflow needlessly.
    fn units_per(&self, divisor: i128) -> Option<i128> {
        let (numerator, denominator) = if self.scale <= UNIT_DECIMALS {
            let up = 10i128.checked_pow(UNIT_DECIMALS - self.scale)?;
            (self.mantissa.checked_mul(up)?, divisor)
        } else {
            let down = 10i128.checked_pow(self.scale - UNIT_DECIMALS)?;
            (self.mantissa, down.checked_mul(divisor)?)
        };
        if numerator % denominator != 0 {
            return None;
        }
        let v = numerator / denominator;
        Some(if self.negative { -v } else { v })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_reference_amounts() {
        let m = Money::parse("$0.000130").unwrap();
        assert_eq!(m.units(), 130_000_000);
        assert_eq!(m.to_string(), "$0.000130");
        assert_eq!(Money::parse("20").unwrap(), Money::from_dollars(20));
        assert_eq!(Money::from_dollars(20).to_string(), "$20.000000");
        assert_eq!(Money::parse("-1.5").unwrap().to_string(), "-$1.500000");
        assert_eq!(Money::parse(".5").unwrap(), Money::parse("0.50").unwrap());
        assert_eq!(Money::from_units(150).to_string(), "$0.00000000015");
        assert_eq!(
            Money::parse("1.000000000000000000000").unwrap(),
            Money::from_dollars(1)
        );
    }

    #[test]
    fn rejects_malformed_and_inexact_amounts() {
        for bad in [
            "",
            "$",
            ".",
            "1e3",
            "1,5",
            "abc",
            "1.2.3",
            "--1",
            "0.0000000000001",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Money::parse("999999999999999999999999999999999999999999").is_err());
    }

    #[test]
    fn per_token_prices_are_exact_or_refused() {
        assert_eq!(Money::per_token("0.01", 1000).unwrap().units(), 10_000_000);
        assert_eq!(Money::per_token("0.03", 1000).unwrap().units(), 30_000_000);
        assert_eq!(
            Money::per_token("0.0375", 1_000_000).unwrap().units(),
            37_500
        );
        assert_eq!(Money::per_token("0.000001", 1_000_000).unwrap().units(), 1);
        let err = Money::per_token("0.0000001", 1_000_000).unwrap_err();
        assert!(
            matches!(
                err,
                BillingError::InexactPrice {
                    max_decimals: 6,
                    ..
                }
            ),
            "{err}"
        );
        let err = Money::per_token("0.0000000001", 1000).unwrap_err();
        assert!(
            matches!(
                err,
                BillingError::InexactPrice {
                    max_decimals: 9,
                    ..
                }
            ),
            "{err}"
        );
        assert!(Money::per_token("-0.01", 1000).is_err());
        assert!(Money::per_token("0.01", 0).is_err());
    }

    #[test]
    fn checked_ops_report_overflow() {
        let max = Money::from_units(i128::MAX);
        assert!(max.checked_add(Money::from_units(1)).is_err());
        assert!(Money::from_units(i128::MIN)
            .checked_sub(Money::from_units(1))
            .is_err());
        assert!(max.checked_mul(2).is_err());
        assert_eq!(Money::from_units(3).checked_mul(4).unwrap().units(), 12);
        assert!(Money::from_units(i128::from(i64::MAX) + 1)
            .to_i64_units()
            .is_err());
    }

    #[test]
    fn serde_uses_exact_strings() {
        let m = Money::parse("0.000130").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"0.000130\"");
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    proptest! {
        #[test]
        fn display_parse_round_trips(units in any::<i64>().prop_map(i128::from)) {
            let m = Money::from_units(units);
            prop_assert_eq!(Money::parse(&m.to_string()).unwrap(), m);
            prop_assert_eq!(Money::parse(&m.to_decimal_string()).unwrap(), m);
        }

        #[test]
        fn wide_round_trips(units in (i128::MIN + 1)..=i128::MAX) {
            let m = Money::from_units(units);
            prop_assert_eq!(Money::parse(&m.to_decimal_string()).unwrap(), m);
        }

        #[test]
        fn decimal_strings_round_trip(whole in 0u64..1_000_000, frac in 0u64..1_000_000) {
            let s = format!("{whole}.{frac:06}");
            prop_assert_eq!(Money::parse(&s).unwrap().to_decimal_string(), s);
        }
    }
}
