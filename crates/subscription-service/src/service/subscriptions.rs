//! A tenant's subscription: start it, change its plan (with proration), cancel it. Each change
//! is one transaction that also enqueues its `subscription.*` event.

use ids::{PlanId, SubscriptionId, TenantId};
use platform::events::enqueue;
use pricing::period_containing;

use super::{Service, db_now};
use crate::domain::plan::MAX_TRIAL_DAYS;
use crate::domain::status::SubStatus;
use crate::error::SubError;
use crate::events::subscription_event;
use crate::store;
use crate::store::subscriptions::{self, NewSub, SubRow};
use crate::store::{periods, plans, seats};
use event_types::PlanChange;

/// What starting a subscription needs.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub tenant: TenantId,
    /// Its latest version is used.
    pub plan: PlanId,
    /// A fixed seat count (seat-fixed plans default to 1); `None` follows the active users.
    pub seats: Option<u32>,
    /// Overrides the plan's trial.
    pub trial_days: Option<u32>,
}

impl Service {
    /// Commits a change to `tenant`'s subscription and drops its cached entitlements, so the
    /// caller's next check sees the change.
    async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        tenant: &TenantId,
    ) -> Result<(), SubError> {
        tx.commit().await?;
        self.cache
            .invalidate_now(std::slice::from_ref(tenant))
            .await;
        Ok(())
    }

    /// Starts the tenant's subscription; CONFLICT if it has a live one.
    pub async fn subscribe(&self, n: NewSubscription) -> Result<SubRow, SubError> {
        let tenant = &n.tenant;
        let mut tx = self.pool.begin().await?;
        let plan = plans::latest(&mut tx, &n.plan, false)
            .await?
            .ok_or(SubError::NotFound("plan"))?;
        if plan.def.archived {
            return Err(SubError::FailedPrecondition("the plan is archived".into()));
        }
        let trial_days = n.trial_days.unwrap_or(plan.def.trial_days);
        if trial_days > MAX_TRIAL_DAYS {
            return Err(SubError::invalid(
                "trial_days",
                format!("at most {MAX_TRIAL_DAYS}"),
            ));
        }
        // A canceled subscription stays (billing and history need it); a new one may follow.
        if let Some(existing) = subscriptions::get(&mut tx, tenant, true).await?
            && existing.status.is_live()
        {
            return Err(SubError::Conflict(
                "the tenant already has a subscription".into(),
            ));
        }
        let fixed_seats = match (plan.def.fixed_seats, n.seats) {
            (true, s) => Some(s.unwrap_or(1)),
            (false, s) => s,
        };
        let seats = match fixed_seats {
            Some(n) => n,
            None => seats::count_active(&mut tx, tenant).await?,
        };
        let now = db_now(&mut tx).await?;
        let period = period_containing(now, plan.def.interval, now)
            .ok_or_else(|| SubError::Corrupt("period out of range".into()))?;
        let trial_end = (trial_days > 0).then(|| now + chrono::Duration::days(trial_days.into()));
        let row = subscriptions::insert(
            &mut tx,
            &NewSub {
                id: &SubscriptionId::generate(),
                tenant_id: tenant,
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
        seats::set_seats(&mut tx, tenant, seats, now).await?;
        periods::open(&mut tx, &row.id, tenant, &period).await?;
        enqueue(
            &mut tx,
            &subscription_event("subscription.created", &row, |_| {}),
        )
        .await?;
        self.commit(tx, tenant).await?;
        Ok(row)
    }

    /// Moves the tenant to plan `to` (`version` 0: the latest, which must not be archived),
    /// prorating the rest of the current period; a new billing interval starts a new period.
    pub async fn change_plan(
        &self,
        tenant: &TenantId,
        to: &PlanId,
        version: u32,
    ) -> Result<SubRow, SubError> {
        let mut tx = self.pool.begin().await?;
        let mut sub = subscriptions::get(&mut tx, tenant, true)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        if !sub.status.is_live() {
            return Err(SubError::FailedPrecondition(
                "the subscription is canceled".into(),
            ));
        }
        let to = self.resolve_plan(&mut tx, to, version).await?;
        if version == 0 && to.def.archived {
            return Err(SubError::FailedPrecondition("the plan is archived".into()));
        }
        if to.id == sub.plan_id && to.version == sub.plan_version() {
            return Ok(sub);
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
        let now = db_now(&mut tx).await?;
        let period = pricing::Period::new(sub.period_start, sub.period_end)
            .map_err(|e| SubError::Corrupt(e.to_string()))?;
        let seat_count = u32::try_from(sub.seats).unwrap_or(0);
        let overflow = |_| SubError::FailedPrecondition("the plan's charges overflow".into());
        // Nothing is billed during a trial, so there is nothing to prorate.
        let proration = if sub.status == SubStatus::Trialing {
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
            tenant,
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
            periods::close(&mut tx, &sub.id, now).await?;
            periods::open(&mut tx, &sub.id, tenant, &p).await?;
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
        self.commit(tx, tenant).await?;
        Ok(row)
    }

    /// Cancels now (seats close, entitlements end) or at the period's end. Canceling a
    /// canceled subscription changes nothing.
    pub async fn cancel(&self, tenant: &TenantId, immediately: bool) -> Result<SubRow, SubError> {
        let mut tx = self.pool.begin().await?;
        let mut sub = subscriptions::get(&mut tx, tenant, true)
            .await?
            .ok_or(SubError::NotFound("subscription"))?;
        if sub.status == SubStatus::Canceled {
            return Ok(sub);
        }
        let now = db_now(&mut tx).await?;
        let kind = if immediately {
            sub.status = SubStatus::Canceled;
            sub.canceled_at = Some(now);
            sub.cancel_at_period_end = false;
            seats::close(&mut tx, tenant, now).await?;
            periods::close(&mut tx, &sub.id, now).await?;
            "subscription.canceled"
        } else {
            sub.cancel_at_period_end = true;
            "subscription.cancel_scheduled"
        };
        let row = subscriptions::save(&mut tx, &sub).await?;
        enqueue(&mut tx, &subscription_event(kind, &row, |_| {})).await?;
        self.commit(tx, tenant).await?;
        Ok(row)
    }
}
