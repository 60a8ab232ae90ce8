//! Subscriptions: create, read, change plan, cancel, seat history; and the event every
//! change publishes.

use chrono::{DateTime, Utc};
use platform::events::enqueue;
use platform::grpc::Caller;
use pricing::period_containing;
use rpc::subscription::v1 as pb;

use crate::convert::{segment_pb, sub_pb};
use crate::domain::plan::MAX_TRIAL_DAYS;
use crate::domain::status::SubStatus;
use crate::error::SubError;
use crate::events::subscription_event;
use crate::store::plans;
use crate::store::subscriptions::{self, NewSub};
use crate::store::{self, seats};
use event_types::PlanChange;

use super::{MAX_SEATS, SubscriptionApi, plan_id, scoped_tenant};

impl SubscriptionApi {
    pub(super) async fn create_subscription_inner(
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
            &subscription_event("subscription.created", &row, |_| {}),
        )
        .await?;
        tx.commit().await?;
        self.inner.cache.invalidate_now(&[tenant]).await;
        Ok(sub_pb(&row))
    }

    pub(super) async fn get_subscription_inner(
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

    pub(super) async fn change_plan_inner(
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
            &subscription_event("subscription.plan_changed", &row, |p| {
                p.plan_change = Some(PlanChange {
                    from_plan_id: from.id.clone(),
                    from_plan_version: from.version,
                    currency: from.def.currency.as_str().to_string(),
                    proration_credit_minor: proration.credit_minor,
                    proration_charge_minor: proration.charge_minor,
                })
            }),
        )
        .await?;
        tx.commit().await?;
        self.inner.cache.invalidate_now(&[tenant]).await;
        Ok(sub_pb(&row))
    }

    pub(super) async fn cancel_inner(
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
        enqueue(&mut tx, &subscription_event(kind, &row, |_| {})).await?;
        tx.commit().await?;
        self.inner.cache.invalidate_now(&[tenant]).await;
        Ok(sub_pb(&row))
    }

    pub(super) async fn seat_history_inner(
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
}
