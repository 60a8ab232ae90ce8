//! Billing cycles — pure: which parts of a subscription period a run bills, and what each
//! part charges.
//!
//! Rules (ARCHITECTURE.md, "Billing cycles"):
//! - A period has two parts, each billed exactly once. The *advance* part is due when the
//!   period begins: its advance prices (by default flat and seat prices) for the whole period
//!   as scheduled — the plan in force at its start, the seats at its start. The *arrears* part
//!   is due when it ends: its arrears prices (by default metered ones) for what happened, and
//!   the advance prices' true-up: what the period really cost at each advance price (phases,
//!   seat history, an early end) minus what its advance part billed.
//! - A run over a window bills the parts due in it: the advance part of every period that
//!   began in `[start, end)`, the arrears part of every period that ended in `(start, end]`.
//! - Billing a period's arrears part settles the period: its advance part, if never billed,
//!   is then billed by nobody (the arrears part bills the advance prices in full instead).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use pricing::{Decimal, Period, PricingError, SeatSegment, Timing};

use super::Part;
use super::charges::{Basis, Billable, Line, Phase, PriceKey, difference, price};

/// One part of one subscription period: what a run claims, and the key of its charges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartKey {
    pub subscription_id: String,
    pub period_start: DateTime<Utc>,
    pub part: Part,
}

/// A charge line of a run, with the part of the period it bills.
#[derive(Debug, Clone)]
pub struct Charge {
    pub key: PartKey,
    pub period_end: DateTime<Utc>,
    pub line: Line,
}

/// One period of one subscription, as billing prices it.
#[derive(Debug, Clone)]
pub struct SubPeriod {
    pub subscription_id: String,
    /// The scheduled bounds: every fraction is a share of this.
    pub period: Period,
    /// When it ended (its end, or earlier: canceled, re-anchored); `None` while open.
    pub ended_at: Option<DateTime<Utc>>,
    /// Phases over `[period start, ended_at)` (the scheduled end while open) and the seat
    /// history over the same span.
    pub billable: Billable,
}

/// The parts of a period due in a run over `window`.
pub fn due(
    window: &Period,
    period_start: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
) -> Vec<Part> {
    let mut parts = Vec::new();
    if window.start <= period_start && period_start < window.end {
        parts.push(Part::Advance);
    }
    if ended_at.is_some_and(|e| window.start < e && e <= window.end) {
        parts.push(Part::Arrears);
    }
    parts
}

impl SubPeriod {
    pub fn key(&self, part: Part) -> PartKey {
        PartKey {
            subscription_id: self.subscription_id.clone(),
            period_start: self.period.start,
            part,
        }
    }

    /// The advance part: advance prices for the whole period as it was scheduled at its start.
    pub fn advance(&self) -> Result<Vec<Line>, PricingError> {
        let b = &self.billable;
        let Some(first) = b.phases.first() else {
            return Ok(vec![]);
        };
        // Billed from when the subscription is active (after creation and trial) to the end.
        let from = self
            .period
            .start
            .max(b.created_at)
            .max(b.trial_end.unwrap_or(b.created_at));
        let seats = b
            .seats
            .iter()
            .find(|s| s.from <= from && s.to.is_none_or(|t| from < t))
            .map_or(0, |s| s.seats);
        let scheduled = Billable {
            phases: vec![Phase {
                start: self.period.start,
                end: self.period.end,
                ..first.clone()
            }],
            canceled_at: None,
            seats: vec![SeatSegment {
                from,
                to: None,
                seats,
            }],
            ..b.clone()
        };
        let mut lines = price(&scheduled, &self.period, &BTreeMap::new())?;
        lines.retain(|l| l.timing == Timing::Advance);
        Ok(lines)
    }

    /// The arrears part, given the period's usage per metric and what its advance part billed
    /// per price (empty if it billed nothing).
    pub fn arrears(
        &self,
        usage: &BTreeMap<String, Decimal>,
        advanced: &HashMap<PriceKey, i64>,
    ) -> Result<Vec<Line>, PricingError> {
        let mut b = self.billable.clone();
        if let Some(e) = self.ended_at {
            b.canceled_at = Some(b.canceled_at.map_or(e, |c| c.min(e)));
        }
        let (advance, mut lines): (Vec<_>, Vec<_>) = price(&b, &self.period, usage)?
            .into_iter()
            .partition(|l| l.timing == Timing::Advance);
        // Nothing billed in advance: the advance prices are billed here as they are.
        let basis = if advanced.is_empty() {
            Basis::Priced
        } else {
            Basis::Proration
        };
        lines.extend(difference(
            advance,
            advanced,
            &b.tenant_id,
            b.currency,
            basis,
        ));
        Ok(lines)
    }
}

#[cfg(test)]
mod tests;
