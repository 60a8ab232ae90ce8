//! `saas.subscription.v1.SubscriptionService`: transport only. Requests are validated into
//! domain values, stored through `store`, and converted back here.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::Stream;
use platform::events::{CloudEvent, enqueue};
use platform::grpc::{Caller, timestamp};
use platform::paging;
use pricing::{Decimal, period_containing};
use rpc::common::v1::PageResponse;
use rpc::subscription::v1 as pb;
use rpc::subscription::v1::subscription_service_server::SubscriptionService;
use sqlx::{PgConnection, PgPool};
use tonic::{Request, Response, Status};

use crate::cache::EntitlementCache;
use crate::convert::{self, dec_pb, plan_pb, segment_pb, sub_pb};
use crate::domain::entitlement::{Facts, decide};
use crate::domain::phases::plan_phases;
use crate::domain::plan::{FeatureValue, MAX_TRIAL_DAYS};
use crate::domain::status::SubStatus;
use crate::domain::usage::{self, MAX_BATCH, RawRecord, Reject};
use crate::domain::{is_key, key, optional_user};
use crate::error::SubError;
use crate::settings::Settings;
use crate::store::plans::{self, PlanCache, PlanRow};
use crate::store::subscriptions::{self, NewSub, SubRow};
use crate::store::usage::{Bucket, Placed};
use crate::store::{self, seats};

pub(crate) const SOURCE: &str = "/services/subscription";

/// Seats an explicit quantity may hold.
const MAX_SEATS: u32 = 1_000_000;

/// The gRPC API over the service's database.
#[derive(Debug, Clone)]
pub struct SubscriptionApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    plans: PlanCache,
    cache: EntitlementCache,
    settings: Settings,
}

type Reply<T> = Result<Response<T>, Status>;

fn caller<T>(req: &Request<T>) -> Result<Caller, SubError> {
    Ok(Caller::of(req)?)
}

/// The tenant a request may touch (`Caller::scope`), owned.
fn scoped_tenant(c: &Caller, tenant_id: &str) -> Result<String, SubError> {
    Ok(c.scope(tenant_id)?.to_string())
}

fn plan_id(field: &'static str, id: &str) -> Result<String, SubError> {
    key(field, id)?;
    Ok(id.to_string())
}

pub(crate) fn subscription_event(kind: &str, s: &SubRow, extra: serde_json::Value) -> CloudEvent {
    let mut data = serde_json::json!({
        "tenant_id": s.tenant_id,
        "subscription_id": s.id,
        "plan_id": s.plan_id,
        "plan_version": s.plan_version,
        "status": s.status,
        "seats": s.seats,
        "period_start": s.period_start,
        "period_end": s.period_end,
    });
    if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
        d.extend(e);
    }
    CloudEvent::new(SOURCE, kind, data)
        .with_tenant(&s.tenant_id)
        .with_subject(&s.id)
}

impl SubscriptionApi {
    pub fn new(pool: PgPool, cache: EntitlementCache, settings: Settings) -> Self {
        SubscriptionApi {
            inner: Arc::new(Inner {
                pool,
                plans: PlanCache::default(),
                cache,
                settings,
            }),
        }
    }

    async fn plan_version(
        &self,
        conn: &mut PgConnection,
        id: &str,
        version: u32,
    ) -> Result<Arc<PlanRow>, SubError> {
        self.inner
            .plans
            .get(conn, id, version)
            .await?
            .ok_or(SubError::NotFound("plan"))
    }

    /// The latest version (version 0) or the given one.
    async fn resolve_plan(
        &self,
        conn: &mut PgConnection,
        id: &str,
        version: u32,
    ) -> Result<Arc<PlanRow>, SubError> {
        if version == 0 {
            let latest = plans::latest(conn, id, false)
                .await?
                .ok_or(SubError::NotFound("plan"))?;
            Ok(Arc::new(latest))
        } else {
            self.plan_version(conn, id, version).await
        }
    }

