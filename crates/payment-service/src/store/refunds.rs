//! Refunds: their own objects, each one PSP call with its own key.

use chrono::{DateTime, Utc};
use ids::{PaymentIntentId, RefundId, TenantId};
use sqlx::PgConnection;

ids::text_enum! {
    pub enum RefundStatus {
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefundRow {
    pub id: RefundId,
    pub tenant_id: TenantId,
    pub intent_id: PaymentIntentId,
    pub amount_minor: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub reason: String,
    pub psp_idempotency_key: String,
    pub psp_reference: Option<String>,
    pub failure_code: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, intent_id, amount_minor, currency, status, reason, psp_idempotency_key, \
         psp_reference, failure_code, idempotency_key, created_at, updated_at"
    };
}

/// Inserts a pending refund; `None` when the intent already has one with this key.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: &TenantId,
    intent: &PaymentIntentId,
    amount: i64,
    currency: &str,
    reason: &str,
    key: Option<&str>,
) -> Result<Option<RefundRow>, sqlx::Error> {
    let id = RefundId::generate();
    sqlx::query_as(concat!(
        "INSERT INTO refunds (id, tenant_id, intent_id, amount_minor, currency, status, reason, \
         psp_idempotency_key, idempotency_key) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $1, $7) \
         ON CONFLICT (intent_id, idempotency_key) DO NOTHING RETURNING ",
        columns!(),
        ""
    ))
    .bind(&id)
    .bind(tenant)
    .bind(intent)
    .bind(amount)
    .bind(currency)
    .bind(reason)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn by_key(
    conn: &mut PgConnection,
    intent: &PaymentIntentId,
    key: &str,
) -> Result<Option<RefundRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM refunds WHERE intent_id = $1 AND idempotency_key = $2"
    ))
    .bind(intent)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn list(
    conn: &mut PgConnection,
    intent: &PaymentIntentId,
) -> Result<Vec<RefundRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM refunds WHERE intent_id = $1 ORDER BY id"
    ))
    .bind(intent)
    .fetch_all(conn)
    .await
}

pub async fn get(conn: &mut PgConnection, id: &RefundId) -> Result<Option<RefundRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM refunds WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn lock_by_id(conn: &mut PgConnection, id: &RefundId) -> Result<RefundRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM refunds WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Sum of refunds not failed (pending ones count: their money is on its way back).
pub async fn committed(
    conn: &mut PgConnection,
    intent: &PaymentIntentId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(amount_minor), 0)::bigint FROM refunds \
         WHERE intent_id = $1 AND status <> 'failed'",
    )
    .bind(intent)
    .fetch_one(conn)
    .await
}

pub async fn settle(
    conn: &mut PgConnection,
    id: &RefundId,
    status: RefundStatus,
    reference: Option<&str>,
    failure_code: Option<&str>,
) -> Result<RefundRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE refunds SET status = $2, psp_reference = coalesce($3, psp_reference), \
         failure_code = $4, updated_at = now() WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(status)
    .bind(reference)
    .bind(failure_code)
    .fetch_one(conn)
    .await
}
