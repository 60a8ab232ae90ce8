//! Operator-configured tax rates (`tax_rates`). A rate is never edited: a new rate for the
//! same place archives the live one in the same transaction.

use chrono::{DateTime, Utc};
use ids::TaxRateId;
use pricing::Decimal;
use sqlx::PgConnection;

use crate::domain::tax::TaxRate;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RateRow {
    pub id: TaxRateId,
    pub country: String,
    pub region: Option<String>,
    pub percentage: Decimal,
    pub name: String,
    pub inclusive: bool,
    pub created_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl RateRow {
    pub fn rate(&self) -> TaxRate {
        TaxRate {
            id: self.id.to_string(),
            name: self.name.clone(),
            country: self.country.clone(),
            region: self.region.clone(),
            percentage: self.percentage,
            inclusive: self.inclusive,
        }
    }
}

macro_rules! columns {
    () => {
        "id, country, region, percentage, name, inclusive, created_at, archived_at"
    };
}

/// Stores `rate` as the live rate of its place, archiving the one it replaces.
pub async fn create(conn: &mut PgConnection, rate: &TaxRate) -> Result<RateRow, sqlx::Error> {
    sqlx::query(
        "UPDATE tax_rates SET archived_at = now() WHERE archived_at IS NULL AND country = $1 \
         AND coalesce(region, '') = coalesce($2, '')",
    )
    .bind(&rate.country)
    .bind(&rate.region)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(concat!(
        "INSERT INTO tax_rates (id, country, region, percentage, name, inclusive) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        columns!(),
        ""
    ))
    .bind(&rate.id)
    .bind(&rate.country)
    .bind(&rate.region)
    .bind(rate.percentage)
    .bind(&rate.name)
    .bind(rate.inclusive)
    .fetch_one(conn)
    .await
}

/// Rates by place; archived ones too when asked.
pub async fn list(conn: &mut PgConnection, archived: bool) -> Result<Vec<RateRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM tax_rates WHERE $1 OR archived_at IS NULL \
         ORDER BY country, region NULLS FIRST, created_at DESC"
    ))
    .bind(archived)
    .fetch_all(conn)
    .await
}

/// The live rates of `country` (what a finalization chooses from).
pub async fn live_in(conn: &mut PgConnection, country: &str) -> Result<Vec<TaxRate>, sqlx::Error> {
    let rows: Vec<RateRow> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM tax_rates WHERE archived_at IS NULL AND country = $1"
    ))
    .bind(country)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(RateRow::rate).collect())
}

/// Archives a live rate; `None` when there is no such rate. Archiving twice is a no-op.
pub async fn archive(
    conn: &mut PgConnection,
    id: &TaxRateId,
) -> Result<Option<RateRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE tax_rates SET archived_at = coalesce(archived_at, now()) WHERE id = $1 \
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}
