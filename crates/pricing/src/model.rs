//! Price models and how a quantity becomes an amount.
//!
//! Tier bounds are inclusive upper bounds: a tier `up_to: 10` holds quantities in `(prev, 10]`.
//! Graduated pricing charges each unit at the tier it falls in (plus each touched tier's flat
//! fee); volume pricing charges every unit at the tier the *total* falls in (plus that tier's
//! flat fee). A billable quantity of zero touches no tier, so tiered and per-unit models charge
//! nothing; a flat model always charges its amount; a minimum raises any line to itself.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::{PricingError, round_minor};

/// What the quantity of a price is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeKind {
    /// Once per period; quantity is 1.
    Flat,
    /// Seats over the period (time-weighted from seat history).
    Seat,
    /// Usage of the price's metric in the period.
    Metered,
}

/// When a price is billed within its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// At the period's start, for the whole period as scheduled; trued up at its end.
    Advance,
    /// At the period's end, for what was used.
    Arrears,
}

impl Timing {
    pub fn as_str(self) -> &'static str {
        match self {
            Timing::Advance => "advance",
            Timing::Arrears => "arrears",
        }
    }
}

/// One tier; amounts in exact minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Inclusive upper bound; `None` on the last, unbounded tier.
    pub up_to: Option<Decimal>,
    #[serde(default)]
    pub unit_amount: Decimal,
    #[serde(default)]
    pub flat_amount: Decimal,
}

/// How a billable quantity is priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PriceModel {
    Flat {
        amount: Decimal,
    },
    PerUnit {
        unit_amount: Decimal,
    },
    Graduated {
        tiers: Vec<Tier>,
    },
    Volume {
        tiers: Vec<Tier>,
    },
    /// Every started package of `package_size` units costs `package_amount`.
    Package {
        package_size: Decimal,
        package_amount: Decimal,
    },
}

/// One price of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub id: String,
    pub kind: ChargeKind,
    /// The metric a metered price counts, e.g. `api_calls`; `None` otherwise.
    #[serde(default)]
    pub metric: Option<String>,
    pub model: PriceModel,
    /// Free units subtracted from the quantity before pricing.
    #[serde(default)]
    pub included_quantity: Decimal,
    /// The rounded line is raised to this, in minor units.
    #[serde(default)]
    pub minimum_amount_minor: Option<i64>,
    /// `None`: the kind's default ([`Price::timing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Timing>,
}

/// A priced line, with the steps that led to it (invoices show them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineAmount {
    pub quantity: Decimal,
    /// `max(0, quantity - included)`.
    pub billable_quantity: Decimal,
    /// The model's amount before rounding, in minor units.
    pub exact_minor: Decimal,
    /// The line: rounded, then raised to the minimum.
    pub amount_minor: i64,
    pub minimum_applied: bool,
}

fn non_negative(field: &'static str, d: Decimal) -> Result<(), PricingError> {
    if d.is_sign_negative() && !d.is_zero() {
        return Err(PricingError::invalid(field, "must not be negative"));
    }
    Ok(())
}

fn validate_tiers(tiers: &[Tier]) -> Result<(), PricingError> {
    if tiers.is_empty() {
        return Err(PricingError::invalid(
            "tiers",
            "at least one tier is needed",
        ));
    }
    let mut prev = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        non_negative("tiers.unit_amount", t.unit_amount)?;
        non_negative("tiers.flat_amount", t.flat_amount)?;
        let last = i + 1 == tiers.len();
        match (t.up_to, last) {
            (None, true) => {}
            (None, false) => {
                return Err(PricingError::invalid(
                    "tiers.up_to",
                    format!("only the last tier may be unbounded (tier {i} is)"),
                ));
            }
            (Some(_), true) => {
                return Err(PricingError::invalid(
                    "tiers.up_to",
                    "the last tier must be unbounded (omit up_to)",
                ));
            }
            (Some(u), false) => {
                if u <= prev {
                    return Err(PricingError::invalid(
                        "tiers.up_to",
                        format!("tier {i}: up_to must be greater than the previous bound ({prev})"),
                    ));
                }
                prev = u;
            }
        }
    }
    Ok(())
}

