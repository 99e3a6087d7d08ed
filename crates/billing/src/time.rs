//! Instants and calendar months in UTC, without a date-time dependency.
//!
//! Billing needs only two things from time: ordering (a price change applies
//! to requests that start at or after it) and the calendar month an instant
//! falls in (plan quotas and invoices). [`Timestamp`] is Unix time
//! in milliseconds; [`Month`] is a UTC calendar month, converted with the
//! proleptic-Gregorian day algorithms of H. Hinnant's `chrono`-compatible
//! "civil_from_days" / "days_from_civil".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::BillingError;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// An instant, as milliseconds since the Unix epoch (UTC).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From Unix seconds.
    pub const fn from_unix_seconds(seconds: i64) -> Timestamp {
        Timestamp(seconds.saturating_mul(1000))
    }

    /// From Unix milliseconds.
    pub const fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Unix milliseconds.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Unix seconds, rounded towards the past.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The UTC calendar date `(year, month, day)` of this instant.
    pub fn utc_date(self) -> (i32, u8, u8) {
        civil_from_days(self.0.div_euclid(86_400_000))
    }

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(millis)
    }
}

/// A UTC calendar month; serialises as `"YYYY-MM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u8,
}

impl Month {
    /// The month `month` (1–12) of `year`, or `None` if `month` is out of range.
    pub fn new(year: i32, month: u8) -> Option<Month> {
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    /// The year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// The month of the year, 1–12.
    pub const fn month(self) -> u8 {
        self.month
    }

    /// The month `at` falls in.
    pub fn containing(at: Timestamp) -> Month {
        let days = at.0.div_euclid(MILLIS_PER_DAY);
        let (year, month, _) = civil_from_days(days);
        Month { year, month }
    }

    /// The first instant of the month.
    pub fn start(self) -> Timestamp {
        Timestamp(days_from_civil(self.year, self.month, 1).saturating_mul(MILLIS_PER_DAY))
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant after the month (the next month's start).
    pub fn end(self) -> Timestamp {
        self.next().start()
    }

    /// Whether `at` lies in this month.
    pub fn contains(self, at: Timestamp) -> bool {
        self.start() <= at && at < self.end()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = BillingError;
    fn from_str(s: &str) -> Result<Month, BillingError> {
        let bad = || BillingError::InvalidMonth {
            input: s.to_string(),
        };
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Month, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Days since 1970-01-01 of a proleptic-Gregorian date.
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Timestamps are i64 milliseconds, so the year is within ±300 million and
    // month/day within 1..=12 / 1..=31: the narrowing casts cannot truncate.
    (year as i32, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_of_instants() {
        assert_eq!(Timestamp::from_unix_millis(0).utc_date(), (1970, 1, 1));
        assert_eq!(Timestamp::from_unix_millis(-1).utc_date(), (1969, 12, 31));
        // 2024-02-29T23:59:59.999Z, a leap day.
        assert_eq!(
            Timestamp::from_unix_millis(1_709_251_199_999).utc_date(),
            (2024, 2, 29)
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_709_251_200_000).utc_date(),
            (2024, 3, 1)
        );
    }
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(Month::containing(Timestamp::EPOCH).to_string(), "1970-01");
        // 2024-02-29T12:00:00Z
        let leap = Timestamp::from_unix_seconds(1_709_208_000);
        let m = Month::containing(leap);
        assert_eq!(m.to_string(), "2024-02");
        assert_eq!(m.start(), Timestamp::from_unix_seconds(1_706_745_600));
        assert_eq!(m.end(), Timestamp::from_unix_seconds(1_709_251_200));
        assert_eq!(Month::containing(Timestamp(-1)).to_string(), "1969-12");
        assert_eq!(
            "2026-12".parse::<Month>().unwrap().next().to_string(),
            "2027-01"
        );
        assert!("2026-13".parse::<Month>().is_err());
        assert!("2026".parse::<Month>().is_err());
    }

    proptest! {
        #[test]
        fn month_contains_its_instants(ms in -10_000_000_000_000i64..10_000_000_000_000) {
            let at = Timestamp(ms);
            let m = Month::containing(at);
            prop_assert!(m.contains(at));
            prop_assert_eq!(Month::containing(m.start()), m);
            prop_assert_eq!(Month::containing(Timestamp(m.start().0 - 1)).next(), m);
            prop_assert_eq!(m.to_string().parse::<Month>().unwrap(), m);
        }
    }
}
