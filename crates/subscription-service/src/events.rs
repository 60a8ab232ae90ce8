//! What the service reacts to: `user.*` (seats follow active org users), `tenant.*`
//! (a suspended tenant's subscription is suspended), `payment.*` (an unpaid invoice makes it
//! past due, exhausted dunning suspends it, a payment restores it), and the clock (trials end, periods roll
//! over, scheduled cancellations take effect).
//!
//! Redeliveries are harmless twice over: the platform inbox applies an event id once, and the
//! member table is a set keyed by user, so applying the same state again changes nothing.

use chrono::{DateTime, Utc};
use event_types::{
    DunningExhausted, InvoicePaid, PaymentFailed, SubscriptionChanged, TenantStatusChanged,
    UserChanged, data,
};
use ids::TenantId;
use platform::events::{CloudEvent, EventHandler, HandlerError, enqueue};
use pricing::period_containing;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::cache::EntitlementCache;
use crate::domain::status::{Holds, PaymentNews, SubStatus};
use crate::error::SubError;
use crate::store::plans::PlanCache;
use crate::store::{periods, seats, subscriptions};

impl From<SubError> for HandlerError {
    fn from(e: SubError) -> Self {
        match e {
            SubError::Db(_) | SubError::Events(_) => HandlerError::Transient(e.to_string()),
            other => HandlerError::Permanent(other.to_string()),
        }
    }
}

/// An event's payload, or a permanent failure (a malformed event never gets better).
fn payload<T: serde::de::DeserializeOwned>(event: &CloudEvent) -> Result<T, HandlerError> {
    event_types::read(&event.data)
        .map_err(|e| HandlerError::Permanent(format!("{}: {e}", event.event_type)))
}

/// Re-counts a follow-users subscription's seats after a member change.
async fn recount(
    conn: &mut PgConnection,
    tenant: &TenantId,
    at: DateTime<Utc>,
) -> Result<(), SubError> {
    let Some(mut sub) = subscriptions::get(conn, tenant, true).await? else {
        return Ok(());
    };
    if sub.fixed_seats.is_some() || !sub.status.is_live() {
        return Ok(());
    }
    let n = seats::count_active(conn, tenant).await?;
    if n as i32 == sub.seats {
        return Ok(());
    }
    let before = sub.seats;
    seats::set_seats(conn, tenant, n, at.max(sub.created_at)).await?;
    sub.seats = n as i32;
    let row = subscriptions::save(conn, &sub).await?;
    enqueue(
        conn,
        &subscription_event("subscription.seats_changed", &row, |p| {
            p.previous_seats = Some(before)
        }),
    )
    .await?;
    Ok(())
}

/// `user.*` → members → seats.
#[derive(Debug, Clone)]
pub struct MemberEvents {
    pub cache: EntitlementCache,
}

impl EventHandler for MemberEvents {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        let user: UserChanged = payload(event)?;
        let active = event.event_type != "user.deleted" && user.status == "active";
        let tenant = &user.tenant_id;
        if seats::upsert_member(conn, tenant, &user.user_id, active, event.time).await? {
            recount(conn, tenant, event.time).await?;
            self.cache.invalidate(vec![tenant.clone()]);
        }
        Ok(())
    }
}

/// `tenant.suspended` / `tenant.reactivated` → subscription status.
#[derive(Debug, Clone)]
pub struct TenantEvents {
    pub cache: EntitlementCache,
}

impl EventHandler for TenantEvents {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        let suspended = match event.event_type.as_str() {
            "tenant.suspended" => true,
            "tenant.reactivated" => false,
            _ => return Ok(()),
        };
        let changed: TenantStatusChanged = payload(event)?;
        let tenant = &changed.tenant_id;
        let Some(mut sub) = subscriptions::get(conn, tenant, true).await? else {
            return Ok(());
        };
        sub.tenant_suspended = suspended;
        let Some(next) = sub.status.with_holds(holds(&sub)) else {
            subscriptions::save(conn, &sub).await?;
            return Ok(());
        };
        sub.status = next;
        let row = subscriptions::save(conn, &sub).await?;
        let kind = if suspended {
            "subscription.suspended"
        } else {
            "subscription.reactivated"
        };
        enqueue(conn, &subscription_event(kind, &row, |_| {}))
            .await
            .map_err(SubError::from)?;
        self.cache.invalidate(vec![tenant.clone()]);
        Ok(())
    }
}

fn holds(sub: &subscriptions::SubRow) -> Holds {
    Holds {
        tenant: sub.tenant_suspended,
        payment: sub.payment_suspended,
    }
}

/// `payment.intent.failed` (an invoice unpaid: past due), `payment.dunning.exhausted`
/// (suspended) and `invoice.paid` — however it was paid: a retry, a new card, by hand —
/// (active again, unless the operator's suspension holds). Payments not made for an invoice
/// say nothing about the subscription.
#[derive(Debug, Clone)]
pub struct PaymentEvents {
    pub cache: EntitlementCache,
}

