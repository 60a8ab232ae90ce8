//! Billing profiles (`billing_profiles`), one per tenant.

use chrono::{DateTime, Utc};
use ids::TenantId;
use sqlx::PgConnection;

use crate::domain::parties::{BillingProfile, Party};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    pub tenant_id: TenantId,
    pub legal_name: String,
    pub address_lines: Vec<String>,
    pub country: String,
    pub region: Option<String>,
    pub tax_id: Option<String>,
    pub tax_exempt: bool,
    pub billing_email: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl ProfileRow {
    pub fn profile(&self) -> BillingProfile {
        BillingProfile {
            party: Party {
                name: self.legal_name.clone(),
                address_lines: self.address_lines.clone(),
                country: self.country.clone(),
                region: self.region.clone(),
                tax_id: self.tax_id.clone(),
                email: self.billing_email.clone(),
            },
            tax_exempt: self.tax_exempt,
        }
    }
}

macro_rules! columns {
    () => {
        "tenant_id, legal_name, address_lines, country, region, tax_id, \
                       tax_exempt, billing_email, updated_at"
    };
}

pub async fn get(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<Option<ProfileRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM billing_profiles WHERE tenant_id = $1"
    ))
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// Writes the whole profile (insert or replace).
pub async fn put(
    conn: &mut PgConnection,
    tenant: &TenantId,
    p: &BillingProfile,
) -> Result<ProfileRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO billing_profiles (tenant_id, legal_name, address_lines, country, region, \
                                       tax_id, tax_exempt, billing_email) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id) DO UPDATE SET legal_name = $2, address_lines = $3, \
           country = $4, region = $5, tax_id = $6, tax_exempt = $7, billing_email = $8, \
           updated_at = now() \
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(tenant)
    .bind(&p.party.name)
    .bind(&p.party.address_lines)
    .bind(&p.party.country)
    .bind(&p.party.region)
    .bind(&p.party.tax_id)
    .bind(p.tax_exempt)
    .bind(&p.party.email)
    .fetch_one(conn)
    .await
}
