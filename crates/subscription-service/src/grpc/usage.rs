//! Usage: ingestion of record batches and the per-period rollup queries.

use chrono::{DateTime, Utc};
use ids::{TenantId, UserId};
use platform::grpc::{Caller, timestamp};
use pricing::{Decimal, period_containing};
use rpc::subscription::v1 as pb;

use crate::convert::{self, dec_pb};
use crate::domain::entitlement::{Facts, decide};
use crate::domain::plan::FeatureValue;
use crate::domain::usage::{RawRecord, Reject};
use crate::domain::{key, optional_user};
use crate::error::SubError;
use crate::store::usage::Bucket;
use crate::store::{self, seats, subscriptions};

use super::{SubscriptionApi, scoped_tenant};

impl SubscriptionApi {
    pub(super) async fn ingest_inner(
        &self,
        c: &Caller,
        r: pb::IngestUsageRequest,
    ) -> Result<pb::IngestUsageResponse, SubError> {
        let records: Vec<RawRecord<'_>> = r
            .records
            .iter()
            .map(|rec| RawRecord {
                id: &rec.id,
                tenant_id: &rec.tenant_id,
                user_id: &rec.user_id,
                metric: &rec.metric,
                quantity: rec.quantity.as_ref().map_or("", |q| q.value.as_str()),
                ts: rec
                    .timestamp
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
            })
            .collect();
        let only = (!c.is_operator()).then_some(&c.tenant_id);
        let done = self.inner.ingest(only, &records).await?;
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(pb::IngestUsageResponse {
            accepted: count(done.accepted),
            duplicates: count(done.duplicates),
            rejected: done
                .rejected
                .into_iter()
                .map(|r| pb::RejectedRecord {
                    index: r.index as u32,
                    id: r.id,
                    reason: match r.reason {
                        Reject::UnknownTenant => pb::RejectReason::UnknownTenant,
                        Reject::UnknownMetric => pb::RejectReason::UnknownMetric,
                        Reject::TooOld => pb::RejectReason::TooOld,
                        Reject::Invalid => pb::RejectReason::Invalid,
                    } as i32,
                    message: r.message,
                })
                .collect(),
        })
    }

    pub(super) async fn get_usage_inner(
        &self,
        c: &Caller,
        r: pb::GetUsageRequest,
    ) -> Result<pb::GetUsageResponse, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        key("metric", &r.metric)?;
        let from = convert::time("from", &r.from)?;
        let to = convert::time("to", &r.to)?;
        if to <= from {
            return Err(SubError::invalid("to", "must be after from"));
        }
        let (bucket, max_span) = match pb::Granularity::try_from(r.granularity) {
            Ok(pb::Granularity::Hour) => (Bucket::Hour, chrono::Duration::days(93)),
            Ok(pb::Granularity::Day) | Ok(pb::Granularity::Unspecified) => {
                (Bucket::Day, chrono::Duration::days(3 * 366))
            }
            Ok(pb::Granularity::Period) => (Bucket::Period, chrono::Duration::days(20 * 366)),
            Err(_) => return Err(SubError::invalid("granularity", "hour, day or period")),
        };
        if to - from > max_span {
            return Err(SubError::invalid(
                "to",
                format!(
                    "at most {} days after from at this granularity",
                    max_span.num_days()
                ),
            ));
        }
        let user = optional_user(r.user_id.as_deref())?;
        let mut conn = self.inner.pool.acquire().await?;
        let points =
            store::usage::series(&mut conn, &tenant, &r.metric, user, from, to, bucket).await?;
        let total: Decimal = points.iter().map(|(_, q)| *q).sum();
        Ok(pb::GetUsageResponse {
            points: points
                .into_iter()
                .map(|(t, q)| pb::UsagePoint {
                    start: Some(timestamp(t)),
                    quantity: Some(dec_pb(q)),
                })
                .collect(),
            total: Some(dec_pb(total)),
        })
    }

    /// The entitlement answer, from the cache or computed (and cached).
    pub async fn check(
        &self,
        tenant: &TenantId,
        user: Option<&str>,
        feature: &str,
    ) -> Result<pb::Entitlement, SubError> {
        let cache = &self.inner.cache;
        if let Some(hit) = cache.get(tenant, feature, user).await {
            return Ok(hit);
        }
        let mut conn = self.inner.pool.acquire().await?;
        let sub = subscriptions::get(&mut conn, tenant, false).await?;
        let (status, plan) = match &sub {
            Some(s) => (
                Some(s.status),
                Some(
                    self.inner
                        .plan_version(&mut conn, &s.plan_id, s.plan_version())
                        .await?,
                ),
            ),
            None => (None, None),
        };
        let feat = plan.as_ref().and_then(|p| p.def.feature(feature)).cloned();
        let used = match (&feat, &sub, &plan) {
            (Some(f), Some(s), Some(p)) => match &f.value {
                FeatureValue::Limit { metric, .. } => {
                    let period = period_containing(s.period_anchor, p.def.interval, Utc::now())
                        .ok_or_else(|| SubError::Corrupt("period out of range".into()))?;
                    store::usage::period_total(&mut conn, tenant, metric, period.start).await?
                }
                FeatureValue::Boolean { .. } => Decimal::ZERO,
            },
            _ => Decimal::ZERO,
        };
        let user_active = match user {
            // Members are users of the user service; any other id is no member.
            Some(u) => match UserId::parse(u) {
                Ok(u) => seats::member_active(&mut conn, tenant, &u).await?,
                Err(_) => None,
            },
            None => None,
        };
        let d = decide(Facts {
            status,
            feature: feat.as_ref(),
            used,
            user_active,
        });
        let answer = pb::Entitlement {
            allowed: d.allowed,
            limit: d.limit.map(dec_pb),
            used: Some(dec_pb(d.used)),
            remaining: d.remaining.map(dec_pb),
            reason: d.reason.to_string(),
        };
        cache.put(tenant, feature, user, &answer).await;
        Ok(answer)
    }
}