    async fn create_plan_inner(
        &self,
        c: &Caller,
        r: pb::CreatePlanRequest,
    ) -> Result<pb::Plan, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let p = r
            .plan
            .ok_or_else(|| SubError::invalid("plan", "required"))?;
        let id = if p.id.is_empty() {
            format!("pln_{}", uuid::Uuid::now_v7().simple())
        } else {
            plan_id("plan.id", &p.id)?
        };
        let def = convert::plan_def(&p)?;
        def.validate()?;
        let mut conn = self.inner.pool.acquire().await?;
        let row = plans::insert(&mut conn, &id, 1, &def)
            .await
            .map_err(|e| match e {
                SubError::Db(ref d) if store::is_unique_violation(d) => SubError::Conflict(
                    "a plan with this id exists; edit it to make a new version".into(),
                ),
                e => e,
            })?;
        Ok(plan_pb(&row))
    }

    async fn update_plan_inner(
        &self,
        c: &Caller,
        r: pb::UpdatePlanRequest,
    ) -> Result<pb::Plan, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let id = plan_id("plan_id", &r.plan_id)?;
        let p = r
            .plan
            .ok_or_else(|| SubError::invalid("plan", "required"))?;
        let def = convert::plan_def(&p)?;
        def.validate()?;
        let mut tx = self.inner.pool.begin().await?;
        let latest = plans::latest(&mut tx, &id, true)
            .await?
            .ok_or(SubError::NotFound("plan"))?;
        if latest.def.currency != def.currency {
            return Err(SubError::invalid(
                "currency",
                "a plan's currency cannot change (subscribers are billed in it); make a new plan",
            ));
        }
        let row = plans::insert(&mut tx, &id, latest.version + 1, &def).await?;
        tx.commit().await?;
        Ok(plan_pb(&row))
    }

    async fn get_plan_inner(&self, r: pb::GetPlanRequest) -> Result<pb::Plan, SubError> {
        let id = is_key(&r.plan_id)
            .then_some(r.plan_id.as_str())
            .ok_or(SubError::NotFound("plan"))?;
        let mut conn = self.inner.pool.acquire().await?;
        Ok(plan_pb(
            &*self.resolve_plan(&mut conn, id, r.version).await?,
        ))
    }

    async fn list_plans_inner(
        &self,
        r: pb::ListPlansRequest,
    ) -> Result<pb::ListPlansResponse, SubError> {
        let page = r.page.unwrap_or_default();
        let after = paging::after(&page.cursor)?;
        let limit = paging::limit(page.limit);
        let mut conn = self.inner.pool.acquire().await?;
        let rows = plans::list(&mut conn, after.as_deref(), limit, r.include_archived).await?;
        let page = paging::page(rows, limit, |p| p.id.clone());
        Ok(pb::ListPlansResponse {
            plans: page.rows.iter().map(plan_pb).collect(),
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
                has_more: page.has_more,
            }),
        })
    }

    async fn create_subscription_inner(
        &self,
        c: &Caller,
        r: pb::CreateSubscriptionRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let plan_id = plan_id("plan_id", &r.plan_id)?;
        if r.seats.is_some_and(|s| s > MAX_SEATS) {
            return Err(SubError::invalid("seats", format!("at most {MAX_SEATS}")));
        }
        let mut tx = self.inner.pool.begin().await?;
        let plan = plans::latest(&mut tx, &plan_id, false)
            .await?
            .ok_or(SubError::NotFound("plan"))?;
        if plan.def.archived {
            return Err(SubError::FailedPrecondition("the plan is archived".into()));
        }
        let trial_days = r.trial_days.unwrap_or(plan.def.trial_days);
        if trial_days > MAX_TRIAL_DAYS {
            return Err(SubError::invalid(
                "trial_days",
                format!("at most {MAX_TRIAL_DAYS}"),
            ));
        }
        // A canceled subscription stays (billing and history need it); a new one may follow.
        if let Some(existing) = subscriptions::get(&mut tx, &tenant, true).await?
            && existing.status()?.is_live()
        {
            return Err(SubError::Conflict(
                "the tenant already has a subscription".into(),
            ));
        }
        let fixed_seats = match (plan.def.fixed_seats, r.seats) {
            (true, s) => Some(s.unwrap_or(1)),
            (false, s) => s,
        };
        let seats = match fixed_seats {
            Some(n) => n,
            None => seats::count_active(&mut tx, &tenant).await?,
        };
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let period = period_containing(now, plan.def.interval, now)
            .ok_or_else(|| SubError::Corrupt("period out of range".into()))?;
        let trial_end = (trial_days > 0).then(|| now + chrono::Duration::days(trial_days.into()));
        let id = format!("sub_{}", uuid::Uuid::now_v7().simple());
        let row = subscriptions::insert(
            &mut tx,
            &NewSub {
                id: &id,
                tenant_id: &tenant,
                plan_id: &plan.id,
                plan_version: plan.version,
                status: if trial_end.is_some() {
                    SubStatus::Trialing
                } else {
                    SubStatus::Active
                },
                anchor: now,
                period,
                trial_end,
                fixed_seats,
                seats,
            },
        )
        .await
        .map_err(|e| match e {
            SubError::Db(ref d) if store::is_unique_violation(d) => {
                SubError::Conflict("the tenant already has a subscription".into())
            }
            e => e,
        })?;
        seats::set_seats(&mut tx, &tenant, seats, now).await?;
        enqueue(
            &mut tx,
            &subscription_event("subscription.created", &row, serde_json::json!({})),
        )
        .await?;
        tx.commit().await?;
        self.inner.cache.invalidate_now(&[tenant]).await;
        Ok(sub_pb(&row))
    }

    async fn get_subscription_inner(
        &self,
        c: &Caller,
        r: pb::GetSubscriptionRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut conn = self.inner.pool.acquire().await?;
        let row = subscriptions::get(&mut conn, &tenant, false)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        Ok(sub_pb(&row))
    }

    async fn change_plan_inner(
        &self,
        c: &Caller,
        r: pb::ChangePlanRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let to_id = plan_id("plan_id", &r.plan_id)?;
        let mut tx = self.inner.pool.begin().await?;
        let mut sub = subscriptions::get(&mut tx, &tenant, true)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        if !sub.status()?.is_live() {
            return Err(SubError::FailedPrecondition(
                "the subscription is canceled".into(),
            ));
        }
        let to = self.resolve_plan(&mut tx, &to_id, r.plan_version).await?;
        if r.plan_version == 0 && to.def.archived {
            return Err(SubError::FailedPrecondition("the plan is archived".into()));
        }
        if to.id == sub.plan_id && to.version == sub.plan_version() {
            return Ok(sub_pb(&sub));
        }
        let from = self
            .plan_version(&mut tx, &sub.plan_id, sub.plan_version())
            .await?;
        if from.def.currency != to.def.currency {
            return Err(SubError::FailedPrecondition(format!(
                "the subscription is billed in {}; the plan is in {}",
                from.def.currency, to.def.currency
            )));
        }
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let period = pricing::Period::new(sub.period_start, sub.period_end)
            .map_err(|e| SubError::Corrupt(e.to_string()))?;
        let seat_count = u32::try_from(sub.seats).unwrap_or(0);
        let overflow = |_| SubError::FailedPrecondition("the plan's charges overflow".into());
        // Nothing is billed during a trial, so there is nothing to prorate.
        let proration = if sub.status()? == SubStatus::Trialing {
            pricing::PlanChangeProration {
                credit_minor: 0,
                charge_minor: 0,
            }
        } else {
            pricing::plan_change(
                from.def.recurring_minor(seat_count).map_err(overflow)?,
                to.def.recurring_minor(seat_count).map_err(overflow)?,
                &period,
                now,
            )
            .map_err(overflow)?
        };
        subscriptions::record_plan_change(
            &mut tx,
            &tenant,
            (&from.id, from.version),
            (&to.id, to.version),
            now,
            &period,
            from.def.currency.as_str(),
            &proration,
        )
        .await?;
        sub.plan_id = to.id.clone();
        sub.plan_version = to.version as i32;
        if to.def.fixed_seats && sub.fixed_seats.is_none() {
            sub.fixed_seats = Some(sub.seats);
        }
        if to.def.interval != from.def.interval {
            // A new cadence starts a new period now; the old one was settled by the proration.
            let p = period_containing(now, to.def.interval, now)
                .ok_or_else(|| SubError::Corrupt("period out of range".into()))?;
            sub.period_anchor = now;
            sub.period_start = p.start;
            sub.period_end = p.end;
        }
        let row = subscriptions::save(&mut tx, &sub).await?;
        enqueue(
            &mut tx,
            &subscription_event(
                "subscription.plan_changed",
                &row,
                serde_json::json!({
                    "from_plan_id": from.id, "from_plan_version": from.version,
                    "currency": from.def.currency.as_str(),
                    "proration_credit_minor": proration.credit_minor,
                    "proration_charge_minor": proration.charge_minor,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.inner.cache.invalidate_now(&[tenant]).await;
        Ok(sub_pb(&row))
    }

    async fn cancel_inner(
        &self,
        c: &Caller,
        r: pb::CancelSubscriptionRequest,
    ) -> Result<pb::Subscription, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut tx = self.inner.pool.begin().await?;
        let mut sub = subscriptions::get(&mut tx, &tenant, true)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        if sub.status()? == SubStatus::Canceled {
            return Ok(sub_pb(&sub));
        }
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&mut *tx)
            .await?;
        let kind = if r.immediately {
            sub.status = SubStatus::Canceled.as_str().into();
            sub.canceled_at = Some(now);
            sub.cancel_at_period_end = false;
            seats::close(&mut tx, &tenant, now).await?;
            "subscription.canceled"
        } else {
            sub.cancel_at_period_end = true;
            "subscription.cancel_scheduled"
        };
        let row = subscriptions::save(&mut tx, &sub).await?;
        enqueue(
            &mut tx,
            &subscription_event(kind, &row, serde_json::json!({})),
        )
        .await?;
        tx.commit().await?;
        self.inner.cache.invalidate_now(&[tenant]).await;
        Ok(sub_pb(&row))
    }

    async fn seat_history_inner(
        &self,
        c: &Caller,
        r: pb::GetSubscriptionRequest,
    ) -> Result<pb::ListSeatHistoryResponse, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut conn = self.inner.pool.acquire().await?;
        subscriptions::get(&mut conn, &tenant, false)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        let segments = seats::history(&mut conn, &tenant, None, None).await?;
        Ok(pb::ListSeatHistoryResponse {
            segments: segments.iter().map(segment_pb).collect(),
        })
    }

    async fn ingest_inner(
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

    async fn get_usage_inner(
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

    async fn check_inner(
        &self,
        c: &Caller,
        r: pb::CheckEntitlementRequest,
    ) -> Result<pb::Entitlement, SubError> {
        let started = Instant::now();
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        key("feature", &r.feature)?;
        let user = optional_user(r.user_id.as_deref())?;
        let answer = self.check(&tenant, user, &r.feature).await?;
        metrics::histogram!("entitlement_check_seconds").record(started.elapsed().as_secs_f64());
        Ok(answer)
    }

    async fn tenant_limits_inner(
        &self,
        c: &Caller,
        r: pb::GetTenantLimitsRequest,
    ) -> Result<pb::TenantLimits, SubError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let mut conn = self.inner.pool.acquire().await?;
        let Some(sub) = subscriptions::get(&mut conn, &tenant, false).await? else {
            return Ok(pb::TenantLimits::default());
        };
        if !sub.status()?.is_live() {
            return Ok(pb::TenantLimits::default());
        }
        let plan = self
            .plan_version(&mut conn, &sub.plan_id, sub.plan_version())
            .await?;
        Ok(pb::TenantLimits {
            rate_limit: plan
                .def
                .rate_limit
                .map(|(per_sec, burst)| pb::RateLimit { per_sec, burst }),
        })
    }

    async fn stream_usage_inner(
        &self,
        c: &Caller,
        r: pb::StreamUsageRequest,
    ) -> Result<UsageStream, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let period = convert::period(&r.period)?;
        let size = match r.batch_size {
            0 => 4096,
            n @ 1..=8192 => n as usize,
            _ => return Err(SubError::invalid("batch_size", "1 to 8192")),
        };
        let tenants = if r.tenant_ids.is_empty() {
            let mut conn = self.inner.pool.acquire().await?;
            subscriptions::list(&mut conn, &[])
                .await?
                .into_iter()
                .map(|s| s.tenant_id)
                .collect()
        } else {
            r.tenant_ids
        };
        if r.columnar {
            Ok(usage_stream(self, tenants, period, size, |c| {
                pb::UsageBatch {
                    records: Vec::new(),
                    columns: Some(convert::columns_pb(c)),
                }
            }))
        } else {
            Ok(usage_stream(self, tenants, period, size, |rows: Vec<_>| {
                pb::UsageBatch {
                    records: rows.into_iter().map(convert::record_pb).collect(),
                    columns: None,
                }
            }))
        }
    }

    async fn billable_inner(
        &self,
        c: &Caller,
        r: pb::ListBillableSubscriptionsRequest,
    ) -> Result<BillableStream, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let period = convert::period(&r.period)?;
        let mut conn = self.inner.pool.acquire().await?;
        let subs = subscriptions::list(&mut conn, &r.tenant_ids).await?;
        let mut out = Vec::new();
        for s in subs {
            let ended_before = s.canceled_at.is_some_and(|t| t <= period.start);
            if s.created_at >= period.end || ended_before {
                continue;
            }
            let changes = subscriptions::plan_changes(
                &mut conn,
                &s.tenant_id,
                period.start.max(s.created_at),
                period.end,
                s.canceled_at,
            )
            .await?;
            let current = (s.plan_id.clone(), s.plan_version());
            let mut phases = Vec::new();
            for p in plan_phases(&period, current, &changes) {
                let plan = self.plan_version(&mut conn, &p.plan.0, p.plan.1).await?;
                phases.push(pb::PlanPhase {
                    plan: Some(plan_pb(&plan)),
                    start: Some(timestamp(p.start)),
                    end: Some(timestamp(p.end)),
                });
            }
            let segments = seats::history(
                &mut conn,
                &s.tenant_id,
                Some(period.start),
                Some(period.end),
            )
            .await?;
            out.push(Ok(pb::BillableSubscription {
                subscription: Some(sub_pb(&s)),
                plan: phases.last().and_then(|p| p.plan.clone()),
                seats: segments.iter().map(segment_pb).collect(),
                phases,
            }));
        }
        Ok(Box::pin(futures::stream::iter(out)))
    }
}

