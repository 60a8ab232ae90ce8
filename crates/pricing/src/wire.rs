//! Prices on the wire (`saas.subscription.v1.Price`), for the services that send and price
//! them: the subscription service stores plans, the billing service charges them. Decimals
//! travel as strings; a bad one is an `Invalid` error naming its field.

use rpc::common::v1 as common;
use rpc::subscription::v1 as pb;
use rpc::subscription::v1::price_model::{self as pm, Model};
use rust_decimal::Decimal;

use crate::{ChargeKind, Price, PriceModel, PricingError, Tier, Timing};

/// An optional decimal: absent or empty is `None`.
pub fn decimal(
    field: &'static str,
    v: &Option<common::Decimal>,
) -> Result<Option<Decimal>, PricingError> {
    match v {
        None => Ok(None),
        Some(d) if d.value.trim().is_empty() => Ok(None),
        Some(d) => d
            .value
            .trim()
            .parse::<Decimal>()
            .map(|d| Some(d.normalize()))
            .map_err(|_| {
                PricingError::invalid(field, format!("{:?} is not a decimal number", d.value))
            }),
    }
}

/// A required decimal.
pub fn required(field: &'static str, v: &Option<common::Decimal>) -> Result<Decimal, PricingError> {
    decimal(field, v)?.ok_or_else(|| PricingError::invalid(field, "required"))
}

/// A decimal as the wire carries it (normalised: `"1.50"` → `"1.5"`).
pub fn decimal_pb(d: Decimal) -> common::Decimal {
    common::Decimal {
        value: d.normalize().to_string(),
    }
}

fn tiers(t: &[pb::Tier]) -> Result<Vec<Tier>, PricingError> {
    t.iter()
        .map(|t| {
            Ok(Tier {
                up_to: decimal("tiers.up_to", &t.up_to)?,
                unit_amount: decimal("tiers.unit_amount", &t.unit_amount)?.unwrap_or_default(),
                flat_amount: decimal("tiers.flat_amount", &t.flat_amount)?.unwrap_or_default(),
            })
        })
        .collect()
}

fn model(m: &Option<pb::PriceModel>) -> Result<PriceModel, PricingError> {
    let m = m
        .as_ref()
        .and_then(|m| m.model.as_ref())
        .ok_or_else(|| PricingError::invalid("prices.model", "required"))?;
    Ok(match m {
        Model::Flat(f) => PriceModel::Flat {
            amount: required("prices.model.flat.amount", &f.amount)?,
        },
        Model::PerUnit(u) => PriceModel::PerUnit {
            unit_amount: required("prices.model.per_unit.unit_amount", &u.unit_amount)?,
        },
        Model::Graduated(t) => PriceModel::Graduated {
            tiers: tiers(&t.tiers)?,
        },
        Model::Volume(t) => PriceModel::Volume {
            tiers: tiers(&t.tiers)?,
        },
        Model::Package(p) => PriceModel::Package {
            package_size: required("prices.model.package.package_size", &p.package_size)?,
            package_amount: required("prices.model.package.package_amount", &p.package_amount)?,
        },
    })
}

fn model_pb(m: &PriceModel) -> pb::PriceModel {
    let tiers = |t: &[Tier]| pm::Tiers {
        tiers: t
            .iter()
            .map(|t| pb::Tier {
                up_to: t.up_to.map(decimal_pb),
                unit_amount: Some(decimal_pb(t.unit_amount)),
                flat_amount: Some(decimal_pb(t.flat_amount)),
            })
            .collect(),
    };
    let model = match m {
        PriceModel::Flat { amount } => Model::Flat(pm::Flat {
            amount: Some(decimal_pb(*amount)),
        }),
        PriceModel::PerUnit { unit_amount } => Model::PerUnit(pm::PerUnit {
            unit_amount: Some(decimal_pb(*unit_amount)),
        }),
        PriceModel::Graduated { tiers: t } => Model::Graduated(tiers(t)),
        PriceModel::Volume { tiers: t } => Model::Volume(tiers(t)),
        PriceModel::Package {
            package_size,
            package_amount,
        } => Model::Package(pm::Package {
            package_size: Some(decimal_pb(*package_size)),
            package_amount: Some(decimal_pb(*package_amount)),
        }),
    };
    pb::PriceModel { model: Some(model) }
}

