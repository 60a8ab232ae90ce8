//! Tenants' names (`tenants`), kept from `tenant.created` for what templates say.

use ids::TenantId;
use sqlx::PgConnection;

pub async fn upsert(
    conn: &mut PgConnection,
    tenant: &TenantId,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET name = excluded.name",
    )
    .bind(tenant)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant's name; its id when the service has not heard of it.
pub async fn name_of(conn: &mut PgConnection, tenant: &TenantId) -> Result<String, sqlx::Error> {
    let name: Option<String> = sqlx::query_scalar("SELECT name FROM tenants WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(name.unwrap_or_else(|| tenant.to_string()))
}
