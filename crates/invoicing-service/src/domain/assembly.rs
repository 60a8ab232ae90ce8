//! Which charges make which document.
//!
//! - One invoice per (tenant, subscription, period start): the charges billing keyed by that
//!   subscription period, whichever run billed them (the advance part when the period began,
//!   the arrears part and true-up when it ended). Charges of runs made before billing cycles
//!   carry no subscription period and are not invoiced automatically.
//! - While the period's invoice is a draft, new charges join it.
//! - Once it is finalized it never changes: later charges for the period (a correction run's
//!   adjustments) make a separate document referencing it — a **credit note** when they sum
//!   to less than zero, an **invoice** when they sum to more, and nothing when they cancel out.
//! - Lines are ordered the same way every time (part — advance before arrears — then the
//!   charge id, numerically), so rebuilding a draft from the same charges gives the same invoice.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pricing::{Currency, Decimal};

/// A charge as billing reports it (`ListCharges`), reduced to what an invoice shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub id: String,
    pub tenant_id: String,
    /// Empty for charges of runs made before billing cycles.
    pub subscription_id: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    /// `advance` or `arrears`.
    pub part: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_amount: Option<Decimal>,
    pub amount_minor: i64,
    pub currency: Currency,
}

/// The subscription period an invoice is for: its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeriodKey {
    pub tenant_id: String,
    pub subscription_id: String,
    pub period_start: DateTime<Utc>,
}

/// The charges of one subscription period, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodCharges {
    pub key: PeriodKey,
    pub period_end: Option<DateTime<Utc>>,
    pub currency: Currency,
    pub charges: Vec<Charge>,
}

/// Why charges cannot be grouped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    #[error("subscription {0} has charges in {1} and {2} for one period")]
    MixedCurrencies(String, Currency, Currency),
    #[error("amounts beyond what an invoice can hold")]
    Overflow,
}

/// Groups `charges` by subscription period; the second list holds the charges that have no
/// subscription period (not invoiced automatically).
pub fn by_period(charges: Vec<Charge>) -> Result<(Vec<PeriodCharges>, Vec<Charge>), AssemblyError> {
    let mut groups: BTreeMap<PeriodKey, PeriodCharges> = BTreeMap::new();
    let mut unkeyed = Vec::new();
    for c in charges {
        let Some(start) = c.period_start.filter(|_| !c.subscription_id.is_empty()) else {
            unkeyed.push(c);
            continue;
        };
        let key = PeriodKey {
            tenant_id: c.tenant_id.clone(),
            subscription_id: c.subscription_id.clone(),
            period_start: start,
        };
        let group = groups.entry(key.clone()).or_insert_with(|| PeriodCharges {
            key,
            period_end: c.period_end,
            currency: c.currency,
            charges: Vec::new(),
        });
        if group.currency != c.currency {
            return Err(AssemblyError::MixedCurrencies(
                c.subscription_id,
                group.currency,
                c.currency,
            ));
        }
        group.charges.push(c);
    }
    let mut out: Vec<PeriodCharges> = groups.into_values().collect();
    for g in &mut out {
        g.charges.sort_by(|a, b| line_order(a).cmp(&line_order(b)));
        g.charges.dedup_by(|a, b| a.id == b.id);
    }
    Ok((out, unkeyed))
}

/// A line's place on its document: part, then charge id (billing's ids are numbers, so a
/// shorter id comes first).
pub fn line_order(c: &Charge) -> (u8, usize, &str) {
    (part_rank(&c.part), c.id.len(), &c.id)
}

fn part_rank(part: &str) -> u8 {
    match part {
        "advance" => 0,
        "arrears" => 1,
        _ => 2,
    }
}

/// What charges that arrive after the period's invoice was finalized become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    CreditNote,
    Invoice,
    Nothing,
}

/// Rule 3: the sign of the charges' sum decides.
pub fn after_finalization(charges: &[Charge]) -> Result<Follow, AssemblyError> {
    let total = charges.iter().try_fold(0i64, |sum, c| {
        sum.checked_add(c.amount_minor)
            .ok_or(AssemblyError::Overflow)
    })?;
    Ok(match total {
        t if t < 0 => Follow::CreditNote,
        t if t > 0 => Follow::Invoice,
        _ => Follow::Nothing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-{day:02}T00:00:00Z"))
            .unwrap()
            .to_utc()
    }

    fn charge(id: &str, sub: &str, start: Option<u32>, part: &str, amount: i64) -> Charge {
        Charge {
            id: id.into(),
            tenant_id: "ten_1".into(),
            subscription_id: sub.into(),
            period_start: start.map(at),
            period_end: start.map(|d| at(d + 10)),
            part: part.into(),
            description: format!("line {id}"),
            quantity: Decimal::ONE,
            unit_amount: None,
            amount_minor: amount,
            currency: Currency::USD,
        }
    }

    #[test]
    fn one_group_per_subscription_period_in_a_stable_order() {
        let charges = vec![
            charge("chg_9", "sub_a", Some(1), "arrears", 500),
            charge("chg_2", "sub_a", Some(1), "advance", 1000),
            charge("chg_5", "sub_a", Some(11), "advance", 1000),
            charge("chg_1", "sub_a", Some(1), "arrears", -200),
            charge("chg_3", "sub_b", Some(1), "advance", 300),
            charge("chg_0", "", None, "", 42),
            // A redelivered charge is one line.
            charge("chg_2", "sub_a", Some(1), "advance", 1000),
        ];
        let (groups, unkeyed) = by_period(charges.clone()).unwrap();
        let shape: Vec<(&str, DateTime<Utc>, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.key.subscription_id.as_str(),
                    g.key.period_start,
                    g.charges.iter().map(|c| c.id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("sub_a", at(1), vec!["chg_2", "chg_1", "chg_9"]),
                ("sub_a", at(11), vec!["chg_5"]),
                ("sub_b", at(1), vec!["chg_3"]),
            ]
        );
        assert_eq!(unkeyed.len(), 1);
        // The same charges in another order: the same groups.
        let mut reversed = charges;
        reversed.reverse();
        assert_eq!(by_period(reversed).unwrap().0, groups);
    }

    #[test]
    fn a_period_in_two_currencies_is_refused() {
        let mut eur = charge("chg_2", "sub_a", Some(1), "arrears", 5);
        eur.currency = Currency::EUR;
        let e = by_period(vec![charge("chg_1", "sub_a", Some(1), "advance", 5), eur]);
        assert!(matches!(e, Err(AssemblyError::MixedCurrencies(..))));
    }

    #[test]
    fn late_charges_follow_the_sign_of_their_sum() {
        let c = |amount| charge("chg_1", "sub_a", Some(1), "arrears", amount);
        assert_eq!(
            after_finalization(&[c(-300), c(100)]),
            Ok(Follow::CreditNote)
        );
        assert_eq!(after_finalization(&[c(300), c(-100)]), Ok(Follow::Invoice));
        assert_eq!(after_finalization(&[c(300), c(-300)]), Ok(Follow::Nothing));
        assert_eq!(after_finalization(&[]), Ok(Follow::Nothing));
        assert_eq!(
            after_finalization(&[c(i64::MAX), c(1)]),
            Err(AssemblyError::Overflow)
        );
    }
}
