//! Pricing a tenant's period into charge lines — pure.
//!
//! Rules (ARCHITECTURE.md, billing):
//! - The subscription is *active* in the period from the latest of period start, creation and
//!   trial end, to the earliest of period end and cancellation. Nothing is charged for time
//!   outside it; a period spent entirely in trial costs nothing, metered usage included.
//! - The period splits into *phases* at plan changes, one plan version each. Flat and seat
//!   prices are billed per phase for the phase's part of the active window (so a change
//!   mid-period bills the old plan for the time before it and the new plan for the time
//!   after, in arrears, with no separate credit); metered prices only at the plan in force at
//!   the period's end, for the whole period's usage.
//! - Flat prices: the model's amount × the window's fraction of the period (seconds), rounded
//!   once per line.
//! - Seat prices: the time-weighted seats over the period (seat history clipped to the window,
//!   so the proration is in the quantity), priced by the model.
//! - Included quantities apply before the model; a minimum applies after rounding, scaled by
//!   the line's fraction of the period (the whole active fraction for metered prices).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use pricing::{ChargeKind, Currency, Decimal, Period, Price, PricingError, SeatSegment, Timing};

/// One plan version over `[start, end)` of the period.
#[derive(Debug, Clone)]
pub struct Phase {
    pub plan_id: String,
    pub plan_version: u32,
    pub prices: Vec<Price>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What billing knows of one tenant's subscription for a period.
#[derive(Debug, Clone)]
pub struct Billable {
    pub tenant_id: String,
    pub currency: Currency,
    /// In time order, covering the period; the last one is the plan at the period's end.
    pub phases: Vec<Phase>,
    pub created_at: DateTime<Utc>,
    pub trial_end: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub seats: Vec<SeatSegment>,
}

/// Why a line is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The price for the span the line bills.
    Priced,
    /// An advance fee's true-up at the period's end: what the period really cost at this
    /// price minus what was billed in advance (a credit for time not used, a charge for an
    /// upgrade or more seats).
    Proration,
    /// A correction: the difference to what was billed before.
    Adjustment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tenant_id: String,
    pub kind: ChargeKind,
    pub timing: Timing,
    pub plan_id: String,
    pub plan_version: u32,
    pub price_id: String,
    pub metric: Option<String>,
    pub quantity: Decimal,
    pub amount_minor: i64,
    pub minimum_applied: bool,
    pub currency: Currency,
    pub basis: Basis,
    /// The part of the period the line bills; none on the credit of a price gone since.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Which price a line bills, within one part of one subscription period: the same key twice
/// is the same charge (what true-ups and corrections compare).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PriceKey {
    pub plan_id: String,
    pub plan_version: u32,
    pub price_id: String,
}

impl Line {
    pub fn key(&self) -> PriceKey {
        PriceKey {
            plan_id: self.plan_id.clone(),
            plan_version: self.plan_version,
            price_id: self.price_id.clone(),
        }
    }
}

/// The lines that turn what was `billed` into `lines`, marked `basis`: each price's lines
/// become `amount − billed`, lines that change nothing are dropped, and what was billed but is not
/// now (a price gone from the plan, a plan version no longer in the span) is credited back.
pub fn difference(
    lines: Vec<Line>,
    billed: &HashMap<PriceKey, i64>,
    tenant_id: &str,
    currency: Currency,
    basis: Basis,
) -> Vec<Line> {
    // A price can bill several lines of a span (a plan left and returned to): what was
    // billed before is subtracted from its first line only.
    let mut seen = HashSet::new();
    let mut out: Vec<Line> = lines
        .into_iter()
        .filter_map(|l| {
            let key = l.key();
            let before = match seen.insert(key.clone()) {
                true => billed.get(&key).copied().unwrap_or(0),
                false => 0,
            };
            (l.amount_minor != before).then(|| Line {
                amount_minor: l.amount_minor - before,
                basis,
                ..l
            })
        })
        .collect();
    let mut gone: Vec<_> = billed
        .iter()
        .filter(|(k, a)| !seen.contains(*k) && **a != 0)
        .collect();
    gone.sort();
    for (k, a) in gone {
        out.push(Line {
            tenant_id: tenant_id.to_string(),
            kind: ChargeKind::Flat,
            timing: Timing::Advance,
            plan_id: k.plan_id.clone(),
            plan_version: k.plan_version,
            price_id: k.price_id.clone(),
            metric: None,
            quantity: Decimal::ZERO,
            amount_minor: -a,
            minimum_applied: false,
            currency,
            basis,
            span: None,
        });
    }
    out
}

