//! A subscription's periods (`subscription_periods`): opened when a period begins, closed when
//! it ends. Billing reads them to bill each period exactly once.

use chrono::{DateTime, Utc};
use ids::{SubscriptionId, TenantId};
use sqlx::PgConnection;

use crate::error::SubError;

/// One period of one subscription.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PeriodRow {
    pub subscription_id: SubscriptionId,
    pub tenant_id: TenantId,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// When it ended: `period_end`, or earlier (canceled, re-anchored); `None` while open.
    pub ended_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "subscription_id, tenant_id, period_start, period_end, ended_at";

/// Opens `[start, end)` of the subscription (a no-op if it is already recorded).
pub async fn open(
    conn: &mut PgConnection,
    sub: &SubscriptionId,
    tenant: &TenantId,
    period: &pricing::Period,
) -> Result<(), SubError> {
    sqlx::query(
        "INSERT INTO subscription_periods (subscription_id, tenant_id, period_start, period_end) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(sub)
    .bind(tenant)
    .bind(period.start)
    .bind(period.end)
    .execute(conn)
    .await?;
    Ok(())
}

/// Closes the subscription's open period at `at` (its end, or earlier). Returns whether a
/// period was open.
pub async fn close(
    conn: &mut PgConnection,
    sub: &SubscriptionId,
    at: DateTime<Utc>,
) -> Result<bool, SubError> {
    let closed = sqlx::query(
        "UPDATE subscription_periods SET ended_at = GREATEST(LEAST($2, period_end), \
         period_start + interval '1 microsecond') \
         WHERE subscription_id = $1 AND ended_at IS NULL",
    )
    .bind(sub)
    .bind(at)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(closed > 0)
}

/// The subscription's periods, oldest first.
pub async fn of(conn: &mut PgConnection, sub: &SubscriptionId) -> Result<Vec<PeriodRow>, SubError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscription_periods WHERE subscription_id = $1 \
         ORDER BY period_start"
    )))
    .bind(sub)
    .fetch_all(conn)
    .await?)
}

/// Periods of `tenants` (all when empty) that began in `[from, to)` or ended in `(from, to]`,
/// by tenant and start: what a billing run over that window bills.
pub async fn billable_within(
    conn: &mut PgConnection,
    tenants: &[TenantId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PeriodRow>, SubError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscription_periods \
         WHERE ((ended_at > $2 AND ended_at <= $3) OR (period_start >= $2 AND period_start < $3)) \
         AND (cardinality($1::text[]) = 0 OR tenant_id = ANY($1)) \
         ORDER BY tenant_id, period_start"
    )))
    .bind(tenants)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}
