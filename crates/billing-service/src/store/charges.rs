//! Charge lines of a run.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ids::{RunId, TenantId};
use pricing::{ChargeKind, Decimal};

use sqlx::PgConnection;

use crate::domain::charges::{Basis, Line, PriceKey};
use crate::domain::cycles::{Charge, PartKey};
use crate::domain::{LineKind, Part};

fn kind(l: &Line) -> LineKind {
    match l.basis {
        Basis::Adjustment => return LineKind::Adjustment,
        Basis::Proration => return LineKind::Proration,
        Basis::Priced => {}
    }
    match l.kind {
        ChargeKind::Flat => LineKind::Flat,
        ChargeKind::Seat => LineKind::Seat,
        ChargeKind::Metered => LineKind::Usage,
    }
}

/// Writes a run's charge lines.
pub async fn insert(
    conn: &mut PgConnection,
    run_id: &RunId,
    charges: &[Charge],
) -> Result<(), sqlx::Error> {
    if charges.is_empty() {
        return Ok(());
    }
    // One array per column, one row per charge.
    fn col<'a, T>(charges: &'a [Charge], f: impl Fn(&'a Charge) -> T) -> Vec<T> {
        charges.iter().map(f).collect()
    }
    let tenants = col(charges, |c| c.line.tenant_id.as_str());
    let kinds = col(charges, |c| kind(&c.line));
    let prices = col(charges, |c| c.line.price_id.as_str());
    let metrics = col(charges, |c| c.line.metric.as_deref().unwrap_or(""));
    let qty = col(charges, |c| c.line.quantity);
    let amounts = col(charges, |c| c.line.amount_minor);
    let currencies = col(charges, |c| c.line.currency.as_str());
    let minimums = col(charges, |c| c.line.minimum_applied);
    let plans = col(charges, |c| c.line.plan_id.as_str());
    let versions = col(charges, |c| c.line.plan_version as i32);
    let starts = col(charges, |c| c.line.span.map(|s| s.0));
    let ends = col(charges, |c| c.line.span.map(|s| s.1));
    let subs = col(charges, |c| c.key.subscription_id.as_str());
    let period_starts = col(charges, |c| c.key.period_start);
    let period_ends = col(charges, |c| c.period_end);
    let parts = col(charges, |c| c.key.part);
    sqlx::query(
        "INSERT INTO charges (run_id, tenant_id, kind, price_id, metric, quantity, amount_minor, \
         currency, minimum_applied, plan_id, plan_version, starts_at, ends_at, subscription_id, \
         period_start, period_end, part) \
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], \
                                  $7::bigint[], $8::text[], $9::bool[], $10::text[], \
                                  $11::integer[], $12::timestamptz[], $13::timestamptz[], \
                                  $14::text[], $15::timestamptz[], $16::timestamptz[], $17::text[])",
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
    .bind(&subs)
    .bind(&period_starts)
    .bind(&period_ends)
    .bind(&parts)
    .execute(conn)
    .await?;
    Ok(())
}

/// What has been billed so far for each of `parts`, per price: the sum of every charge line of
/// the part (the run that claimed it and its corrections).
pub async fn billed(
    conn: &mut PgConnection,
    parts: &[PartKey],
) -> Result<HashMap<PartKey, HashMap<PriceKey, i64>>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(HashMap::new());
    }
    let (subs, starts, kinds) = columns(parts);
    /// A part's key, a price's key and the sum billed.
    type Row = (String, DateTime<Utc>, Part, String, i32, String, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.subscription_id, c.period_start, c.part, c.plan_id, c.plan_version, c.price_id, \
                sum(c.amount_minor)::bigint \
         FROM charges c JOIN unnest($1::text[], $2::timestamptz[], $3::text[]) AS k(s, p, t) \
           ON c.subscription_id = k.s AND c.period_start = k.p AND c.part = k.t \
         GROUP BY 1, 2, 3, 4, 5, 6",
    )
    .bind(&subs)
    .bind(&starts)
    .bind(&kinds)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<PartKey, HashMap<PriceKey, i64>> = HashMap::new();
    for (sub, start, part, plan_id, version, price_id, amount) in rows {
        let key = PartKey {
            subscription_id: sub,
            period_start: start,
            part,
        };
        let price = PriceKey {
            plan_id,
            plan_version: u32::try_from(version).unwrap_or(0),
            price_id,
        };
        out.entry(key).or_default().insert(price, amount);
    }
    Ok(out)
}

/// Parts as the three columns `unnest` joins on.
pub(crate) fn columns(parts: &[PartKey]) -> (Vec<&str>, Vec<DateTime<Utc>>, Vec<Part>) {
    let mut cols = (Vec::new(), Vec::new(), Vec::new());
    for p in parts {
        cols.0.push(p.subscription_id.as_str());
        cols.1.push(p.period_start);
        cols.2.push(p.part);
    }
    cols
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
    pub subscription_id: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub part: String,
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
         plan_id, plan_version, starts_at, ends_at, subscription_id, period_start, period_end, \
         part FROM charges WHERE run_id = $1 AND ($2::text IS NULL OR tenant_id = $2) AND id > $3 \
         ORDER BY id LIMIT $4",
    )
    .bind(run_id)
    .bind(tenant)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
}

/// A run's usage per (tenant, period start) and metric: what metered prices charge.
pub type PeriodUsage = HashMap<(String, DateTime<Utc>), BTreeMap<String, Decimal>>;

pub async fn usage(conn: &mut PgConnection, run_id: &RunId) -> Result<PeriodUsage, sqlx::Error> {
    let rows: Vec<(String, DateTime<Utc>, String, Decimal)> = sqlx::query_as(
        "SELECT tenant_id, period_start, metric, sum(quantity) FROM user_usage_summaries \
         WHERE run_id = $1 GROUP BY 1, 2, 3",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await?;
    let mut out = PeriodUsage::new();
    for (tenant, start, metric, quantity) in rows {
        out.entry((tenant, start))
            .or_default()
            .insert(metric, quantity);
    }
    Ok(out)
}