type UsageStream = Pin<Box<dyn Stream<Item = Result<pb::UsageBatch, Status>> + Send>>;

/// Streams the period's usage as batches of `B`, each turned into a message by `encode`.
fn usage_stream<B: store::usage::StreamBatch>(
    svc: &SubscriptionApi,
    tenants: Vec<String>,
    period: pricing::Period,
    size: usize,
    encode: fn(B) -> pb::UsageBatch,
) -> UsageStream {
    // Two batches in flight: a slow reader pauses the query (and Postgres) here.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let pool = svc.inner.pool.clone();
    tokio::spawn(async move {
        let q = store::usage::StreamQuery {
            tenants,
            from: period.start,
            to: period.end,
            size,
        };
        store::usage::stream(&pool, q, tx).await;
    });
    Box::pin(tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        move |batch| batch.map(encode).map_err(Status::from),
    ))
}
type BillableStream = Pin<Box<dyn Stream<Item = Result<pb::BillableSubscription, Status>> + Send>>;

fn reply<T>(r: Result<T, SubError>) -> Reply<T> {
    r.map(Response::new).map_err(Into::into)
}

#[tonic::async_trait]
impl SubscriptionService for SubscriptionApi {
    async fn create_plan(&self, req: Request<pb::CreatePlanRequest>) -> Reply<pb::Plan> {
        let c = caller(&req)?;
        reply(self.create_plan_inner(&c, req.into_inner()).await)
    }

