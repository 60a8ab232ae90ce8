//! The `users` and `role_bindings` tables.

use super::scim_filter::{self, SqlFilter, condition};
use chrono::{DateTime, Utc};
use ids::{TenantId, UserId};

use crate::domain::UserStatus;
use sqlx::{PgConnection, PgPool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: UserId,
    pub tenant_id: TenantId,
    /// Empty when the user has none (SCIM users may not).
    pub email: String,
    /// Unique in the tenant; the e-mail for users created through the API.
    pub user_name: String,
    pub email_type: String,
    pub email_primary: bool,
    pub display_name: String,
    pub status: UserStatus,
    pub external_id: Option<String>,
    pub given_name: String,
    pub family_name: String,
    /// Whether SCIM's `active` is assigned (a PATCH can remove it; the user stays active).
    pub active_assigned: bool,
    pub version: i64,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Users with their roles aggregated, so one query answers a page.
const SELECT: &str = "SELECT u.id, u.tenant_id, u.email, u.user_name, u.email_type, u.email_primary, u.display_name, u.status, u.external_id, \
     u.given_name, u.family_name, u.active_assigned, u.version, \
     COALESCE(array_agg(DISTINCT rb.role ORDER BY rb.role) FILTER (WHERE rb.role IS NOT NULL), '{}') AS roles, \
     u.created_at, u.updated_at \
     FROM users u LEFT JOIN role_bindings rb ON rb.user_id = u.id AND rb.tenant_id = u.tenant_id";

pub struct NewUser<'a> {
    pub id: &'a UserId,
    pub tenant_id: &'a TenantId,
    pub email: &'a str,
    pub display_name: &'a str,
    pub roles: &'a [String],
}

pub async fn insert(conn: &mut PgConnection, u: NewUser<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, user_name, display_name, status) \
         VALUES ($1, $2, $3, $3, $4, 'active')",
    )
    .bind(u.id)
    .bind(u.tenant_id)
    .bind(u.email)
    .bind(u.display_name)
    .execute(&mut *conn)
    .await?;
    set_roles(conn, u.tenant_id, u.id, u.roles).await
}

pub async fn set_roles(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    user_id: &UserId,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    // Only direct grants: roles that come from SCIM groups stay until the group changes.
    sqlx::query(
        "DELETE FROM role_bindings WHERE tenant_id = $1 AND user_id = $2 AND source = 'direct'",
    )
    .bind(tenant_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO role_bindings (tenant_id, user_id, role) SELECT $1, $2, unnest($3::text[])",
    )
    .bind(tenant_id)
    .bind(user_id)
    .bind(roles)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE u.tenant_id = $1 AND u.id = $2 GROUP BY u.id"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Locks the user row for an update within the caller's transaction.
pub async fn lock(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

pub async fn update(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
    email: Option<&str>,
    display_name: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        // The user name follows the e-mail while they are the same (API-created users).
        "UPDATE users SET user_name = CASE WHEN $3::text IS NOT NULL \
         AND lower(user_name) = lower(email) THEN $3 ELSE user_name END, \
         email = COALESCE($3, email), display_name = COALESCE($4, display_name), \
         version = version + 1, updated_at = now() WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(email)
    .bind(display_name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns whether the user was active before (so deactivation is reported once).
pub async fn deactivate(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE users SET status = 'deactivated', version = version + 1, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 AND status = 'active'",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub struct ListFilter<'a> {
    pub email: Option<&'a str>,
    pub status: Option<UserStatus>,
}

pub async fn list(
    pool: &PgPool,
    tenant_id: &TenantId,
    filter: ListFilter<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE u.tenant_id = $1 AND ($2::text IS NULL OR lower(u.email) = lower($2)) \
         AND ($3::text IS NULL OR u.status = $3) AND ($4::text IS NULL OR u.id > $4) \
         GROUP BY u.id ORDER BY u.id LIMIT $5"
    )))
    .bind(tenant_id)
    .bind(filter.email)
    .bind(filter.status)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
}

/// The tenant's users matching `filter` (all without one); its parameters start at `$2`.
pub async fn count(
    pool: &PgPool,
    tenant_id: &TenantId,
    filter: Option<&SqlFilter>,
) -> Result<i64, sqlx::Error> {
    scim_filter::count(pool, "users u", tenant_id, filter).await
}

/// The tenant's users matching `filter` (all without one) in id order, `offset` skipped, at
/// most `limit`: a SCIM page, or the users the root search evaluates. The filter's
/// parameters start at `$4`.
pub async fn window(
    pool: &PgPool,
    tenant_id: &TenantId,
    filter: Option<&SqlFilter>,
    offset: i64,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let (cond, params) = condition(filter);
    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE u.tenant_id = $1 AND {cond} GROUP BY u.id ORDER BY u.id OFFSET $2 LIMIT $3"
    )))
    .bind(tenant_id)
    .bind(offset)
    .bind(limit);
    for p in params {
        q = q.bind(p);
    }
    q.fetch_all(pool).await
}

/// The SCIM-managed attributes of a user.
pub struct ScimFields<'a> {
    pub user_name: &'a str,
    pub email: &'a str,
    pub email_type: &'a str,
    pub email_primary: bool,
    pub display_name: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub external_id: Option<&'a str>,
    pub active: bool,
    pub active_assigned: bool,
}

pub async fn insert_scim(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
    f: &ScimFields<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, given_name, family_name, external_id, status, user_name, email_type, email_primary, active_assigned) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN 'active' ELSE 'deactivated' END, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(f.email)
    .bind(f.display_name)
    .bind(f.given_name)
    .bind(f.family_name)
    .bind(f.external_id)
    .bind(f.active)
    .bind(f.user_name)
    .bind(f.email_type)
    .bind(f.email_primary)
    .bind(f.active_assigned)
    .execute(&mut *conn)
    .await?;
    set_roles(conn, tenant_id, id, &["member".to_string()]).await
}

pub async fn replace_scim(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
    f: &ScimFields<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET email = $3, display_name = $4, given_name = $5, family_name = $6, external_id = $7, \
         status = CASE WHEN $8 THEN 'active' ELSE 'deactivated' END, user_name = $9, email_type = $10, email_primary = $11, active_assigned = $12, \
         version = version + 1, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(f.email)
    .bind(f.display_name)
    .bind(f.given_name)
    .bind(f.family_name)
    .bind(f.external_id)
    .bind(f.active)
    .bind(f.user_name)
    .bind(f.email_type)
    .bind(f.email_primary)
    .bind(f.active_assigned)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    id: &UserId,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}
