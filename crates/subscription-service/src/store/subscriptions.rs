//! Subscriptions (one per tenant).

use chrono::{DateTime, Utc};
use ids::{PlanId, SubscriptionId, TenantId};
use sqlx::PgConnection;

use crate::domain::phases::PlanChange;
use crate::domain::status::SubStatus;
use crate::error::SubError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubRow {
    pub id: SubscriptionId,
    pub tenant_id: TenantId,
    pub plan_id: PlanId,
    pub plan_version: i32,
    pub status: SubStatus,
    pub period_anchor: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub trial_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub fixed_seats: Option<i32>,
    pub seats: i32,
    pub created_at: DateTime<Utc>,
    /// The operator suspended the tenant.
    pub tenant_suspended: bool,
    /// Dunning ran out on an unpaid invoice.
    pub payment_suspended: bool,
}

impl SubRow {
    pub fn plan_version(&self) -> u32 {
        u32::try_from(self.plan_version).unwrap_or(0)
    }
}

const COLUMNS: &str = "id, tenant_id, plan_id, plan_version, status, period_anchor, period_start, \
                       period_end, trial_end, cancel_at_period_end, canceled_at, fixed_seats, \
                       seats, created_at, tenant_suspended, payment_suspended";

/// The tenant's current subscription: the live one, else the latest canceled one.
pub async fn get(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    lock: bool,
) -> Result<Option<SubRow>, SubError> {
    let q = format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE tenant_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT 1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?)
}

/// Subscriptions of the given tenants (all when `tenants` is empty; canceled ones included),
/// ordered by tenant and age.
pub async fn list(conn: &mut PgConnection, tenants: &[TenantId]) -> Result<Vec<SubRow>, SubError> {
    let q = format!(
        "SELECT {COLUMNS} FROM subscriptions \
         WHERE cardinality($1::text[]) = 0 OR tenant_id = ANY($1) ORDER BY tenant_id, created_at"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(tenants)
        .fetch_all(conn)
        .await?)
}

pub struct NewSub<'a> {
    pub id: &'a SubscriptionId,
    pub tenant_id: &'a TenantId,
    pub plan_id: &'a PlanId,
    pub plan_version: u32,
    pub status: SubStatus,
    pub anchor: DateTime<Utc>,
    pub period: pricing::Period,
    pub trial_end: Option<DateTime<Utc>>,
    pub fixed_seats: Option<u32>,
    pub seats: u32,
}

pub async fn insert(conn: &mut PgConnection, s: &NewSub<'_>) -> Result<SubRow, SubError> {
    let q = format!(
        "INSERT INTO subscriptions (id, tenant_id, plan_id, plan_version, status, period_anchor, \
         period_start, period_end, trial_end, fixed_seats, seats) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(s.id)
        .bind(s.tenant_id)
        .bind(s.plan_id)
        .bind(s.plan_version as i32)
        .bind(s.status)
        .bind(s.anchor)
        .bind(s.period.start)
        .bind(s.period.end)
        .bind(s.trial_end)
        .bind(s.fixed_seats.map(|n| n as i32))
        .bind(s.seats as i32)
        .fetch_one(conn)
        .await?)
}

/// Writes back the mutable fields of `s`.
pub async fn save(conn: &mut PgConnection, s: &SubRow) -> Result<SubRow, SubError> {
    let q = format!(
        "UPDATE subscriptions SET plan_id = $2, plan_version = $3, status = $4, \
         period_anchor = $5, period_start = $6, period_end = $7, trial_end = $8, \
         cancel_at_period_end = $9, canceled_at = $10, fixed_seats = $11, seats = $12, \
         tenant_suspended = $13, payment_suspended = $14, updated_at = now() WHERE id = $1 \
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(&s.id)
        .bind(&s.plan_id)
        .bind(s.plan_version)
        .bind(s.status)
        .bind(s.period_anchor)
        .bind(s.period_start)
        .bind(s.period_end)
        .bind(s.trial_end)
        .bind(s.cancel_at_period_end)
        .bind(s.canceled_at)
        .bind(s.fixed_seats)
        .bind(s.seats)
        .bind(s.tenant_suspended)
        .bind(s.payment_suspended)
        .fetch_one(conn)
        .await?)
}

/// Tenants whose subscription has something due at `now` (trial over, period over).
pub async fn due(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<TenantId>, SubError> {
    Ok(sqlx::query_scalar(
        "SELECT tenant_id FROM subscriptions WHERE status <> 'canceled' \
         AND (period_end <= $1 OR (status = 'trialing' AND trial_end <= $1)) \
         ORDER BY tenant_id LIMIT 500",
    )
    .bind(now)
    .fetch_all(conn)
    .await?)
}

#[allow(clippy::too_many_arguments)]
pub async fn record_plan_change(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    from: (&PlanId, u32),
    to: (&PlanId, u32),
    at: DateTime<Utc>,
    period: &pricing::Period,
    currency: &str,
    proration: &pricing::PlanChangeProration,
) -> Result<(), SubError> {
    sqlx::query(
        "INSERT INTO plan_changes (tenant_id, from_plan_id, from_version, to_plan_id, to_version, \
         changed_at, period_start, period_end, currency, credit_minor, charge_minor) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(tenant_id)
    .bind(from.0)
    .bind(from.1 as i32)
    .bind(to.0)
    .bind(to.1 as i32)
    .bind(at)
    .bind(period.start)
    .bind(period.end)
    .bind(currency)
    .bind(proration.credit_minor)
    .bind(proration.charge_minor)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant's plan changes a billing period needs, in time order: those after `after` and
/// before `period_end`, then the first at or after `period_end`; none after `until` (a
/// canceled subscription's end, beyond which changes belong to a later subscription).
pub async fn plan_changes(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    after: DateTime<Utc>,
    period_end: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<PlanChange>, SubError> {
    let rows: Vec<(PlanId, i32, PlanId, i32, DateTime<Utc>, i64)> = sqlx::query_as(
        "(SELECT from_plan_id, from_version, to_plan_id, to_version, changed_at, id \
          FROM plan_changes WHERE tenant_id = $1 AND changed_at > $2 AND changed_at < $3 \
          AND ($4::timestamptz IS NULL OR changed_at <= $4)) \
         UNION ALL \
         (SELECT from_plan_id, from_version, to_plan_id, to_version, changed_at, id \
          FROM plan_changes WHERE tenant_id = $1 AND changed_at > $2 AND changed_at >= $3 \
          AND ($4::timestamptz IS NULL OR changed_at <= $4) ORDER BY changed_at, id LIMIT 1) \
         ORDER BY 5, 6",
    )
    .bind(tenant_id)
    .bind(after)
    .bind(period_end)
    .bind(until)
    .fetch_all(conn)
    .await?;
    let version = |v: i32| u32::try_from(v).unwrap_or(0);
    Ok(rows
        .into_iter()
        .map(|(fp, fv, tp, tv, at, _)| PlanChange {
            from: (fp, version(fv)),
            to: (tp, version(tv)),
            at,
        })
        .collect())
}
