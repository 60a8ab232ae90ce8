//! The `scim_tokens` table: one or more bearer tokens per tenant for its identity provider.

use ids::{ScimTokenId, TenantId};
use sqlx::PgPool;

pub async fn insert(
    pool: &PgPool,
    id: &ScimTokenId,
    tenant_id: &TenantId,
    secret_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO scim_tokens (id, tenant_id, secret_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(tenant_id)
        .bind(secret_hash)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn revoke(
    pool: &PgPool,
    tenant_id: &TenantId,
    id: &ScimTokenId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE scim_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

/// The tenant of a live token (its tenant active), if any.
pub async fn tenant_of(pool: &PgPool, secret_hash: &[u8]) -> Result<Option<TenantId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.tenant_id FROM scim_tokens s JOIN tenants t ON t.id = s.tenant_id \
         WHERE s.secret_hash = $1 AND s.revoked_at IS NULL AND t.status = 'active'",
    )
    .bind(secret_hash)
    .fetch_optional(pool)
    .await
}