    async fn update_plan(&self, req: Request<pb::UpdatePlanRequest>) -> Reply<pb::Plan> {
        let c = caller(&req)?;
        reply(self.update_plan_inner(&c, req.into_inner()).await)
    }

    async fn get_plan(&self, req: Request<pb::GetPlanRequest>) -> Reply<pb::Plan> {
        caller(&req)?;
        reply(self.get_plan_inner(req.into_inner()).await)
    }

    async fn list_plans(&self, req: Request<pb::ListPlansRequest>) -> Reply<pb::ListPlansResponse> {
        caller(&req)?;
        reply(self.list_plans_inner(req.into_inner()).await)
    }

    async fn create_subscription(
        &self,
        req: Request<pb::CreateSubscriptionRequest>,
    ) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.create_subscription_inner(&c, req.into_inner()).await)
    }

    async fn get_subscription(
        &self,
        req: Request<pb::GetSubscriptionRequest>,
    ) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.get_subscription_inner(&c, req.into_inner()).await)
    }

    async fn change_plan(&self, req: Request<pb::ChangePlanRequest>) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.change_plan_inner(&c, req.into_inner()).await)
    }

    async fn cancel_subscription(
        &self,
        req: Request<pb::CancelSubscriptionRequest>,
    ) -> Reply<pb::Subscription> {
        let c = caller(&req)?;
        reply(self.cancel_inner(&c, req.into_inner()).await)
    }

    async fn list_seat_history(
        &self,
        req: Request<pb::GetSubscriptionRequest>,
    ) -> Reply<pb::ListSeatHistoryResponse> {
        let c = caller(&req)?;
        reply(self.seat_history_inner(&c, req.into_inner()).await)
    }

    async fn ingest_usage(
        &self,
        req: Request<pb::IngestUsageRequest>,
    ) -> Reply<pb::IngestUsageResponse> {
        let c = caller(&req)?;
        reply(self.ingest_inner(&c, req.into_inner()).await)
    }

    async fn get_usage(&self, req: Request<pb::GetUsageRequest>) -> Reply<pb::GetUsageResponse> {
        let c = caller(&req)?;
        reply(self.get_usage_inner(&c, req.into_inner()).await)
    }

    async fn check_entitlement(
        &self,
        req: Request<pb::CheckEntitlementRequest>,
    ) -> Reply<pb::Entitlement> {
        let c = caller(&req)?;
        reply(self.check_inner(&c, req.into_inner()).await)
    }

    async fn get_tenant_limits(
        &self,
        req: Request<pb::GetTenantLimitsRequest>,
    ) -> Reply<pb::TenantLimits> {
        let c = caller(&req)?;
        reply(self.tenant_limits_inner(&c, req.into_inner()).await)
    }

    type StreamUsageStream = UsageStream;

    async fn stream_usage(
        &self,
        req: Request<pb::StreamUsageRequest>,
    ) -> Reply<Self::StreamUsageStream> {
        let c = caller(&req)?;
        reply(self.stream_usage_inner(&c, req.into_inner()).await)
    }

    type ListBillableSubscriptionsStream = BillableStream;

    async fn list_billable_subscriptions(
        &self,
        req: Request<pb::ListBillableSubscriptionsRequest>,
    ) -> Reply<Self::ListBillableSubscriptionsStream> {
        let c = caller(&req)?;
        reply(self.billable_inner(&c, req.into_inner()).await)
    }
}
