//! Usage: ingestion of record batches and the per-period rollup queries.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use platform::grpc::{Caller, timestamp};
use pricing::{Decimal, period_containing};
use rpc::subscription::v1 as pb;

use crate::convert::{self, dec_pb};
use crate::domain::entitlement::{Facts, decide};
use crate::domain::plan::FeatureValue;
use crate::domain::status::SubStatus;
use crate::domain::usage::{self, MAX_BATCH, RawRecord, Reject};
use crate::domain::{key, optional_user};
use crate::error::SubError;
use crate::store::subscriptions;
use crate::store::usage::{Bucket, Placed};
use crate::store::{self, seats};

use super::{SubscriptionApi, scoped_tenant};

impl SubscriptionApi {
    pub(super) async fn ingest_inner(
        &self,
        c: &Caller,
        r: pb::IngestUsageRequest,
    ) -> Result<pb::IngestUsageResponse, SubError> {
        if r.records.len() > MAX_BATCH {
            return Err(SubError::invalid(
                "records",
                format!("at most {MAX_BATCH} per request"),
            ));
        }
        let now = Utc::now();
        let admin = c.is_operator();
        let mut rejected = Vec::new();
        let mut reject = |i: usize, id: &str, why: Reject, message: String| {
            rejected.push(pb::RejectedRecord {
                index: i as u32,
                id: id.chars().take(128).collect(),
                reason: match why {
                    Reject::UnknownTenant => pb::RejectReason::UnknownTenant,
                    Reject::UnknownMetric => pb::RejectReason::UnknownMetric,
                    Reject::TooOld => pb::RejectReason::TooOld,
                    Reject::Invalid => pb::RejectReason::Invalid,
                } as i32,
                message,
            })
        };
        let mut valid = Vec::with_capacity(r.records.len());
        for (i, rec) in r.records.iter().enumerate() {
            let raw = RawRecord {
                id: &rec.id,
                tenant_id: &rec.tenant_id,
                user_id: &rec.user_id,
                metric: &rec.metric,
                quantity: rec.quantity.as_ref().map_or("", |q| q.value.as_str()),
                ts: rec
                    .timestamp
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
            };
            match usage::validate(&raw, now, self.inner.settings.usage_grace) {
                Ok(v) if !admin && v.tenant_id != c.tenant_id => {
                    reject(i, &rec.id, Reject::UnknownTenant, "unknown tenant".into())
                }
                Ok(v) => valid.push((i, v)),
                Err((why, m)) => reject(i, &rec.id, why, m),
            }
        }
        // The subscriptions (and so periods and metrics) of the tenants in the batch.
        let tenants: Vec<String> = valid
            .iter()
            .map(|(_, v)| v.tenant_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut conn = self.inner.pool.acquire().await?;
        let subs = if tenants.is_empty() {
            vec![]
        } else {
            subscriptions::list(&mut conn, &tenants).await?
        };
        let mut meters = HashMap::new();
        for s in subs
            .into_iter()
            .filter(|s| s.status().is_ok_and(SubStatus::is_live))
        {
            let plan = self
                .plan_version(&mut conn, &s.plan_id, s.plan_version())
                .await?;
            let current = pricing::Period {
                start: s.period_start,
                end: s.period_end,
            };
            let metrics = plan.def.metrics();
            meters.insert(s.tenant_id.clone(), (s, plan, metrics, current));
        }
        let mut seen = BTreeSet::new();
        let mut duplicates = 0u32;
        let mut batch = Vec::with_capacity(valid.len());
        for (i, v) in valid {
            let Some((sub, plan, metrics, current)) = meters.get(&v.tenant_id) else {
                reject(
                    i,
                    &v.id,
                    Reject::UnknownTenant,
                    "unknown tenant (no live subscription)".into(),
                );
                continue;
            };
            if !metrics.contains(&v.metric) {
                reject(
                    i,
                    &v.id,
                    Reject::UnknownMetric,
                    format!("the tenant's plan has no metric {:?}", v.metric),
                );
                continue;
            }
            // Almost every record falls in the current period; only late ones need the search.
            let period = if current.contains(v.ts) {
                Some(*current)
            } else {
                // Usage stamped before the subscription began (clock skew, the grace window)
                // counts toward its first period rather than one it never had.
                period_containing(
                    sub.period_anchor,
                    plan.def.interval,
                    v.ts.max(sub.period_anchor),
                )
            };
            let Some(period) = period else {
                reject(i, &v.id, Reject::Invalid, "timestamp: out of range".into());
                continue;
            };
            if !seen.insert((v.tenant_id.clone(), v.id.clone())) {
                duplicates += 1;
                continue;
            }
            batch.push(Placed { record: v, period });
        }
        let (inserted, touched) = {
            let started = Instant::now();
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let out = store::usage::ingest(&mut tx, &batch).await?;
            tx.commit().await?;
            metrics::histogram!("usage_ingest_db_seconds").record(started.elapsed().as_secs_f64());
            out
        };
        duplicates += (batch.len() as u64 - inserted) as u32;
        metrics::counter!("usage_records_ingested_total").increment(inserted);
        metrics::counter!("usage_records_duplicate_total").increment(duplicates.into());
        metrics::counter!("usage_records_rejected_total").increment(rejected.len() as u64);
        self.inner.cache.invalidate_now(&touched).await;
        rejected.sort_by_key(|r| r.index);
        Ok(pb::IngestUsageResponse {
            accepted: inserted as u32,
            duplicates,
            rejected,
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
        tenant: &str,
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
                Some(s.status()?),
                Some(
                    self.plan_version(&mut conn, &s.plan_id, s.plan_version())
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
            Some(u) => seats::member_active(&mut conn, tenant, u).await?,
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
