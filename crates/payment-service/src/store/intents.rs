//! Payment intents and their attempts. The service reads an intent under `FOR UPDATE`,
//! changes it in Rust (the rules are in `domain::intent`) and [`save`]s every mutable column.

use chrono::{DateTime, Utc};
use ids::{InvoiceId, PaymentIntentId, PaymentMethodId, TenantId};
use sqlx::PgConnection;

use crate::domain::intent::{CaptureMethod, Outcome, Status};
use crate::domain::provider::Provider;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IntentRow {
    pub id: PaymentIntentId,
    pub tenant_id: TenantId,
    pub invoice_id: Option<InvoiceId>,
    pub amount_minor: i64,
    pub currency: String,
    pub status: Status,
    pub capture_method: CaptureMethod,
    pub off_session: bool,
    pub payment_method_id: Option<PaymentMethodId>,
    pub provider: Option<Provider>,
    pub psp_intent_id: Option<String>,
    pub amount_received: i64,
    pub amount_capturable: i64,
    pub amount_refunded: i64,
    pub next_action_url: Option<String>,
    pub last_failure_code: Option<String>,
    pub last_failure_message: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_digest: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub intent_id: PaymentIntentId,
    pub number: i32,
    pub payment_method_id: PaymentMethodId,
    pub provider: Provider,
    pub psp_idempotency_key: String,
    pub psp_reference: Option<String>,
    pub outcome: Outcome,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub client_key: Option<String>,
    pub tries: i32,
    pub retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The PSP intent this attempt confirmed; `None` when it created one.
    pub psp_intent_id: Option<String>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, invoice_id, amount_minor, currency, status, capture_method, off_session, \
         payment_method_id, provider, psp_intent_id, amount_received, amount_capturable, \
         amount_refunded, next_action_url, last_failure_code, last_failure_message, \
         idempotency_key, request_digest, created_at, updated_at"
    };
}

macro_rules! attempt_columns {
    () => {
        "intent_id, number, payment_method_id, provider, psp_idempotency_key, psp_reference, \
         outcome, failure_code, failure_message, client_key, tries, retry_at, created_at, \
         completed_at, psp_intent_id"
    };
}

/// A new intent.
#[derive(Debug, Clone)]
pub struct NewIntent<'a> {
    pub tenant: &'a TenantId,
    pub invoice: Option<&'a InvoiceId>,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub capture: CaptureMethod,
    pub off_session: bool,
    pub method: Option<(&'a PaymentMethodId, Provider)>,
    pub idempotency_key: Option<&'a str>,
    pub request_digest: Option<&'a str>,
}

/// Inserts an intent; `None` when its idempotency key or its invoice already has one (the
/// caller then reads that one).
pub async fn insert(
    conn: &mut PgConnection,
    n: &NewIntent<'_>,
) -> Result<Option<IntentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO payment_intents (id, tenant_id, invoice_id, amount_minor, currency, status, \
         capture_method, off_session, payment_method_id, provider, idempotency_key, \
         request_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT DO NOTHING RETURNING ",
        columns!(),
        ""
    ))
    .bind(PaymentIntentId::generate())
    .bind(n.tenant)
    .bind(n.invoice)
    .bind(n.amount_minor)
    .bind(n.currency)
    .bind(Status::initial(n.method.is_some()))
    .bind(n.capture)
    .bind(n.off_session)
    .bind(n.method.map(|m| m.0))
    .bind(n.method.map(|m| m.1))
    .bind(n.idempotency_key)
    .bind(n.request_digest)
    .fetch_optional(conn)
    .await
}

pub async fn by_key(
    conn: &mut PgConnection,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<IntentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_intents WHERE tenant_id = $1 AND idempotency_key = $2"
    ))
    .bind(tenant)
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// The live (not canceled) intent of an invoice.
pub async fn of_invoice(
    conn: &mut PgConnection,
    invoice: &InvoiceId,
) -> Result<Option<IntentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_intents WHERE invoice_id = $1 AND status <> 'canceled'"
    ))
    .bind(invoice)
    .fetch_optional(conn)
    .await
}

/// An intent, scoped to `tenant` when given; `lock` takes it `FOR UPDATE`.
pub async fn get(
    conn: &mut PgConnection,
    id: &PaymentIntentId,
    tenant: Option<&TenantId>,
    lock: bool,
) -> Result<Option<IntentRow>, sqlx::Error> {
    let sql = if lock {
        concat!(
            "SELECT ",
            columns!(),
            " FROM payment_intents WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) \
             FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            columns!(),
            " FROM payment_intents WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"
        )
    };
    sqlx::query_as(sql)
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await
}

