//! Billed parts of subscription periods (`billed_periods`): the exactly-once ledger.
//!
//! A run claims the parts it bills in the transaction that writes their charges. Claims are
//! inserted in key order, so two runs claiming overlapping parts queue on the first shared
//! key instead of deadlocking; the second finds the part taken and bills nothing for it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use ids::RunId;
use sqlx::PgConnection;

use super::charges::columns;
use crate::domain::Part;
use crate::domain::cycles::PartKey;

/// A part to claim, with what the ledger records beside its key.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: PartKey,
    pub tenant_id: String,
    pub period_end: DateTime<Utc>,
}

type KeyRow = (String, DateTime<Utc>, Part);

fn key((subscription_id, period_start, part): KeyRow) -> PartKey {
    PartKey {
        subscription_id,
        period_start,
        part,
    }
}

/// Which of `parts` some run has claimed already.
pub async fn claimed(
    conn: &mut PgConnection,
    parts: &[PartKey],
) -> Result<HashSet<PartKey>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(HashSet::new());
    }
    let (subs, starts, kinds) = columns(parts);
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT b.subscription_id, b.period_start, b.part FROM billed_periods b \
         JOIN unnest($1::text[], $2::timestamptz[], $3::text[]) AS k(s, p, t) \
           ON b.subscription_id = k.s AND b.period_start = k.p AND b.part = k.t",
    )
    .bind(&subs)
    .bind(&starts)
    .bind(&kinds)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(key).collect())
}

/// Claims `parts` for `run_id`; returns those it got (the rest were claimed by other runs).
/// Blocks on a part another open transaction is claiming until that one ends.
pub async fn claim(
    conn: &mut PgConnection,
    run_id: &RunId,
    parts: &[Claim],
) -> Result<HashSet<PartKey>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: Vec<PartKey> = parts.iter().map(|c| c.key.clone()).collect();
    let (subs, starts, kinds) = columns(&keys);
    let tenants: Vec<&str> = parts.iter().map(|c| c.tenant_id.as_str()).collect();
    let ends: Vec<DateTime<Utc>> = parts.iter().map(|c| c.period_end).collect();
    let rows: Vec<KeyRow> = sqlx::query_as(
        r#"INSERT INTO billed_periods (subscription_id, period_start, part, tenant_id, period_end, run_id)
           SELECT s, p, t, tenant, e, $6
           FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::timestamptz[])
                AS k(s, p, t, tenant, e)
           ORDER BY s COLLATE "C", p, t
           ON CONFLICT DO NOTHING
           RETURNING subscription_id, period_start, part"#,
    )
    .bind(&subs)
    .bind(&starts)
    .bind(&kinds)
    .bind(&tenants)
    .bind(&ends)
    .bind(run_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(key).collect())
}

/// The parts `run_id` claimed (what a correction of it re-prices).
pub async fn of_run(conn: &mut PgConnection, run_id: &RunId) -> Result<Vec<PartKey>, sqlx::Error> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT subscription_id, period_start, part FROM billed_periods WHERE run_id = $1 \
         ORDER BY 1, 2, 3",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(key).collect())
}
