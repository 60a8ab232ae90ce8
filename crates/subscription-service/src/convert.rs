//! Wire ⇄ domain conversions for `saas.subscription.v1`.

use chrono::{DateTime, Utc};
use platform::grpc::timestamp;
use pricing::{ChargeKind, Currency, Decimal, Interval, Price, PriceModel, SeatSegment, Tier};
use rpc::common::v1 as common;
use rpc::subscription::v1 as pb;

use crate::domain::plan::{Feature, FeatureValue, LimitKind, PlanDef};
use crate::error::SubError;
use crate::store::plans::PlanRow;
use crate::store::subscriptions::SubRow;

pub fn dec(field: &'static str, v: &Option<common::Decimal>) -> Result<Option<Decimal>, SubError> {
    match v {
        None => Ok(None),
        Some(d) if d.value.trim().is_empty() => Ok(None),
        Some(d) => d
            .value
            .trim()
            .parse::<Decimal>()
            .map(|d| Some(d.normalize()))
            .map_err(|_| {
                SubError::invalid(field, format!("{:?} is not a decimal number", d.value))
            }),
    }
}

fn required(field: &'static str, v: &Option<common::Decimal>) -> Result<Decimal, SubError> {
    dec(field, v)?.ok_or_else(|| SubError::invalid(field, "required"))
}

pub fn dec_pb(d: Decimal) -> common::Decimal {
    common::Decimal {
        value: d.normalize().to_string(),
    }
}

