//! Messages (`messages`): what a tenant is told about one event, written once per event with
//! its deliveries, and read back with them for the delivery log.

use chrono::{DateTime, Utc};
use ids::{DeliveryId, MessageId, TenantId};
use sqlx::PgConnection;

use super::{Channel, DeliveryStatus};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    /// The invoice whose PDF an e-mail carries.
    pub attachment: Option<String>,
    pub created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, event_id, event_type, body, subject, text_body, html_body, attachment, \
         created_at"
    };
}

pub struct NewMessage<'a> {
    pub tenant: &'a TenantId,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub body: &'a str,
    pub mail: Option<&'a crate::domain::templates::Rendered>,
    pub attachment: Option<&'a str>,
}

/// Stores a message with one pending delivery per target, due now; `None` when the tenant
/// was told of this event already.
pub async fn insert(
    conn: &mut PgConnection,
    m: &NewMessage<'_>,
    targets: &[(Channel, String)],
) -> Result<Option<MessageId>, sqlx::Error> {
    let id: Option<MessageId> = sqlx::query_scalar(
        "INSERT INTO messages (id, tenant_id, event_id, event_type, body, subject, text_body, \
         html_body, attachment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING id",
    )
    .bind(MessageId::generate())
    .bind(m.tenant)
    .bind(m.event_id)
    .bind(m.event_type)
    .bind(m.body)
    .bind(m.mail.map(|r| r.subject.as_str()))
    .bind(m.mail.map(|r| r.text.as_str()))
    .bind(m.mail.map(|r| r.html.as_str()))
    .bind(m.attachment)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else { return Ok(None) };
    let ids: Vec<DeliveryId> = targets.iter().map(|_| DeliveryId::generate()).collect();
    let channels: Vec<Channel> = targets.iter().map(|(c, _)| *c).collect();
    let addresses: Vec<&str> = targets.iter().map(|(_, t)| t.as_str()).collect();
    sqlx::query(
        "INSERT INTO deliveries (id, message_id, tenant_id, channel, target, next_attempt_at) \
         SELECT d, $2, $3, c, t, now() FROM unnest($1::text[], $4::text[], $5::text[]) AS x(d, c, t) \
         ON CONFLICT (message_id, channel, target) DO NOTHING",
    )
    .bind(&ids)
    .bind(&id)
    .bind(m.tenant)
    .bind(&channels)
    .bind(&addresses)
    .execute(conn)
    .await?;
    Ok(Some(id))
}

pub async fn get(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    id: &MessageId,
) -> Result<Option<MessageRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// These messages (the service's own reads: no tenant scope).
pub async fn get_many(
    conn: &mut PgConnection,
    ids: &[MessageId],
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// A page of the tenant's messages, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: &TenantId,
    event_type: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM messages WHERE tenant_id = $1 AND ($2::text IS NULL OR event_type = $2) \
         AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    ))
    .bind(tenant)
    .bind(event_type)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub message_id: MessageId,
    pub channel: Channel,
    pub target: String,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The deliveries of these messages.
pub async fn deliveries(
    conn: &mut PgConnection,
    messages: &[MessageId],
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, message_id, channel, target, status, next_attempt_at, last_error \
         FROM deliveries WHERE message_id = ANY($1) ORDER BY id",
    )
    .bind(messages)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: DeliveryId,
    pub number: i32,
    pub at: DateTime<Utc>,
    pub response_code: Option<i32>,
    pub latency_ms: i32,
    pub response: String,
}

pub async fn attempts(
    conn: &mut PgConnection,
    deliveries: &[DeliveryId],
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT delivery_id, number, at, response_code, latency_ms, response \
         FROM delivery_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, number",
    )
    .bind(deliveries)
    .fetch_all(conn)
    .await
}