impl EventHandler for PaymentEvents {
    async fn handle(
        &self,
        conn: &mut PgConnection,
        event: &CloudEvent,
    ) -> Result<(), HandlerError> {
        let (tenant, news) = match event.event_type.as_str() {
            "payment.intent.failed" => {
                let p: PaymentFailed = payload(event)?;
                (p.invoice_id.map(|_| p.tenant_id), PaymentNews::Failed)
            }
            "payment.dunning.exhausted" => {
                let p: DunningExhausted = payload(event)?;
                (Some(p.tenant_id), PaymentNews::Exhausted)
            }
            "invoice.paid" => {
                let p: InvoicePaid = payload(event)?;
                (Some(p.invoice.tenant_id), PaymentNews::Succeeded)
            }
            _ => return Ok(()),
        };
        let Some(tenant) = tenant else {
            return Ok(());
        };
        let Some(mut sub) = subscriptions::get(conn, &tenant, true).await? else {
            return Ok(());
        };
        match news {
            PaymentNews::Exhausted => sub.payment_suspended = true,
            PaymentNews::Succeeded => sub.payment_suspended = false,
            PaymentNews::Failed => {}
        }
        let next = sub.status.on_payment(news, holds(&sub));
        let Some(next) = next else {
            subscriptions::save(conn, &sub).await?;
            return Ok(());
        };
        let kind = match next {
            SubStatus::PastDue => "subscription.past_due",
            SubStatus::Suspended => "subscription.suspended",
            _ => "subscription.reactivated",
        };
        sub.status = next;
        let row = subscriptions::save(conn, &sub).await?;
        enqueue(conn, &subscription_event(kind, &row, |_| {}))
            .await
            .map_err(SubError::from)?;
        self.cache.invalidate(vec![tenant]);
        Ok(())
    }
}

/// Applies what is due for one tenant at `now`; returns the events emitted.
async fn advance(
    conn: &mut PgConnection,
    plans: &PlanCache,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<Vec<&'static str>, SubError> {
    let mut emitted = vec![];
    let Some(mut sub) = subscriptions::get(conn, tenant, true).await? else {
        return Ok(emitted);
    };
    let status = sub.status;
    if status == SubStatus::Trialing && sub.trial_end.is_some_and(|t| t <= now) {
        sub.status = SubStatus::Active;
        emitted.push("subscription.trial_ended");
    }
    if status != SubStatus::Canceled && sub.period_end <= now {
        if sub.cancel_at_period_end {
            sub.status = SubStatus::Canceled;
            sub.canceled_at = Some(sub.period_end);
            seats::close(conn, tenant, sub.period_end).await?;
            periods::close(conn, &sub.id, sub.period_end).await?;
            emitted.push("subscription.canceled");
        } else {
            let plan = plans
                .get(conn, &sub.plan_id, sub.plan_version())
                .await?
                .ok_or_else(|| SubError::Corrupt("subscription without its plan".into()))?;
            // Every period from the one that ended to the one containing `now` gets its row,
            // even when the clock was away for several: a period never goes unbilled.
            let out_of_range = || SubError::Corrupt("period out of range".into());
            periods::close(conn, &sub.id, sub.period_end).await?;
            let mut p = period_containing(sub.period_anchor, plan.def.interval, sub.period_end)
                .ok_or_else(out_of_range)?;
            while p.end <= now {
                periods::open(conn, &sub.id, tenant, &p).await?;
                periods::close(conn, &sub.id, p.end).await?;
                p = period_containing(sub.period_anchor, plan.def.interval, p.end)
                    .ok_or_else(out_of_range)?;
            }
            periods::open(conn, &sub.id, tenant, &p).await?;
            sub.period_start = p.start;
            sub.period_end = p.end;
            emitted.push("subscription.renewed");
        }
    }
    if emitted.is_empty() {
        return Ok(emitted);
    }
    let row = subscriptions::save(conn, &sub).await?;
    for kind in &emitted {
        enqueue(conn, &subscription_event(kind, &row, |_| {})).await?;
    }
    Ok(emitted)
}

/// One pass over every subscription with something due at `now`.
pub async fn tick(
    pool: &PgPool,
    plans: &PlanCache,
    cache: &EntitlementCache,
    now: DateTime<Utc>,
) -> Result<usize, SubError> {
    let mut conn = pool.acquire().await?;
    let due = subscriptions::due(&mut conn, now).await?;
    let mut changed = Vec::new();
    for tenant in due {
        let mut tx = pool.begin().await?;
        if !advance(&mut tx, plans, &tenant, now).await?.is_empty() {
            changed.push(tenant);
        }
        tx.commit().await?;
    }
    let n = changed.len();
    cache.invalidate(changed);
    Ok(n)
}

/// Runs [`tick`] every `every` until `stop`.
pub async fn run_ticker(
    pool: PgPool,
    plans: PlanCache,
    cache: EntitlementCache,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {
                if let Err(e) = tick(&pool, &plans, &cache, Utc::now()).await {
                    tracing::warn!(error = %e, "subscription tick failed; retrying next tick");
                }
            }
        }
    }
}

/// Where this service's events come from (CloudEvents `source`).
pub(crate) const SOURCE: &str = "/services/subscription";

/// A `subscription.*` event: the subscription as it is now, with what `with` adds (the
/// previous seats, a plan change's proration).
pub(crate) fn subscription_event(
    kind: &str,
    s: &crate::store::subscriptions::SubRow,
    with: impl FnOnce(&mut SubscriptionChanged),
) -> CloudEvent {
    let mut payload = SubscriptionChanged {
        tenant_id: s.tenant_id.clone(),
        subscription_id: s.id.clone(),
        plan_id: s.plan_id.clone(),
        plan_version: s.plan_version,
        status: s.status.to_string(),
        seats: s.seats,
        period_start: s.period_start,
        period_end: s.period_end,
        previous_seats: None,
        plan_change: None,
    };
    with(&mut payload);
    CloudEvent::new(SOURCE, kind, data(&payload))
        .with_tenant(s.tenant_id.as_str())
        .with_subject(s.id.as_str())
}
