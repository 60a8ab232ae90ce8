//! Tenants' webhook endpoints (`webhook_endpoints`) with their signing secrets.

use chrono::{DateTime, Utc};
use ids::{EndpointId, TenantId};
use sqlx::PgConnection;

use super::EndpointStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: EndpointId,
    pub tenant_id: TenantId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl EndpointRow {
    /// The secrets that sign a delivery now: the current one, and the previous one until it
    /// expires.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_expires_at)
            && until > now
        {
            out.push(prev);
        }
        out
    }
}

macro_rules! columns {
    () => {
        "id, tenant_id, url, description, event_types, secret, previous_secret, \
         previous_expires_at, status, disabled_reason, failing_since, created_at"
    };
}

pub struct NewEndpoint<'a> {
    pub tenant: &'a TenantId,
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: &'a [String],
    pub secret: &'a str,
}

pub async fn insert(
    conn: &mut PgConnection,
    e: &NewEndpoint<'_>,
) -> Result<EndpointRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secret) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!()
    ))
    .bind(EndpointId::generate())
    .bind(e.tenant)
    .bind(e.url)
    .bind(e.description)
    .bind(e.event_types)
    .bind(e.secret)
    .fetch_one(conn)
    .await
}

pub async fn count(conn: &mut PgConnection, tenant: &TenantId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(conn)
        .await
}

pub async fn list(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// One endpoint; `tenant` `None` for the service itself (a sender knows only the id).
pub async fn get(
    conn: &mut PgConnection,
    tenant: Option<&TenantId>,
    id: &EndpointId,
    for_update: bool,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM webhook_endpoints WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2){lock}",
        columns!()
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// These endpoints (the service's own reads: no tenant scope); malformed ids match nothing.
pub async fn get_many(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM webhook_endpoints WHERE id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Writes the columns a tenant may change, and the status.
pub async fn save(conn: &mut PgConnection, e: &EndpointRow) -> Result<EndpointRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4, secret = $5, \
         previous_secret = $6, previous_expires_at = $7, status = $8, disabled_reason = $9, \
         failing_since = $10, updated_at = now() WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(&e.id)
    .bind(&e.url)
    .bind(&e.description)
    .bind(&e.event_types)
    .bind(&e.secret)
    .bind(&e.previous_secret)
    .bind(e.previous_expires_at)
    .bind(e.status)
    .bind(&e.disabled_reason)
    .bind(e.failing_since)
    .fetch_one(conn)
    .await
}

pub async fn delete(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &EndpointId,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!()
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// A success: the endpoint is not failing any more.
pub async fn succeeded(conn: &mut PgConnection, id: &EndpointId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = NULL \
         WHERE id = $1 AND failing_since IS NOT NULL",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A failure at `now`: since when the endpoint has been failing (this failure, if it was not).
pub async fn failed(
    conn: &mut PgConnection,
    id: &EndpointId,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2) \
         WHERE id = $1 RETURNING failing_since",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}