impl Billable {
    /// The active window within `period`, if any.
    pub fn active(&self, period: &Period) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = period
            .start
            .max(self.created_at)
            .max(self.trial_end.unwrap_or(self.created_at));
        let end = self.canceled_at.map_or(period.end, |c| c.min(period.end));
        (start < end).then_some((start, end))
    }

    /// Seat history clipped to `[from, to)`; time outside it counts as zero seats.
    fn seats_within(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<SeatSegment> {
        self.seats
            .iter()
            .filter_map(|s| {
                let start = s.from.max(from);
                let end = s.to.unwrap_or(to).min(to);
                (start < end).then_some(SeatSegment {
                    from: start,
                    to: Some(end),
                    seats: s.seats,
                })
            })
            .collect()
    }
}

/// `price` at `quantity` for part of a period (`pricing::Price::charge_scaled`): the amount
/// in minor units and whether the minimum applied.
fn priced(
    price: &Price,
    quantity: Decimal,
    scale: Decimal,
    min_scale: Decimal,
) -> Result<(i64, bool), PricingError> {
    let line = price.charge_scaled(quantity, scale, min_scale)?;
    Ok((line.amount_minor, line.minimum_applied))
}

/// The charge lines of one tenant for `period`, given its usage per metric.
pub fn price(
    b: &Billable,
    period: &Period,
    usage: &BTreeMap<String, Decimal>,
) -> Result<Vec<Line>, PricingError> {
    let Some((from, to)) = b.active(period) else {
        return Ok(vec![]);
    };
    let total = Decimal::from(period.seconds().max(1));
    let fraction =
        |a: DateTime<Utc>, z: DateTime<Utc>| Decimal::from((z - a).num_seconds()) / total;
    let mut lines = Vec::new();
    for (i, phase) in b.phases.iter().enumerate() {
        let at_end = i + 1 == b.phases.len();
        // The phase's part of the active window.
        let (start, end) = (phase.start.max(from), phase.end.min(to));
        for p in &phase.prices {
            let (quantity, scale, min_scale, span) = match p.kind {
                ChargeKind::Flat | ChargeKind::Seat if start < end => {
                    let f = fraction(start, end);
                    if p.kind == ChargeKind::Flat {
                        (Decimal::ONE, f, f, (start, end))
                    } else {
                        let seats = pricing::seat_quantity(&b.seats_within(start, end), period);
                        (seats, Decimal::ONE, f, (start, end))
                    }
                }
                ChargeKind::Metered if at_end => {
                    let metric = p.metric.as_deref().unwrap_or_default();
                    let used = usage.get(metric).copied().unwrap_or_default();
                    (used, Decimal::ONE, fraction(from, to), (from, to))
                }
                _ => continue,
            };
            let (amount_minor, minimum_applied) = priced(p, quantity, scale, min_scale)?;
            lines.push(Line {
                tenant_id: b.tenant_id.clone(),
                kind: p.kind,
                timing: p.timing(),
                plan_id: phase.plan_id.clone(),
                plan_version: phase.plan_version,
                price_id: p.id.clone(),
                metric: p.metric.clone(),
                quantity,
                amount_minor,
                minimum_applied,
                currency: b.currency,
                basis: Basis::Priced,
                span: Some(span),
            });
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests;
