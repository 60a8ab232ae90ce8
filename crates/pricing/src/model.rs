//! Price models and how a quantity becomes an amount.
//!
//! Tier bounds are inclusive upper bounds: a tier `up_to: 10` holds quantities in `(prev, 10]`.
//! Graduated pricing charges each unit at the tier it falls in (plus each touched tier's flat
//! fee); volume pricing charges every unit at the tier the *total* falls in (plus that tier's
//! flat fee). A billable quantity of zero touches no tier, so tiered and per-unit models charge
//! nothing; a flat model always charges its amount; a minimum raises any line to itself.

use rust_decimal::Decimal;
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(v: i64) -> Decimal {
        Decimal::from(v)
    }

    fn tiers(spec: &[(Option<i64>, i64, i64)]) -> Vec<Tier> {
        spec.iter()
            .map(|&(up_to, unit, flat)| Tier {
                up_to: up_to.map(d),
                unit_amount: d(unit),
                flat_amount: d(flat),
            })
            .collect()
    }

    fn metered(model: PriceModel) -> Price {
        Price {
            id: "p".into(),
            kind: ChargeKind::Metered,
            metric: Some("api_calls".into()),
            model,
            included_quantity: Decimal::ZERO,
            minimum_amount_minor: None,
        }
    }

    /// Three tiers: 1..=10 at 100, 11..=50 at 80 (+500 flat), beyond at 50.
    fn three() -> Vec<Tier> {
        tiers(&[(Some(10), 100, 0), (Some(50), 80, 500), (None, 50, 0)])
    }

    #[test]
    fn graduated_at_and_around_boundaries() {
        let m = PriceModel::Graduated { tiers: three() };
        let at = |q: i64| m.exact_amount(d(q)).unwrap();
        assert_eq!(at(0), d(0));
        assert_eq!(at(1), d(100));
        assert_eq!(at(10), d(1000));
        assert_eq!(at(11), d(1000 + 80 + 500));
        assert_eq!(at(50), d(1000 + 40 * 80 + 500));
        assert_eq!(at(51), d(1000 + 40 * 80 + 500 + 50));
        // A fractional quantity past a bound touches the next tier.
        assert_eq!(
            m.exact_amount("10.5".parse().unwrap()).unwrap(),
            d(1000 + 40 + 500)
        );
    }

    #[test]
    fn volume_at_and_around_boundaries() {
        let m = PriceModel::Volume { tiers: three() };
        let at = |q: i64| m.exact_amount(d(q)).unwrap();
        assert_eq!(at(0), d(0));
        assert_eq!(at(10), d(1000));
        assert_eq!(at(11), d(11 * 80 + 500));
        assert_eq!(at(50), d(50 * 80 + 500));
        assert_eq!(at(51), d(51 * 50));
    }

    #[test]
    fn package_rounds_up_started_packages() {
        let m = PriceModel::Package {
            package_size: d(100),
            package_amount: d(500),
        };
        assert_eq!(m.exact_amount(d(0)).unwrap(), d(0));
        assert_eq!(m.exact_amount(d(1)).unwrap(), d(500));
        assert_eq!(m.exact_amount(d(100)).unwrap(), d(500));
        assert_eq!(m.exact_amount(d(101)).unwrap(), d(1000));
    }

    #[test]
    fn included_then_round_then_minimum() {
        let mut p = metered(PriceModel::PerUnit {
            unit_amount: "0.25".parse().unwrap(),
        });
        p.included_quantity = d(1000);
        p.minimum_amount_minor = Some(100);
        // Within the included units: zero, raised to the minimum.
        let l = p.charge(d(900)).unwrap();
        assert_eq!(
            (l.billable_quantity, l.amount_minor, l.minimum_applied),
            (d(0), 100, true)
        );
        // 1,002 billable units × 0.25 = 250.5 → 251 (half away from zero).
        let l = p.charge(d(2002)).unwrap();
        assert_eq!(l.exact_minor, "250.50".parse().unwrap());
        assert_eq!((l.amount_minor, l.minimum_applied), (251, false));
        assert!(matches!(
            p.charge(d(-1)),
            Err(PricingError::NegativeQuantity(_))
        ));
    }

    #[test]
    fn flat_ignores_quantity() {
        let p = Price {
            kind: ChargeKind::Flat,
            metric: None,
            ..metered(PriceModel::Flat { amount: d(4900) })
        };
        assert_eq!(p.charge(d(1)).unwrap().amount_minor, 4900);
        assert_eq!(p.charge(d(0)).unwrap().amount_minor, 4900);
    }

    #[test]
    fn invalid_definitions_name_the_field() {
        let bad = [
            (PriceModel::Graduated { tiers: vec![] }, "tiers"),
            (
                PriceModel::Graduated {
                    tiers: tiers(&[(Some(10), 1, 0), (Some(10), 1, 0), (None, 1, 0)]),
                },
                "tiers.up_to",
            ),
            (
                PriceModel::Volume {
                    tiers: tiers(&[(Some(10), 1, 0)]),
                },
                "tiers.up_to",
            ),
            (
                PriceModel::Volume {
                    tiers: tiers(&[(None, 1, 0), (None, 1, 0)]),
                },
                "tiers.up_to",
            ),
            (
                PriceModel::Volume {
                    tiers: tiers(&[(None, -1, 0)]),
                },
                "tiers.unit_amount",
            ),
            (
                PriceModel::Package {
                    package_size: d(0),
                    package_amount: d(1),
                },
                "package_size",
            ),
            (PriceModel::Flat { amount: d(-5) }, "amount"),
        ];
        for (model, field) in bad {
            match model.validate() {
                Err(PricingError::Invalid { field: f, .. }) => assert_eq!(f, field, "{model:?}"),
                other => panic!("{model:?}: {other:?}"),
            }
        }
        let mut p = metered(PriceModel::PerUnit { unit_amount: d(1) });
        p.metric = None;
        assert!(p.validate().is_err());
        p.kind = ChargeKind::Seat;
        assert!(p.validate().is_ok());
    }

    #[test]
    fn json_shape_is_stable() {
        let p = metered(PriceModel::Graduated {
            tiers: tiers(&[(Some(10), 100, 0), (None, 50, 0)]),
        });
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["model"]["type"], "graduated");
        assert_eq!(v["model"]["tiers"][0]["up_to"], "10");
        let back: Price = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }

    // ---- property tests against a unit-by-unit reference ----

    /// Integer tier bounds, ascending, the last unbounded.
    fn arb_tiers() -> impl Strategy<Value = Vec<Tier>> {
        prop::collection::vec((1i64..40, 0i64..1000, 0i64..300), 1..5).prop_map(|steps| {
            let mut bound = 0;
            let n = steps.len();
            steps
                .into_iter()
                .enumerate()
                .map(|(i, (step, unit, flat))| {
                    bound += step;
                    Tier {
                        up_to: (i + 1 < n).then(|| d(bound)),
                        unit_amount: d(unit),
                        flat_amount: d(flat),
                    }
                })
                .collect()
        })
    }

    /// The tier unit number `n` (1-based) or a total of `n` falls in.
    fn tier_of(tiers: &[Tier], n: i64) -> usize {
        tiers
            .iter()
            .position(|t| t.up_to.is_none_or(|u| d(n) <= u))
            .unwrap()
    }

    fn reference_graduated(tiers: &[Tier], q: i64) -> Decimal {
        let mut total = Decimal::ZERO;
        let mut touched = vec![false; tiers.len()];
        for unit in 1..=q {
            let i = tier_of(tiers, unit);
            total += tiers[i].unit_amount;
            touched[i] = true;
        }
        for (i, t) in tiers.iter().enumerate() {
            if touched[i] {
                total += t.flat_amount;
            }
        }
        total
    }

    fn reference_volume(tiers: &[Tier], q: i64) -> Decimal {
        if q == 0 {
            return Decimal::ZERO;
        }
        let t = &tiers[tier_of(tiers, q)];
        t.unit_amount * d(q) + t.flat_amount
    }

    fn reference_package(size: i64, amount: i64, q: i64) -> Decimal {
        let (mut packages, mut left) = (0, q);
        while left > 0 {
            packages += 1;
            left -= size;
        }
        d(packages * amount)
    }

    proptest! {
        #[test]
        fn graduated_matches_reference(t in arb_tiers(), q in 0i64..200) {
            let m = PriceModel::Graduated { tiers: t.clone() };
            m.validate().unwrap();
            prop_assert_eq!(m.exact_amount(d(q)).unwrap(), reference_graduated(&t, q));
        }

        #[test]
        fn volume_matches_reference(t in arb_tiers(), q in 0i64..200) {
            let m = PriceModel::Volume { tiers: t.clone() };
            m.validate().unwrap();
            prop_assert_eq!(m.exact_amount(d(q)).unwrap(), reference_volume(&t, q));
        }

        #[test]
        fn package_matches_reference(size in 1i64..50, amount in 0i64..1000, q in 0i64..500) {
            let m = PriceModel::Package { package_size: d(size), package_amount: d(amount) };
            prop_assert_eq!(m.exact_amount(d(q)).unwrap(), reference_package(size, amount, q));
        }

        /// Graduated with non-negative prices never decreases as the quantity grows.
        #[test]
        fn graduated_is_monotonic(t in arb_tiers(), q in 0i64..200) {
            let m = PriceModel::Graduated { tiers: t };
            prop_assert!(m.exact_amount(d(q)).unwrap() <= m.exact_amount(d(q + 1)).unwrap());
        }

        /// Included units and the minimum behave as written: charge(q) prices max(0, q − incl),
        /// rounds once, and never goes below the minimum.
        #[test]
        fn included_and_minimum(
            t in arb_tiers(),
            q in 0i64..200,
            included in 0i64..60,
            min in prop::option::of(0i64..5000),
            unit_millis in 0i64..100_000,
        ) {
            for model in [
                PriceModel::Graduated { tiers: t.clone() },
                PriceModel::Volume { tiers: t.clone() },
                PriceModel::PerUnit { unit_amount: Decimal::new(unit_millis, 3) },
            ] {
                let p = Price {
                    included_quantity: d(included),
                    minimum_amount_minor: min,
                    ..metered(model.clone())
                };
                p.validate().unwrap();
                let l = p.charge(d(q)).unwrap();
                let billable = (q - included).max(0);
                let exact = match &model {
                    PriceModel::Graduated { tiers } => reference_graduated(tiers, billable),
                    PriceModel::Volume { tiers } => reference_volume(tiers, billable),
                    _ => Decimal::new(unit_millis, 3) * d(billable),
                };
                prop_assert_eq!(l.exact_minor, exact);
                let rounded = round_minor(exact).unwrap();
                prop_assert!((Decimal::from(rounded) - exact).abs() <= Decimal::new(5, 1));
                prop_assert_eq!(l.amount_minor, rounded.max(min.unwrap_or(i64::MIN)));
                prop_assert_eq!(l.minimum_applied, min.is_some_and(|m| rounded < m));
            }
        }

        /// Huge inputs are an error, never a panic.
        #[test]
        fn overflow_is_an_error(unit in any::<i64>(), q in any::<i64>()) {
            let p = metered(PriceModel::PerUnit { unit_amount: d(unit.saturating_abs()) });
            match p.charge(d(q.saturating_abs())) {
                Ok(l) => prop_assert!(l.amount_minor >= 0),
                Err(e) => prop_assert_eq!(e, PricingError::Overflow),
            }
        }
    }
}
