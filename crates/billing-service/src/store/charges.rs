//! Charge lines of a run.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ids::{RunId, TenantId};
use pricing::{ChargeKind, Decimal};
use sqlx::PgConnection;

use crate::domain::LineKind;
use crate::domain::charges::{Line, LineKey};

fn kind(l: &Line) -> LineKind {
    if l.adjustment {
        return LineKind::Adjustment;
    }
    match l.kind {
        ChargeKind::Flat => LineKind::Flat,
        ChargeKind::Seat => LineKind::Seat,
        ChargeKind::Metered => LineKind::Usage,
    }
}

pub async fn insert(
    conn: &mut PgConnection,
    run_id: &RunId,
    lines: &[Line],
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let n = lines.len();
    let (mut tenants, mut kinds, mut prices, mut metrics) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut qty, mut amounts, mut currencies, mut minimums) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut plans, mut versions, mut starts, mut ends) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for l in lines {
        plans.push(l.plan_id.as_str());
        versions.push(l.plan_version as i32);
        starts.push(l.span.map(|s| s.0));
        ends.push(l.span.map(|s| s.1));
        tenants.push(l.tenant_id.as_str());
        kinds.push(kind(l));
        prices.push(l.price_id.as_str());
        metrics.push(l.metric.as_deref().unwrap_or(""));
        qty.push(l.quantity);
        amounts.push(l.amount_minor);
        currencies.push(l.currency.as_str().to_string());
        minimums.push(l.minimum_applied);
    }
    sqlx::query(
        "INSERT INTO charges (run_id, tenant_id, kind, price_id, metric, quantity, amount_minor, \
         currency, minimum_applied, plan_id, plan_version, starts_at, ends_at) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], \
                                  $7::bigint[], $8::text[], $9::bool[], $10::text[], \
                                  $11::integer[], $12::timestamptz[], $13::timestamptz[])",
    )
    .bind(run_id)
    .bind(&tenants)
    .bind(&kinds)
    .bind(&prices)
    .bind(&metrics)
    .bind(&qty)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&minimums)
    .bind(&plans)
    .bind(&versions)
    .bind(&starts)
    .bind(&ends)
    .execute(conn)
    .await?;
    Ok(())
}

/// What has been billed so far for `original` and its completed corrections, per line key:
/// what a correction subtracts to bill only the difference.
pub async fn billed_so_far(
    conn: &mut PgConnection,
    original: &RunId,
) -> Result<HashMap<LineKey, i64>, sqlx::Error> {
    let rows: Vec<(String, String, i32, String, i64)> = sqlx::query_as(
        "SELECT c.tenant_id, c.plan_id, c.plan_version, c.price_id, sum(c.amount_minor)::bigint \
         FROM charges c JOIN billing_runs r ON r.id = c.run_id \
         WHERE (r.id = $1 OR r.corrects_run_id = $1) AND r.status = 'completed' \
         GROUP BY 1, 2, 3, 4",
    )
    .bind(original)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tenant_id, plan_id, version, price_id, a)| {
            let key = LineKey {
                tenant_id,
                plan_id,
                plan_version: u32::try_from(version).unwrap_or(0),
                price_id,
            };
            (key, a)
        })
        .collect())
}

/// Per (tenant, currency) totals of a run, tenants ascending.
pub async fn totals(
    conn: &mut PgConnection,
    run_id: &RunId,
) -> Result<Vec<(TenantId, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, currency, sum(amount_minor)::bigint FROM charges WHERE run_id = $1 \
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChargeRow {
    pub id: i64,
    pub run_id: RunId,
    pub tenant_id: TenantId,
    pub kind: LineKind,
    pub price_id: String,
    pub metric: String,
    pub quantity: Decimal,
    pub amount_minor: i64,
    pub currency: String,
    pub plan_id: String,
    pub plan_version: i32,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// Charges of a run (one tenant's when given), after the cursor id, `limit + 1` rows.
pub async fn list(
    conn: &mut PgConnection,
    run_id: &RunId,
    tenant: Option<&TenantId>,
    after: i64,
    limit: i64,
) -> Result<Vec<ChargeRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, run_id, tenant_id, kind, price_id, metric, quantity, amount_minor, currency, \
         plan_id, plan_version, starts_at, ends_at FROM charges WHERE run_id = $1 AND ($2::text IS NULL OR tenant_id = $2) AND id > $3 \
         ORDER BY id LIMIT $4",
    )
    .bind(run_id)
    .bind(tenant)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
}

/// Usage totals per tenant and metric in a run (what metered prices charge).
pub async fn usage(
    conn: &mut PgConnection,
    run_id: &RunId,
) -> Result<BTreeMap<String, BTreeMap<String, Decimal>>, sqlx::Error> {
    let rows: Vec<(String, String, Decimal)> = sqlx::query_as(
        "SELECT tenant_id, metric, sum(quantity) FROM user_usage_summaries WHERE run_id = $1 \
         GROUP BY 1, 2",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await?;
    let mut out: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for (tenant, metric, quantity) in rows {
        out.entry(tenant).or_default().insert(metric, quantity);
    }
    Ok(out)
}
