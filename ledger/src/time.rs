//! Time as data: microsecond timestamps, calendar dates and monthly periods.
//!
//! The ledger never reads a clock. The server's `recorded_at` and the author's `occurred_at`
//! arrive as microseconds since the Unix epoch; dates and periods are in China Standard Time
//! (UTC+8, no daylight saving), the calendar of every village this ledger serves.

use std::fmt;
use thiserror::Error;

/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// China Standard Time offset from UTC, in microseconds.
pub const CST_OFFSET_MICROS: i64 = 8 * 3_600_000_000;

/// Why a date or period was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    #[error("{field} must be a date \"YYYY-MM-DD\", got {value:?}")]
    Date { field: &'static str, value: String },
    #[error("{field} must be a period \"YYYY-MM\", got {value:?}")]
    Period { field: &'static str, value: String },
}

/// A calendar day, counted in days since 1970-01-01.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Date(i32);

/// A calendar month, counted as `year * 12 + (month - 1)`.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Period(i32);

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

/// The civil date of a day count (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Date {
    /// Builds a date from year, month and day, if it exists (years 1900–9999).
    pub fn from_ymd(y: i32, m: u32, d: u32) -> Option<Date> {
        if !(1900..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date(days_from_civil(y, m, d)))
    }

    /// Parses "YYYY-MM-DD" strictly.
    pub fn parse(field: &'static str, s: &str) -> Result<Date, TimeError> {
        let err = || TimeError::Date { field, value: s.to_owned() };
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let y = parse_digits(&s[0..4]).ok_or_else(err)? as i32;
        let m = parse_digits(&s[5..7]).ok_or_else(err)?;
        let d = parse_digits(&s[8..10]).ok_or_else(err)?;
        Date::from_ymd(y, m, d).ok_or_else(err)
    }

    /// The China Standard Time date of a timestamp in microseconds since the epoch.
    pub fn of_micros(micros: i64) -> Date {
        Date((micros + CST_OFFSET_MICROS).div_euclid(MICROS_PER_DAY) as i32)
    }

    /// The first microsecond of this day in China Standard Time.
    pub fn start_micros(self) -> i64 {
        self.0 as i64 * MICROS_PER_DAY - CST_OFFSET_MICROS
    }

    /// Year, month, day.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// The month this day falls in.
    pub fn period(self) -> Period {
        let (y, m, _) = self.ymd();
        Period(y * 12 + m as i32 - 1)
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// The day `n` days later.
    pub fn add_days(self, n: i32) -> Date {
        Date(self.0 + n)
    }

    /// Days since 1970-01-01.
    pub fn days(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Period {
    /// Builds a period from year and month.
    pub fn from_ym(y: i32, m: u32) -> Option<Period> {
        ((1900..=9999).contains(&y) && (1..=12).contains(&m)).then(|| Period(y * 12 + m as i32 - 1))
    }

    /// Parses "YYYY-MM" strictly.
    pub fn parse(field: &'static str, s: &str) -> Result<Period, TimeError> {
        let err = || TimeError::Period { field, value: s.to_owned() };
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' {
            return Err(err());
        }
        let y = parse_digits(&s[0..4]).ok_or_else(err)? as i32;
        let m = parse_digits(&s[5..7]).ok_or_else(err)?;
        Period::from_ym(y, m).ok_or_else(err)
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// The month, 1–12.
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    /// The quarter, 1–4.
    pub fn quarter(self) -> u32 {
        (self.month() - 1) / 3 + 1
    }

    /// The first day of the month.
    pub fn first_day(self) -> Date {
        Date(days_from_civil(self.year(), self.month(), 1))
    }

    /// The next month.
    pub fn next(self) -> Period {
        Period(self.0 + 1)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_reject_impossible_days() {
        for s in ["1970-01-01", "2000-02-29", "2024-12-31", "2025-03-01"] {
            assert_eq!(Date::parse("d", s).unwrap().to_string(), s);
        }
        for s in ["2025-02-29", "2025-13-01", "2025-00-10", "2025-1-01", "20250101", "2025-01-32", "+025-01-01"] {
            assert!(Date::parse("d", s).is_err(), "{s}");
        }
        assert_eq!(Date::parse("d", "1970-01-01").unwrap().days(), 0);
    }

    #[test]
    fn timestamps_map_to_china_standard_time_dates() {
        // 2025-01-31T16:00:00Z is 2025-02-01 00:00 in Beijing.
        let t = Date::parse("d", "2025-02-01").unwrap().start_micros();
        assert_eq!(Date::of_micros(t).to_string(), "2025-02-01");
        assert_eq!(Date::of_micros(t - 1).to_string(), "2025-01-31");
        assert_eq!(Period::parse("p", "2025-02").unwrap(), Date::of_micros(t).period());
    }

    #[test]
    fn periods_parse_strictly() {
        let p = Period::parse("p", "2025-12").unwrap();
        assert_eq!((p.year(), p.month(), p.quarter()), (2025, 12, 4));
        assert_eq!(p.next().to_string(), "2026-01");
        for s in ["2025-13", "2025-1", "2025/01", "25-01"] {
            assert!(Period::parse("p", s).is_err(), "{s}");
        }
    }
}