/// The intent a PSP knows as `psp_intent_id` (Stripe's and the sandbox's), locked.
pub async fn lock_by_psp(
    conn: &mut PgConnection,
    providers: &[Provider],
    psp_intent_id: &str,
) -> Result<Option<IntentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_intents WHERE provider = ANY($1) AND psp_intent_id = $2 FOR UPDATE"
    ))
    .bind(providers)
    .bind(psp_intent_id)
    .fetch_optional(conn)
    .await
}

/// A tenant's intents, newest first, after the cursor's id.
pub async fn list(
    conn: &mut PgConnection,
    tenant: &TenantId,
    invoice: Option<&InvoiceId>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<IntentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_intents WHERE tenant_id = $1 AND ($2::text IS NULL OR invoice_id = $2) \
         AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    ))
    .bind(tenant)
    .bind(invoice)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
}

/// Writes every mutable column of `r`.
pub async fn save(conn: &mut PgConnection, r: &IntentRow) -> Result<IntentRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE payment_intents SET status = $2, payment_method_id = $3, provider = $4, \
         psp_intent_id = $5, amount_received = $6, amount_capturable = $7, amount_refunded = $8, \
         next_action_url = $9, last_failure_code = $10, last_failure_message = $11, \
         updated_at = now() WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(&r.id)
    .bind(r.status)
    .bind(&r.payment_method_id)
    .bind(r.provider)
    .bind(&r.psp_intent_id)
    .bind(r.amount_received)
    .bind(r.amount_capturable)
    .bind(r.amount_refunded)
    .bind(&r.next_action_url)
    .bind(&r.last_failure_code)
    .bind(&r.last_failure_message)
    .fetch_one(conn)
    .await
}

pub async fn attempts(
    conn: &mut PgConnection,
    ids: &[PaymentIntentId],
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM payment_attempts WHERE intent_id = ANY($1) ORDER BY intent_id, number"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

pub async fn last_attempt(
    conn: &mut PgConnection,
    id: &PaymentIntentId,
) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM payment_attempts WHERE intent_id = $1 ORDER BY number DESC LIMIT 1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn attempt_by_client_key(
    conn: &mut PgConnection,
    id: &PaymentIntentId,
    key: &str,
) -> Result<Option<AttemptRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM payment_attempts WHERE intent_id = $1 AND client_key = $2"
    ))
    .bind(id)
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// Opens attempt `number`; its PSP idempotency key is derived from the intent and number,
/// so every retry of it carries the same key.
pub async fn open_attempt(
    conn: &mut PgConnection,
    intent: &PaymentIntentId,
    number: i32,
    method: &PaymentMethodId,
    provider: Provider,
    client_key: Option<&str>,
    psp_intent_id: Option<&str>,
) -> Result<AttemptRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO payment_attempts (intent_id, number, payment_method_id, provider, \
         psp_idempotency_key, outcome, client_key, tries, psp_intent_id) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, 1, $7) RETURNING ",
        attempt_columns!(),
        ""
    ))
    .bind(intent)
    .bind(number)
    .bind(method)
    .bind(provider)
    .bind(format!("{intent}-a{number}"))
    .bind(client_key)
    .bind(psp_intent_id)
    .fetch_one(conn)
    .await
}

/// Records what the PSP answered (or that it did not: `retry_at` set, outcome pending).
pub async fn save_attempt(conn: &mut PgConnection, a: &AttemptRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payment_attempts SET psp_reference = $3, outcome = $4, failure_code = $5, \
         failure_message = $6, tries = $7, retry_at = $8, completed_at = $9 \
         WHERE intent_id = $1 AND number = $2",
    )
    .bind(&a.intent_id)
    .bind(a.number)
    .bind(&a.psp_reference)
    .bind(a.outcome)
    .bind(&a.failure_code)
    .bind(&a.failure_message)
    .bind(a.tries)
    .bind(a.retry_at)
    .bind(a.completed_at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Intents the service confirms itself, oldest first, claimed `SKIP LOCKED` so replicas
/// take different ones.
pub async fn claim_to_confirm(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<IntentRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_intents WHERE off_session AND status = 'requires_confirmation' \
         ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Pending attempts whose answer was lost and are due to be asked again, claimed.
pub async fn claim_unanswered(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM payment_attempts WHERE outcome = 'pending' AND retry_at <= $1 \
         ORDER BY retry_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}