fn mul(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_mul(b).ok_or(PricingError::Overflow)
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, PricingError> {
    a.checked_add(b).ok_or(PricingError::Overflow)
}

impl PriceModel {
    pub fn validate(&self) -> Result<(), PricingError> {
        match self {
            PriceModel::Flat { amount } => non_negative("amount", *amount),
            PriceModel::PerUnit { unit_amount } => non_negative("unit_amount", *unit_amount),
            PriceModel::Graduated { tiers } | PriceModel::Volume { tiers } => validate_tiers(tiers),
            PriceModel::Package {
                package_size,
                package_amount,
            } => {
                if *package_size <= Decimal::ZERO {
                    return Err(PricingError::invalid("package_size", "must be positive"));
                }
                non_negative("package_amount", *package_amount)
            }
        }
    }

    /// The exact amount in minor units for a billable quantity (already net of included units).
    /// Assumes [`PriceModel::validate`] passed.
    pub fn exact_amount(&self, billable: Decimal) -> Result<Decimal, PricingError> {
        if billable.is_sign_negative() && !billable.is_zero() {
            return Err(PricingError::NegativeQuantity(billable));
        }
        match self {
            PriceModel::Flat { amount } => Ok(*amount),
            PriceModel::PerUnit { unit_amount } => mul(billable, *unit_amount),
            PriceModel::Graduated { tiers } => {
                let mut total = Decimal::ZERO;
                let mut lower = Decimal::ZERO;
                for t in tiers {
                    if billable <= lower {
                        break;
                    }
                    let upper = t.up_to.map_or(billable, |u| u.min(billable));
                    let units = upper - lower;
                    total = add(total, add(mul(units, t.unit_amount)?, t.flat_amount)?)?;
                    lower = upper;
                }
                Ok(total)
            }
            PriceModel::Volume { tiers } => {
                if billable.is_zero() {
                    return Ok(Decimal::ZERO);
                }
                let tier = tiers
                    .iter()
                    .find(|t| t.up_to.is_none_or(|u| billable <= u))
                    .ok_or_else(|| {
                        PricingError::invalid("tiers", "the last tier must be unbounded")
                    })?;
                add(mul(billable, tier.unit_amount)?, tier.flat_amount)
            }
            PriceModel::Package {
                package_size,
                package_amount,
            } => {
                let packages = billable
                    .checked_div(*package_size)
                    .ok_or(PricingError::Overflow)?
                    .ceil();
                mul(packages, *package_amount)
            }
        }
    }
}

impl Price {
    /// When the price is billed: as set, else flat and seat prices in advance (what the
    /// customer subscribes to) and metered prices in arrears (what they used).
    pub fn timing(&self) -> Timing {
        self.billing.unwrap_or(match self.kind {
            ChargeKind::Flat | ChargeKind::Seat => Timing::Advance,
            ChargeKind::Metered => Timing::Arrears,
        })
    }

    pub fn validate(&self) -> Result<(), PricingError> {
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(PricingError::invalid("id", "1 to 64 characters"));
        }
        match (self.kind, &self.metric) {
            (ChargeKind::Metered, None) => {
                return Err(PricingError::invalid(
                    "metric",
                    "a metered price names its metric",
                ));
            }
            (ChargeKind::Flat | ChargeKind::Seat, Some(_)) => {
                return Err(PricingError::invalid(
                    "metric",
                    "only metered prices name a metric",
                ));
            }
            _ => {}
        }
        if self.kind == ChargeKind::Metered && self.billing == Some(Timing::Advance) {
            return Err(PricingError::invalid(
                "billing",
                "metered prices are billed in arrears (usage is known at the period's end)",
            ));
        }
        non_negative("included_quantity", self.included_quantity)?;
        if self.minimum_amount_minor.is_some_and(|m| m < 0) {
            return Err(PricingError::invalid(
                "minimum_amount",
                "must not be negative",
            ));
        }
        self.model.validate()
    }

    /// Prices `quantity` (for [`ChargeKind::Flat`] pass 1): included units first, then the
    /// model, one rounding, then the minimum.
    pub fn charge(&self, quantity: Decimal) -> Result<LineAmount, PricingError> {
        self.charge_scaled(quantity, Decimal::ONE, Decimal::ONE)
    }

    /// [`charge`](Self::charge) for part of a period: the model's amount × `scale` and the
    /// minimum × `min_scale` (each the part's share of the period), still one rounding per
    /// line. Billing prices every line through here.
    pub fn charge_scaled(
        &self,
        quantity: Decimal,
        scale: Decimal,
        min_scale: Decimal,
    ) -> Result<LineAmount, PricingError> {
        if quantity.is_sign_negative() && !quantity.is_zero() {
            return Err(PricingError::NegativeQuantity(quantity));
        }
        let billable = (quantity - self.included_quantity).max(Decimal::ZERO);
        let exact = self
            .model
            .exact_amount(billable)?
            .checked_mul(scale)
            .ok_or(PricingError::Overflow)?;
        // A scale (a window's share of a period, in seconds) is a quotient that Decimal holds to
        // 28 digits: 3000 × 1106352/2592000 comes out as 1280.4999…9, not 1280.5. Rounding to
        // 12 places first removes that residue, so half a cent rounds as it should.
        let exact = exact.round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero);
        let rounded = round_minor(exact)?;
        let minimum = self
            .minimum_amount_minor
            .map(|m| {
                Decimal::from(m)
                    .checked_mul(min_scale)
                    .ok_or(PricingError::Overflow)
                    .and_then(round_minor)
            })
            .transpose()?;
        let (amount_minor, minimum_applied) = match minimum {
            Some(min) if rounded < min => (min, true),
            _ => (rounded, false),
        };
        Ok(LineAmount {
            quantity,
            billable_quantity: billable,
            exact_minor: exact,
            amount_minor,
            minimum_applied,
        })
    }
}

#[cfg(test)]
mod tests;