pub fn time(
    field: &'static str,
    t: &Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, SubError> {
    let t = t
        .as_ref()
        .ok_or_else(|| SubError::invalid(field, "required"))?;
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .ok_or_else(|| SubError::invalid(field, "out of range"))
}

pub fn period(p: &Option<common::Period>) -> Result<pricing::Period, SubError> {
    let p = p
        .as_ref()
        .ok_or_else(|| SubError::invalid("period", "required"))?;
    let start = time("period.start", &p.start)?;
    let end = time("period.end", &p.end)?;
    pricing::Period::new(start, end)
        .map_err(|_| SubError::invalid("period", "end must be after start"))
}

pub fn period_pb(start: DateTime<Utc>, end: DateTime<Utc>) -> common::Period {
    common::Period {
        start: Some(timestamp(start)),
        end: Some(timestamp(end)),
    }
}

fn tiers(t: &[pb::Tier]) -> Result<Vec<Tier>, SubError> {
    t.iter()
        .map(|t| {
            Ok(Tier {
                up_to: dec("tiers.up_to", &t.up_to)?,
                unit_amount: dec("tiers.unit_amount", &t.unit_amount)?.unwrap_or_default(),
                flat_amount: dec("tiers.flat_amount", &t.flat_amount)?.unwrap_or_default(),
            })
        })
        .collect()
}

fn model(m: &Option<pb::PriceModel>) -> Result<PriceModel, SubError> {
    use pb::price_model::Model;
    let m = m
        .as_ref()
        .and_then(|m| m.model.as_ref())
        .ok_or_else(|| SubError::invalid("prices.model", "required"))?;
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
    use pb::price_model::{self as pm, Model};
    let tiers = |t: &[Tier]| pm::Tiers {
        tiers: t
            .iter()
            .map(|t| pb::Tier {
                up_to: t.up_to.map(dec_pb),
                unit_amount: Some(dec_pb(t.unit_amount)),
                flat_amount: Some(dec_pb(t.flat_amount)),
            })
            .collect(),
    };
    let model = match m {
        PriceModel::Flat { amount } => Model::Flat(pm::Flat {
            amount: Some(dec_pb(*amount)),
        }),
        PriceModel::PerUnit { unit_amount } => Model::PerUnit(pm::PerUnit {
            unit_amount: Some(dec_pb(*unit_amount)),
        }),
        PriceModel::Graduated { tiers: t } => Model::Graduated(tiers(t)),
        PriceModel::Volume { tiers: t } => Model::Volume(tiers(t)),
        PriceModel::Package {
            package_size,
            package_amount,
        } => Model::Package(pm::Package {
            package_size: Some(dec_pb(*package_size)),
            package_amount: Some(dec_pb(*package_amount)),
        }),
    };
    pb::PriceModel { model: Some(model) }
}

pub fn plan_def(p: &pb::Plan) -> Result<PlanDef, SubError> {
    let currency = Currency::parse(&p.currency)
        .map_err(|_| SubError::invalid("currency", "a three-letter ISO 4217 code"))?;
    let interval = match pb::Interval::try_from(p.interval) {
        Ok(pb::Interval::Month) => Interval::Month,
        Ok(pb::Interval::Year) => Interval::Year,
        _ => return Err(SubError::invalid("interval", "month or year")),
    };
    let prices = p
        .prices
        .iter()
        .map(|x| {
            let kind = match pb::ChargeKind::try_from(x.kind) {
                Ok(pb::ChargeKind::Flat) => ChargeKind::Flat,
                Ok(pb::ChargeKind::Seat) => ChargeKind::Seat,
                Ok(pb::ChargeKind::Metered) => ChargeKind::Metered,
                _ => return Err(SubError::invalid("prices.kind", "flat, seat or metered")),
            };
            Ok(Price {
                id: x.id.clone(),
                kind,
                metric: (!x.metric.is_empty()).then(|| x.metric.clone()),
                model: model(&x.model)?,
                included_quantity: dec("prices.included_quantity", &x.included_quantity)?
                    .unwrap_or_default(),
                minimum_amount_minor: x.minimum_amount_cents,
            })
        })
        .collect::<Result<Vec<_>, SubError>>()?;
    let features = p
        .features
        .iter()
        .map(|f| {
            use pb::feature::Value;
            let value = match &f.value {
                Some(Value::Enabled(b)) => FeatureValue::Boolean { enabled: *b },
                Some(Value::Limit(l)) => FeatureValue::Limit {
                    metric: l.metric.clone(),
                    limit: required("features.limit.limit", &l.limit)?,
                    kind: match pb::LimitKind::try_from(l.kind) {
                        Ok(pb::LimitKind::Hard) => LimitKind::Hard,
                        Ok(pb::LimitKind::Soft) => LimitKind::Soft,
                        _ => return Err(SubError::invalid("features.limit.kind", "hard or soft")),
                    },
                },
                None => return Err(SubError::invalid("features.value", "enabled or limit")),
            };
            Ok(Feature {
                key: f.key.clone(),
                value,
            })
        })
        .collect::<Result<Vec<_>, SubError>>()?;
    Ok(PlanDef {
        name: p.name.trim().to_string(),
        currency,
        interval,
        trial_days: p.trial_days,
        fixed_seats: p.fixed_seats,
        rate_limit: p.rate_limit.map(|r| (r.per_sec, r.burst)),
        prices,
        features,
        archived: p.archived,
    })
}

pub fn plan_pb(row: &PlanRow) -> pb::Plan {
    let d = &row.def;
    pb::Plan {
        id: row.id.clone(),
        version: row.version,
        name: d.name.clone(),
        currency: d.currency.to_string(),
        interval: match d.interval {
            Interval::Month => pb::Interval::Month,
            Interval::Year => pb::Interval::Year,
        } as i32,
        prices: d
            .prices
            .iter()
            .map(|p| pb::Price {
                id: p.id.clone(),
                kind: match p.kind {
                    ChargeKind::Flat => pb::ChargeKind::Flat,
                    ChargeKind::Seat => pb::ChargeKind::Seat,
                    ChargeKind::Metered => pb::ChargeKind::Metered,
                } as i32,
                metric: p.metric.clone().unwrap_or_default(),
                model: Some(model_pb(&p.model)),
                included_quantity: Some(dec_pb(p.included_quantity)),
                minimum_amount_cents: p.minimum_amount_minor,
            })
            .collect(),
        features: d
            .features
            .iter()
            .map(|f| pb::Feature {
                key: f.key.clone(),
                value: Some(match &f.value {
                    FeatureValue::Boolean { enabled } => pb::feature::Value::Enabled(*enabled),
                    FeatureValue::Limit {
                        metric,
                        limit,
                        kind,
                    } => pb::feature::Value::Limit(pb::feature::MeteredLimit {
                        metric: metric.clone(),
                        limit: Some(dec_pb(*limit)),
                        kind: match kind {
                            LimitKind::Hard => pb::LimitKind::Hard,
                            LimitKind::Soft => pb::LimitKind::Soft,
                        } as i32,
                    }),
                }),
            })
            .collect(),
        trial_days: d.trial_days,
        archived: d.archived,
        created_at: Some(timestamp(row.created_at)),
        fixed_seats: d.fixed_seats,
        rate_limit: d
            .rate_limit
            .map(|(per_sec, burst)| pb::RateLimit { per_sec, burst }),
    }
}

pub fn sub_pb(s: &SubRow) -> pb::Subscription {
    use crate::domain::status::SubStatus;
    pb::Subscription {
        id: s.id.clone(),
        tenant_id: s.tenant_id.clone(),
        plan_id: s.plan_id.clone(),
        plan_version: s.plan_version(),
        status: match s.status() {
            Ok(SubStatus::Trialing) => pb::SubscriptionStatus::Trialing,
            Ok(SubStatus::Active) => pb::SubscriptionStatus::Active,
            Ok(SubStatus::PastDue) => pb::SubscriptionStatus::PastDue,
            Ok(SubStatus::Suspended) => pb::SubscriptionStatus::Suspended,
            Ok(SubStatus::Canceled) => pb::SubscriptionStatus::Canceled,
            Err(_) => pb::SubscriptionStatus::Unspecified,
        } as i32,
        current_period: Some(period_pb(s.period_start, s.period_end)),
        trial_end: s.trial_end.map(timestamp),
        cancel_at_period_end: s.cancel_at_period_end,
        canceled_at: s.canceled_at.map(timestamp),
        seats: u32::try_from(s.seats).unwrap_or(0),
        created_at: Some(timestamp(s.created_at)),
    }
}

pub fn segment_pb(s: &SeatSegment) -> pb::SeatSegment {
    pb::SeatSegment {
        from: Some(timestamp(s.from)),
        to: s.to.map(timestamp),
        seats: s.seats,
    }
}
