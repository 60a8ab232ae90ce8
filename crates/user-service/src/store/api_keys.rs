//! The `api_keys` table.

use chrono::{DateTime, Utc};
use ids::{ApiKeyId, TenantId};
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, tenant_id, name, prefix, scopes, created_by, created_at, revoked_at, last_used_at";

pub struct NewKey<'a> {
    pub id: &'a ApiKeyId,
    pub tenant_id: &'a TenantId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_hash: &'a [u8],
    pub scopes: &'a [String],
    pub created_by: &'a str,
}

pub async fn insert(pool: &PgPool, k: NewKey<'_>) -> Result<ApiKeyRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    )))
    .bind(k.id)
    .bind(k.tenant_id)
    .bind(k.name)
    .bind(k.prefix)
    .bind(k.secret_hash)
    .bind(k.scopes)
    .bind(k.created_by)
    .fetch_one(pool)
    .await
}

pub async fn list(
    pool: &PgPool,
    tenant_id: &TenantId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(tenant_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}

/// Revoking twice keeps the first revocation time.
pub async fn revoke(
    pool: &PgPool,
    tenant_id: &TenantId,
    id: &ApiKeyId,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The live key with this secret hash, marking it used. Keys of suspended tenants verify:
/// the gateway lets them read and nothing else (ARCHITECTURE.md, "Security model").
pub async fn verify(pool: &PgPool, secret_hash: &[u8]) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE api_keys SET last_used_at = now() \
         WHERE secret_hash = $1 AND revoked_at IS NULL \
         RETURNING {COLUMNS}"
    )))
    .bind(secret_hash)
    .fetch_optional(pool)
    .await
}