/// A price from the wire (not yet validated: call [`Price::validate`]).
pub fn price_from_pb(x: &pb::Price) -> Result<Price, PricingError> {
    let kind = match pb::ChargeKind::try_from(x.kind) {
        Ok(pb::ChargeKind::Flat) => ChargeKind::Flat,
        Ok(pb::ChargeKind::Seat) => ChargeKind::Seat,
        Ok(pb::ChargeKind::Metered) => ChargeKind::Metered,
        _ => {
            return Err(PricingError::invalid(
                "prices.kind",
                "flat, seat or metered",
            ));
        }
    };
    Ok(Price {
        id: x.id.clone(),
        kind,
        metric: (!x.metric.is_empty()).then(|| x.metric.clone()),
        model: model(&x.model)?,
        included_quantity: decimal("prices.included_quantity", &x.included_quantity)?
            .unwrap_or_default(),
        minimum_amount_minor: x.minimum_amount_cents,
        billing: match pb::PriceTiming::try_from(x.billing) {
            Ok(pb::PriceTiming::Unspecified) => None,
            Ok(pb::PriceTiming::Advance) => Some(Timing::Advance),
            Ok(pb::PriceTiming::Arrears) => Some(Timing::Arrears),
            Err(_) => {
                return Err(PricingError::invalid(
                    "prices.billing",
                    "advance or arrears",
                ));
            }
        },
    })
}

pub fn price_to_pb(p: &Price) -> pb::Price {
    pb::Price {
        id: p.id.clone(),
        kind: match p.kind {
            ChargeKind::Flat => pb::ChargeKind::Flat,
            ChargeKind::Seat => pb::ChargeKind::Seat,
            ChargeKind::Metered => pb::ChargeKind::Metered,
        } as i32,
        metric: p.metric.clone().unwrap_or_default(),
        model: Some(model_pb(&p.model)),
        included_quantity: Some(decimal_pb(p.included_quantity)),
        minimum_amount_cents: p.minimum_amount_minor,
        billing: match p.billing {
            None => pb::PriceTiming::Unspecified,
            Some(Timing::Advance) => pb::PriceTiming::Advance,
            Some(Timing::Arrears) => pb::PriceTiming::Arrears,
        } as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_trip_and_bad_decimals_are_named() {
        let p = Price {
            id: "calls".into(),
            kind: ChargeKind::Metered,
            metric: Some("api_calls".into()),
            model: PriceModel::Graduated {
                tiers: vec![
                    Tier {
                        up_to: Some(Decimal::from(10)),
                        unit_amount: Decimal::new(25, 2),
                        flat_amount: Decimal::ZERO,
                    },
                    Tier {
                        up_to: None,
                        unit_amount: Decimal::new(1, 1),
                        flat_amount: Decimal::from(100),
                    },
                ],
            },
            included_quantity: Decimal::from(5),
            minimum_amount_minor: Some(300),
            billing: Some(Timing::Arrears),
        };
        assert_eq!(price_from_pb(&price_to_pb(&p)).unwrap(), p);
        for billing in [None, Some(Timing::Advance)] {
            let flat = Price {
                kind: ChargeKind::Flat,
                metric: None,
                billing,
                ..p.clone()
            };
            assert_eq!(price_from_pb(&price_to_pb(&flat)).unwrap(), flat);
        }
        let mut bad = price_to_pb(&p);
        if let Some(Model::Graduated(t)) = bad.model.as_mut().and_then(|m| m.model.as_mut()) {
            t.tiers[0].unit_amount = Some(common::Decimal {
                value: "1,5".into(),
            });
        }
        match price_from_pb(&bad) {
            Err(PricingError::Invalid { field, .. }) => assert_eq!(field, "tiers.unit_amount"),
            other => panic!("{other:?}"),
        }
    }
}
