//! The `tenants` table.

use chrono::{DateTime, Utc};
use ids::TenantId;

use crate::domain::TenantStatus;
use sqlx::{PgConnection, PgPool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub slug: String,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, slug, status, created_at, updated_at";

pub async fn insert(
    conn: &mut PgConnection,
    id: &TenantId,
    name: &str,
    slug: &str,
) -> Result<TenantRow, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenants (id, name, slug, status) VALUES ($1, $2, $3, 'active') RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(name)
    .bind(slug)
    .fetch_one(conn)
    .await
}

pub async fn get(pool: &PgPool, id: &TenantId) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenants WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn rename(
    pool: &PgPool,
    id: &TenantId,
    name: &str,
) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET name = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(name)
    .fetch_optional(pool)
    .await
}

pub async fn set_status(
    conn: &mut PgConnection,
    id: &TenantId,
    status: TenantStatus,
) -> Result<Option<TenantRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(status)
    .fetch_optional(conn)
    .await
}

/// One page after `after` (exclusive), `limit + 1` rows so the caller can tell `has_more`.
pub async fn list(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TenantRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tenants WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}
