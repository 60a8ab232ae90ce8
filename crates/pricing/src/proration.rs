//! Seat quantities from seat history, and plan-change proration.
//!
//! **Seats** are time-weighted: a period's seat quantity is `Σ seats × seconds at that count /
//! period seconds`, so 10 seats for half the period and 20 for the other half bill as 15.
//!
//! **Plan changes** within a period: the unused remainder of the old plan's recurring charges
//! (flat and seat lines, at the seats of the moment) is credited and the same remainder of the
//! new plan's recurring charges is charged, both by seconds remaining; each line is rounded
//! once. Metered usage is not prorated: the whole period's usage is priced at the plan version
//! in effect at the period's end.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Period, PricingError, round_minor};

/// Seats held from `from` until `to` (`None` while current).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatSegment {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub seats: u32,
}

/// Time-weighted seats over `period`; time not covered by any segment counts as zero seats.
pub fn seat_quantity(segments: &[SeatSegment], period: &Period) -> Decimal {
    let total = period.seconds();
    if total <= 0 {
        return Decimal::ZERO;
    }
    let seat_seconds: i128 = segments
        .iter()
        .map(|s| {
            let secs = period.overlap_seconds(s.from, s.to.unwrap_or(period.end));
            i128::from(s.seats) * i128::from(secs)
        })
        .sum();
    // u32 seats × ~3e7 s/year fits a Decimal's 96-bit mantissa many times over.
    Decimal::from_i128_with_scale(seat_seconds, 0) / Decimal::from(total)
}

/// The two lines a mid-period plan change produces, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChangeProration {
    /// Zero or negative: the old plan's unused remainder.
    pub credit_minor: i64,
    /// Zero or positive: the new plan's remainder.
    pub charge_minor: i64,
}

impl PlanChangeProration {
    pub fn net_minor(&self) -> i64 {
        self.credit_minor + self.charge_minor
    }
}

/// Proration for switching at `at` from recurring charges `old_minor` to `new_minor` per period.
pub fn plan_change(
    old_minor: i64,
    new_minor: i64,
    period: &Period,
    at: DateTime<Utc>,
) -> Result<PlanChangeProration, PricingError> {
    let f = period.remaining_fraction(at);
    let part = |amount: i64| {
        Decimal::from(amount)
            .checked_mul(f)
            .ok_or(PricingError::Overflow)
            .and_then(round_minor)
    };
    Ok(PlanChangeProration {
        credit_minor: -part(old_minor)?,
        charge_minor: part(new_minor)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn april() -> Period {
        Period::new(at(2026, 4, 1), at(2026, 5, 1)).unwrap()
    }

    #[test]
    fn seats_are_time_weighted() {
        let segs = [
            SeatSegment {
                from: at(2026, 3, 20),
                to: Some(at(2026, 4, 16)),
                seats: 10,
            },
            SeatSegment {
                from: at(2026, 4, 16),
                to: None,
                seats: 20,
            },
        ];
        assert_eq!(seat_quantity(&segs, &april()), Decimal::from(15));
        // A gap (no subscription yet) counts as zero seats.
        let late = [SeatSegment {
            from: at(2026, 4, 16),
            to: None,
            seats: 4,
        }];
        assert_eq!(seat_quantity(&late, &april()), Decimal::from(2));
    }

    #[test]
    fn plan_change_mid_period() {
        // Upgrading from 30.00 to 90.00 halfway: credit 15.00, charge 45.00.
        let p = plan_change(3000, 9000, &april(), at(2026, 4, 16)).unwrap();
        assert_eq!(
            (p.credit_minor, p.charge_minor, p.net_minor()),
            (-1500, 4500, 3000)
        );
        // At the period start the whole old plan is credited and the new one charged.
        let p = plan_change(3000, 9000, &april(), at(2026, 4, 1)).unwrap();
        assert_eq!((p.credit_minor, p.charge_minor), (-3000, 9000));
    }

    proptest! {
        #[test]
        fn constant_seats_are_exact(seats in 0u32..100_000, lead in 0i64..5_000_000) {
            let p = april();
            let segs = [SeatSegment { from: p.start - chrono::Duration::seconds(lead), to: None, seats }];
            prop_assert_eq!(seat_quantity(&segs, &p), Decimal::from(seats));
        }

        /// Splitting a segment anywhere does not change the quantity.
        #[test]
        fn splitting_a_segment_changes_nothing(seats in 0u32..1000, cut in 1i64..2_591_999) {
            let p = april();
            let mid = p.start + chrono::Duration::seconds(cut);
            let one = [SeatSegment { from: p.start, to: None, seats }];
            let two = [
                SeatSegment { from: p.start, to: Some(mid), seats },
                SeatSegment { from: mid, to: None, seats },
            ];
            prop_assert_eq!(seat_quantity(&one, &p), seat_quantity(&two, &p));
        }

        /// Same plan → credit and charge cancel; each line is within half a unit of exact.
        #[test]
        fn proration_lines(old in 0i64..10_000_000, new in 0i64..10_000_000, secs in 0i64..2_592_000) {
            let p = april();
            let t = p.start + chrono::Duration::seconds(secs);
            prop_assert_eq!(plan_change(old, old, &p, t).unwrap().net_minor(), 0);
            let r = plan_change(old, new, &p, t).unwrap();
            let f = p.remaining_fraction(t);
            prop_assert!((Decimal::from(r.charge_minor) - Decimal::from(new) * f).abs() <= Decimal::new(5, 1));
            prop_assert!(r.credit_minor <= 0 && r.charge_minor >= 0);
            prop_assert!(-r.credit_minor <= old && r.charge_minor <= new);
        }
    }
}
