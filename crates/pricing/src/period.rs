//! Billing intervals and half-open periods `[start, end)`.
//!
//! Periods are anchored: period `k` of a subscription is `[anchor + k·interval,
//! anchor + (k+1)·interval)`, each bound computed from the anchor (not from the previous
//! period), so a subscription anchored on the 31st bills 31 Jan → 28 Feb → 31 Mar rather than
//! drifting to the 28th.

use chrono::{DateTime, Months, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::PricingError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    fn months(self) -> u32 {
        match self {
            Interval::Month => 1,
            Interval::Year => 12,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Month => "month",
            Interval::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    /// `anchor` shifted by `k` intervals (negative = earlier), day clamped to the month's end.
    pub fn shift(self, anchor: DateTime<Utc>, k: i64) -> Option<DateTime<Utc>> {
        let months = u32::try_from(k.unsigned_abs())
            .ok()?
            .checked_mul(self.months())?;
        if k >= 0 {
            anchor.checked_add_months(Months::new(months))
        } else {
            anchor.checked_sub_months(Months::new(months))
        }
    }
}

/// A half-open time range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Period, PricingError> {
        if end <= start {
            return Err(PricingError::invalid("period", "end must be after start"));
        }
        Ok(Period { start, end })
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// Whole seconds; periods are at least a second long in practice (months and years).
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }

    /// The overlap with `[from, to)` in seconds (0 when disjoint).
    pub fn overlap_seconds(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let s = self.start.max(from);
        let e = self.end.min(to);
        (e - s).num_seconds().max(0)
    }

    /// The share of this period from `t` to its end, in `[0, 1]`.
    pub fn remaining_fraction(&self, t: DateTime<Utc>) -> Decimal {
        let total = self.seconds();
        if total <= 0 {
            return Decimal::ZERO;
        }
        Decimal::from(self.overlap_seconds(t, self.end)) / Decimal::from(total)
    }
}

/// The period of an `anchor`ed subscription that contains `t` (also for `t` before `anchor`).
pub fn period_containing(
    anchor: DateTime<Utc>,
    interval: Interval,
    t: DateTime<Utc>,
) -> Option<Period> {
    use chrono::Datelike;
    let months = (t.year() - anchor.year()) as i64 * 12 + t.month() as i64 - anchor.month() as i64;
    let mut k = months.div_euclid(interval.months() as i64);
    // The month estimate is off by at most one period either way (day/time within the month).
    for _ in 0..4 {
        let start = interval.shift(anchor, k)?;
        let end = interval.shift(anchor, k + 1)?;
        if t < start {
            k -= 1;
        } else if t >= end {
            k += 1;
        } else {
            return Some(Period { start, end });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn month_end_anchor_does_not_drift() {
        let anchor = at(2026, 1, 31);
        let p = period_containing(anchor, Interval::Month, at(2026, 3, 15)).unwrap();
        assert_eq!((p.start, p.end), (at(2026, 2, 28), at(2026, 3, 31)));
        let p = period_containing(anchor, Interval::Month, at(2026, 3, 31)).unwrap();
        assert_eq!(p.start, at(2026, 3, 31));
        let p = period_containing(anchor, Interval::Year, at(2025, 6, 1)).unwrap();
        assert_eq!((p.start, p.end), (at(2025, 1, 31), at(2026, 1, 31)));
    }

    #[test]
    fn fractions() {
        let p = Period::new(at(2026, 4, 1), at(2026, 5, 1)).unwrap();
        assert_eq!(p.remaining_fraction(at(2026, 4, 16)), Decimal::new(5, 1));
        assert_eq!(p.remaining_fraction(at(2026, 3, 1)), Decimal::ONE);
        assert_eq!(p.remaining_fraction(at(2026, 6, 1)), Decimal::ZERO);
        assert!(Period::new(at(2026, 4, 1), at(2026, 4, 1)).is_err());
    }

    proptest! {
        #[test]
        fn containing_period_contains(
            anchor_secs in 0i64..4_000_000_000,
            offset in -400_000_000i64..400_000_000,
            yearly in any::<bool>(),
        ) {
            let anchor = Utc.timestamp_opt(anchor_secs, 0).unwrap();
            let t = anchor + chrono::Duration::seconds(offset);
            let interval = if yearly { Interval::Year } else { Interval::Month };
            let p = period_containing(anchor, interval, t).unwrap();
            prop_assert!(p.contains(t));
            // Consecutive periods tile time: the next period starts where this one ends.
            let next = period_containing(anchor, interval, p.end).unwrap();
            prop_assert_eq!(next.start, p.end);
        }
    }
}
