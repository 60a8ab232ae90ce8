//! Payment methods (`payment_methods`): PSP tokens and what the PSP said about them. At most
//! one live default per tenant (a partial unique index); a detached method stays for the
//! attempts that name it, and is never charged again.

use chrono::{DateTime, Utc};
use ids::{PaymentMethodId, TenantId};
use sqlx::PgConnection;

use crate::domain::provider::Provider;
use crate::psp::MethodDetails;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MethodRow {
    pub id: PaymentMethodId,
    pub tenant_id: TenantId,
    pub provider: Provider,
    pub psp_token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub detached_at: Option<DateTime<Utc>>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, provider, psp_token, brand, last4, exp_month, exp_year, is_default, \
         created_at, detached_at"
    };
}

/// Stores a method; attaching a live token again answers the stored one. The tenant's first
/// live method becomes its default.
pub async fn attach(
    conn: &mut PgConnection,
    tenant: &TenantId,
    provider: Provider,
    token: &str,
    d: &MethodDetails,
    make_default: bool,
) -> Result<MethodRow, sqlx::Error> {
    lock_tenant(conn, tenant).await?;
    let existing: Option<MethodRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_methods WHERE tenant_id = $1 AND provider = $2 AND psp_token = $3 \
         AND detached_at IS NULL"
    ))
    .bind(tenant)
    .bind(provider)
    .bind(token)
    .fetch_optional(&mut *conn)
    .await?;
    let row =
        match existing {
            Some(row) => row,
            None => sqlx::query_as(concat!(
                "INSERT INTO payment_methods (id, tenant_id, provider, psp_token, brand, last4, \
                 exp_month, exp_year) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
                columns!(),
                ""
            ))
            .bind(PaymentMethodId::generate())
            .bind(tenant)
            .bind(provider)
            .bind(token)
            .bind(&d.brand)
            .bind(&d.last4)
            .bind(d.exp_month)
            .bind(d.exp_year)
            .fetch_one(&mut *conn)
            .await?,
        };
    let has_default: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_methods WHERE tenant_id = $1 AND is_default \
         AND detached_at IS NULL)",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await?;
    if make_default || !has_default {
        return set_default(conn, tenant, &row.id)
            .await
            .map(|r| r.unwrap_or(row));
    }
    Ok(row)
}

pub async fn list(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<Vec<MethodRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_methods WHERE tenant_id = $1 AND detached_at IS NULL ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(conn)
    .await
}

/// A method of the tenant, detached ones too (attempts name them).
pub async fn get(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &PaymentMethodId,
) -> Result<Option<MethodRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_methods WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The tenant's live default method.
pub async fn default_of(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<Option<MethodRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM payment_methods WHERE tenant_id = $1 AND is_default AND detached_at IS NULL"
    ))
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// Serializes changes to one tenant's methods, so "first method" and "one default" hold.
async fn lock_tenant(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 4))")
        .bind(tenant)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Makes a live method the default; `None` when there is no such live method.
pub async fn set_default(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &PaymentMethodId,
) -> Result<Option<MethodRow>, sqlx::Error> {
    lock_tenant(conn, tenant).await?;
    sqlx::query(
        "UPDATE payment_methods SET is_default = false WHERE tenant_id = $1 AND is_default \
         AND id <> $2",
    )
    .bind(tenant)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(concat!(
        "UPDATE payment_methods SET is_default = true WHERE tenant_id = $1 AND id = $2 \
         AND detached_at IS NULL RETURNING ",
        columns!(),
        ""
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Detaches a method (it stops being the default); detaching twice answers the same row.
pub async fn detach(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: &PaymentMethodId,
) -> Result<Option<MethodRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE payment_methods SET detached_at = coalesce(detached_at, now()), \
         is_default = false WHERE tenant_id = $1 AND id = $2 RETURNING ",
        columns!(),
        ""
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await
}
