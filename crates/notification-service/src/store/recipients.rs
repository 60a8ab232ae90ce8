//! A tenant's recipients (`recipients`): e-mail addresses and phone numbers with the events
//! each wants.

use chrono::{DateTime, Utc};
use ids::{RecipientId, TenantId};
use sqlx::PgConnection;

use super::Channel;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecipientRow {
    pub id: RecipientId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub address: String,
    pub event_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, channel, address, event_types, created_at"
    };
}

/// Stores a recipient; `None` when the tenant has this address on this channel already.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: &TenantId,
    channel: Channel,
    address: &str,
    event_types: &[String],
) -> Result<Option<RecipientRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO recipients (id, tenant_id, channel, address, event_types) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, channel, address) DO NOTHING \
         RETURNING ",
        columns!()
    ))
    .bind(RecipientId::generate())
    .bind(tenant)
    .bind(channel)
    .bind(address)
    .bind(event_types)
    .fetch_optional(conn)
    .await
}

pub async fn list(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<Vec<RecipientRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM recipients WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

pub async fn set_event_types(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &RecipientId,
    event_types: &[String],
) -> Result<Option<RecipientRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE recipients SET event_types = $3 WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(event_types)
    .fetch_optional(conn)
    .await
}

pub async fn delete(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &RecipientId,
) -> Result<Option<RecipientRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "DELETE FROM recipients WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}
