//! Wire ⇄ domain conversions for `saas.subscription.v1`.

use chrono::{DateTime, Utc};
use platform::grpc::timestamp;
use pricing::{Currency, Decimal, Interval, SeatSegment};
use rpc::common::v1 as common;
use rpc::subscription::v1 as pb;

use crate::domain::plan::{Feature, FeatureValue, LimitKind, PlanDef};
use crate::domain::usage::{Columns, Record};
use crate::error::SubError;
use crate::store::plans::PlanRow;
use crate::store::subscriptions::SubRow;

pub use pricing::wire::decimal_pb as dec_pb;

fn pricing_err(e: pricing::PricingError) -> SubError {
    crate::domain::Invalid::from(e).into()
}

pub fn dec(field: &'static str, v: &Option<common::Decimal>) -> Result<Option<Decimal>, SubError> {
    pricing::wire::decimal(field, v).map_err(pricing_err)
}

fn required(field: &'static str, v: &Option<common::Decimal>) -> Result<Decimal, SubError> {
    pricing::wire::required(field, v).map_err(pricing_err)
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
        .map(pricing::wire::price_from_pb)
        .collect::<Result<Vec<_>, _>>()
        .map_err(crate::domain::Invalid::from)?;
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
        id: row.id.to_string(),
        version: row.version,
        name: d.name.clone(),
        currency: d.currency.to_string(),
        interval: match d.interval {
            Interval::Month => pb::Interval::Month,
            Interval::Year => pb::Interval::Year,
        } as i32,
        prices: d.prices.iter().map(pricing::wire::price_to_pb).collect(),
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
        id: s.id.to_string(),
        tenant_id: s.tenant_id.to_string(),
        plan_id: s.plan_id.to_string(),
        plan_version: s.plan_version(),
        status: match s.status {
            SubStatus::Trialing => pb::SubscriptionStatus::Trialing,
            SubStatus::Active => pb::SubscriptionStatus::Active,
            SubStatus::PastDue => pb::SubscriptionStatus::PastDue,
            SubStatus::Suspended => pb::SubscriptionStatus::Suspended,
            SubStatus::Canceled => pb::SubscriptionStatus::Canceled,
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

pub fn record_pb(r: Record) -> pb::UsageRecord {
    pb::UsageRecord {
        id: r.id,
        tenant_id: r.tenant_id.into(),
        user_id: r.user_id,
        metric: r.metric,
        quantity: Some(dec_pb(r.quantity)),
        timestamp: Some(timestamp(r.ts)),
    }
}

/// Quantities go as integer units and a scale (`1.50` as 150 / 10^2, or normalized to 15 /
/// 10^1 when the units would not fit an int64); the rare one whose digits exceed an int64
/// even then goes exactly in `wide`.
pub fn columns_pb(c: Columns) -> pb::UsageColumns {
    let mut units = Vec::with_capacity(c.quantity.len());
    let mut scale = Vec::with_capacity(c.quantity.len());
    let mut wide = std::collections::HashMap::new();
    for (i, q) in c.quantity.iter().enumerate() {
        // Normalizing (a division per trailing zero) only when the units do not fit as they
        // are: `5.000000` from a `numeric(…, 6)` column.
        let fits = |q: &Decimal| i64::try_from(q.mantissa()).ok().map(|u| (u, q.scale()));
        match fits(q).or_else(|| fits(&q.normalize())) {
            Some((u, s)) => {
                units.push(u);
                scale.push(s);
            }
            None => {
                units.push(0);
                scale.push(0);
                let i = u32::try_from(i).expect("a batch holds at most 8192 records");
                wide.insert(i, dec_pb(q.normalize()));
            }
        }
    }
    pb::UsageColumns {
        strings: c.strings,
        tenant: c.tenant,
        user: c.user,
        metric: c.metric,
        units,
        scale,
        wide,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_quantities_are_exact_including_wide_ones() {
        let wide: Decimal = "999999999999.999999999999".parse().unwrap();
        let mut c = Columns::default();
        for q in [
            Decimal::new(150, 2),
            wide,
            Decimal::ZERO,
            Decimal::new(7, 0),
            // 5 with 20 zeros after the point: its units fit an int64 only normalized.
            Decimal::from_i128_with_scale(5 * 10i128.pow(20), 20),
        ] {
            c.push("ten_1", "", "api_calls", q);
        }
        let pb = columns_pb(c);
        assert_eq!(pb.units, [150, 0, 0, 7, 5]);
        assert_eq!(pb.scale, [2, 0, 0, 0, 0]);
        assert_eq!(pb.wide.len(), 1);
        assert_eq!(pb.wide[&1].value.parse::<Decimal>().unwrap(), wide);
    }
}
