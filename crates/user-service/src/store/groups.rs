//! The `scim_groups` and `scim_group_members` tables, and the role bindings groups grant.

use super::scim_filter::{self, SqlFilter, condition};
use chrono::{DateTime, Utc};
use ids::{GroupId, TenantId};
use sqlx::{PgConnection, PgPool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    pub id: GroupId,
    pub tenant_id: TenantId,
    pub display_name: String,
    pub external_id: Option<String>,
    pub role: Option<String>,
    pub version: i64,
    pub members: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT g.id, g.tenant_id, g.display_name, g.external_id, g.role, g.version, \
     COALESCE(array_agg(m.user_id ORDER BY m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members, \
     g.created_at, g.updated_at \
     FROM scim_groups g LEFT JOIN scim_group_members m ON m.group_id = g.id";

pub async fn get(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> Result<Option<GroupRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE g.tenant_id = $1 AND g.id = $2 GROUP BY g.id"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The tenant's groups matching `filter` (all without one); its parameters start at `$2`.
pub async fn count(
    pool: &PgPool,
    tenant_id: &TenantId,
    filter: Option<&SqlFilter>,
) -> Result<i64, sqlx::Error> {
    scim_filter::count(pool, "scim_groups g", tenant_id, filter).await
}

/// The tenant's groups matching `filter` (all without one) in id order, `offset` skipped, at
/// most `limit`. The filter's parameters start at `$4`.
pub async fn window(
    pool: &PgPool,
    tenant_id: &TenantId,
    filter: Option<&SqlFilter>,
    offset: i64,
    limit: i64,
) -> Result<Vec<GroupRow>, sqlx::Error> {
    let (cond, params) = condition(filter);
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE g.tenant_id = $1 AND {cond} GROUP BY g.id ORDER BY g.id OFFSET $2 LIMIT $3"
    )))
    .bind(tenant_id)
    .bind(offset)
    .bind(limit);
    for p in params {
        q = q.bind(p);
    }
    q.fetch_all(pool).await
}

pub async fn insert(
    conn: &mut PgConnection,
    id: &GroupId,
    tenant_id: &TenantId,
    name: &str,
    external_id: Option<&str>,
    role: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO scim_groups (id, tenant_id, display_name, external_id, role) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(tenant_id)
        .bind(name)
        .bind(external_id)
        .bind(role)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks the group row; false when the tenant has no such group.
pub async fn lock(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 FROM scim_groups WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

pub async fn update(
    conn: &mut PgConnection,
    id: &GroupId,
    name: &str,
    external_id: Option<&str>,
    role: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE scim_groups SET display_name = $2, external_id = $3, role = $4, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(external_id)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the membership and re-derives the role bindings the group grants, in one go. Only
/// users of the same tenant can be members; returns the ids that were not.
pub async fn set_members(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &GroupId,
    members: &[String],
    role: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    let known: Vec<String> =
        sqlx::query_scalar("SELECT id FROM users WHERE tenant_id = $1 AND id = ANY($2)")
            .bind(tenant_id)
            .bind(members)
            .fetch_all(&mut *conn)
            .await?;
    let unknown: Vec<String> = members
        .iter()
        .filter(|m| !known.contains(m))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Ok(unknown);
    }
    sqlx::query("DELETE FROM scim_group_members WHERE group_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO scim_group_members (group_id, user_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(&known)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM role_bindings WHERE tenant_id = $1 AND source = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if let Some(role) = role {
        sqlx::query(
            "INSERT INTO role_bindings (tenant_id, user_id, role, source) SELECT $1, unnest($2::text[]), $3, $4",
        )
        .bind(tenant_id)
        .bind(&known)
        .bind(role)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Vec::new())
}

/// Deletes the group and the roles it granted.
pub async fn delete(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &GroupId,
) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM role_bindings WHERE tenant_id = $1 AND source = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query("DELETE FROM scim_groups WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}
