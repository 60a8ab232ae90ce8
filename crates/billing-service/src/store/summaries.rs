//! Tenant and user usage summaries, written in canonical lock order.
//!
//! A batch of one tenant is applied in one transaction: the tenant's summary row first, then
//! its (user, metric) rows ascending — the order `concurrency::canonical_lock_keys` gives. Two
//! workers on the same tenant therefore queue on the tenant row instead of each holding rows
//! the other needs, so no lock cycle (deadlock) can form.

use chrono::{DateTime, Utc};
use concurrency::{LockKey, canonical_lock_keys};
use ids::{RunId, TenantId};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use crate::domain::aggregate::TenantDelta;

/// The order a transaction takes its row locks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOrder {
    /// The tenant row, then its user rows ascending (what production uses).
    Canonical,
    /// The same rows in a seeded random order, one statement per row: the behaviour that
    /// deadlocked in the ConcurFlow case study, kept for the regression suite only.
    #[cfg(feature = "test-util")]
    Shuffled(u64),
}

/// Where a summary row belongs: the run and the subscription period its usage was counted
/// in (the period's start).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub run_id: &'a RunId,
    pub period_start: DateTime<Utc>,
}

/// Adds `delta` to the run's summaries of its tenant, locking in `order`.
pub async fn apply(
    conn: &mut PgConnection,
    to: Target<'_>,
    delta: &TenantDelta,
    order: LockOrder,
) -> Result<(), sqlx::Error> {
    match order {
        LockOrder::Canonical => apply_canonical(conn, to, delta).await,
        #[cfg(feature = "test-util")]
        LockOrder::Shuffled(seed) => apply_shuffled(conn, to, delta, seed).await,
    }
}

async fn apply_canonical(
    conn: &mut PgConnection,
    to: Target<'_>,
    delta: &TenantDelta,
) -> Result<(), sqlx::Error> {
    let run_id = to.run_id;
    let keys = canonical_lock_keys(&delta.tenant_id, delta.user_ids());
    debug_assert_eq!(keys.first(), Some(&LockKey::tenant(&delta.tenant_id)));
    upsert_tenant(conn, run_id, delta).await?;
    // The user rows in one statement, in key order (the BTreeMap's order is the keys' order).
    let n = delta.users.len();
    let (mut users, mut metrics, mut records, mut quantities) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((user, metric), total) in &delta.users {
        users.push(user.as_str());
        metrics.push(metric.as_str());
        records.push(total.records);
        quantities.push(total.quantity);
    }
    sqlx::query(
        r#"INSERT INTO user_usage_summaries AS s (run_id, tenant_id, period_start, user_id, metric, records, quantity)
           SELECT $1, $2, $7, u COLLATE "C", m COLLATE "C", r, q
           FROM unnest($3::text[], $4::text[], $5::bigint[], $6::numeric[]) AS t(u, m, r, q)
           ORDER BY 4, 5
           ON CONFLICT (run_id, tenant_id, period_start, user_id, metric) DO UPDATE
           SET records = s.records + excluded.records, quantity = s.quantity + excluded.quantity"#,
    )
    .bind(run_id)
    .bind(&delta.tenant_id)
    .bind(&users)
    .bind(&metrics)
    .bind(&records)
    .bind(&quantities)
    .bind(to.period_start)
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_tenant(
    conn: &mut PgConnection,
    run_id: &RunId,
    delta: &TenantDelta,
) -> Result<(), sqlx::Error> {
    let total = delta.total();
    sqlx::query(
        "INSERT INTO tenant_summaries AS s (run_id, tenant_id, records, quantity) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (run_id, tenant_id) DO UPDATE \
         SET records = s.records + excluded.records, quantity = s.quantity + excluded.quantity, \
             updated_at = now()",
    )
    .bind(run_id)
    .bind(&delta.tenant_id)
    .bind(total.records)
    .bind(total.quantity)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(feature = "test-util")]
async fn apply_shuffled(
    conn: &mut PgConnection,
    to: Target<'_>,
    delta: &TenantDelta,
    seed: u64,
) -> Result<(), sqlx::Error> {
    let run_id = to.run_id;
    // Lock units: None = the tenant row, Some(i) = the i-th (user, metric) row.
    let mut units: Vec<Option<usize>> = std::iter::once(None)
        .chain((0..delta.users.len()).map(Some))
        .collect();
    // Fisher–Yates with splitmix64: reproducible from the seed, no dependency.
    let mut state = seed;
    for i in (1..units.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        units.swap(i, (z % (i as u64 + 1)) as usize);
    }
    let rows: Vec<_> = delta.users.iter().collect();
    for unit in units {
        match unit {
            None => upsert_tenant(conn, run_id, delta).await?,
            Some(i) => {
                let ((user, metric), total) = rows[i];
                sqlx::query(
                    "INSERT INTO user_usage_summaries AS s \
                     (run_id, tenant_id, user_id, metric, records, quantity, period_start) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (run_id, tenant_id, period_start, user_id, metric) DO UPDATE \
                     SET records = s.records + excluded.records, \
                         quantity = s.quantity + excluded.quantity",
                )
                .bind(run_id)
                .bind(&delta.tenant_id)
                .bind(user)
                .bind(metric)
                .bind(total.records)
                .bind(total.quantity)
                .bind(to.period_start)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// The run's summary rows of `tenant`: `(user, metric) → (records, quantity)`, and the tenant
/// row.
pub async fn read(
    conn: &mut PgConnection,
    run_id: &RunId,
    tenant: &TenantId,
) -> Result<(Vec<(String, String, i64, Decimal)>, Option<(i64, Decimal)>), sqlx::Error> {
    let users = sqlx::query_as(
        "SELECT user_id, metric, records, quantity FROM user_usage_summaries \
         WHERE run_id = $1 AND tenant_id = $2 ORDER BY user_id, metric",
    )
    .bind(run_id)
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    let tenant_row = sqlx::query_as(
        "SELECT records, quantity FROM tenant_summaries WHERE run_id = $1 AND tenant_id = $2",
    )
    .bind(run_id)
    .bind(tenant)
    .fetch_optional(conn)
    .await?;
    Ok((users, tenant_row))
}
