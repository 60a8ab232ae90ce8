//! Dunning schedules (`dunning`), one per intent whose automatic payment failed.

use chrono::{DateTime, Utc};
use ids::{InvoiceId, PaymentIntentId, TenantId};
use sqlx::PgConnection;

ids::text_enum! {
    pub enum DunningStatus {
        Active = "active",
        Exhausted = "exhausted",
        Recovered = "recovered",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DunningRow {
    pub intent_id: PaymentIntentId,
    pub tenant_id: TenantId,
    pub invoice_id: Option<InvoiceId>,
    pub status: DunningStatus,
    pub retries_done: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub outcomes: Vec<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "intent_id, tenant_id, invoice_id, status, retries_done, next_retry_at, outcomes, \
         started_at, ended_at"
    };
}

/// Starts dunning for an intent at its first failure; `None` when it already runs (or ran).
pub async fn start(
    conn: &mut PgConnection,
    intent: &PaymentIntentId,
    tenant: &TenantId,
    invoice: Option<&InvoiceId>,
    started: DateTime<Utc>,
    first_retry: Option<DateTime<Utc>>,
) -> Result<Option<DunningRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO dunning (intent_id, tenant_id, invoice_id, status, next_retry_at, started_at) \
         VALUES ($1, $2, $3, 'active', $4, $5) ON CONFLICT DO NOTHING RETURNING ",
        columns!(),
        ""
    ))
    .bind(intent)
    .bind(tenant)
    .bind(invoice)
    .bind(first_retry)
    .bind(started)
    .fetch_optional(conn)
    .await
}

pub async fn get(
    conn: &mut PgConnection,
    intent: &PaymentIntentId,
    lock: bool,
) -> Result<Option<DunningRow>, sqlx::Error> {
    let sql = if lock {
        concat!(
            "SELECT ",
            columns!(),
            " FROM dunning WHERE intent_id = $1 FOR UPDATE"
        )
    } else {
        concat!("SELECT ", columns!(), " FROM dunning WHERE intent_id = $1")
    };
    sqlx::query_as(sql).bind(intent).fetch_optional(conn).await
}

pub async fn of_intents(
    conn: &mut PgConnection,
    ids: &[PaymentIntentId],
) -> Result<Vec<DunningRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM dunning WHERE intent_id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

pub async fn of_tenant(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<Vec<DunningRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM dunning WHERE tenant_id = $1 ORDER BY started_at DESC LIMIT 100"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// Active schedules whose next retry is due at `now`, claimed `SKIP LOCKED`.
pub async fn claim_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DunningRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM dunning WHERE status = 'active' AND next_retry_at <= $1 \
         ORDER BY next_retry_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn save(conn: &mut PgConnection, d: &DunningRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dunning SET status = $2, retries_done = $3, next_retry_at = $4, outcomes = $5, \
         ended_at = $6 WHERE intent_id = $1",
    )
    .bind(&d.intent_id)
    .bind(d.status)
    .bind(d.retries_done)
    .bind(d.next_retry_at)
    .bind(&d.outcomes)
    .bind(d.ended_at)
    .execute(conn)
    .await
    .map(|_| ())
}
