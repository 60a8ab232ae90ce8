//! Billing run records.

use chrono::{DateTime, Utc};
use ids::{RunId, TenantId};
use sqlx::PgConnection;

use crate::domain::RunStatus;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: RunId,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub tenant_ids: Vec<TenantId>,
    pub status: RunStatus,
    pub deadline_seconds: i32,
    pub records_processed: i64,
    pub records_per_second: f64,
    pub error: String,
    pub corrects_run_id: Option<RunId>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times the run was claimed; the current attempt's writes carry it.
    pub attempt: i32,
}

const COLUMNS: &str = "id, period_start, period_end, tenant_ids, status, deadline_seconds, \
    records_processed, records_per_second, error, corrects_run_id, created_at, started_at, \
    finished_at, attempt";

pub struct NewRun<'a> {
    pub id: &'a RunId,
    pub period: (DateTime<Utc>, DateTime<Utc>),
    /// Sorted and de-duplicated.
    pub tenant_ids: &'a [TenantId],
    pub deadline_seconds: i32,
    pub corrects_run_id: Option<&'a RunId>,
}

/// The key of a run's tenant set (sorted, de-duplicated ids): the hex SHA-256 of the ids
/// joined by newlines, so the uniqueness index stays small however many tenants a run
/// names (`migrations/billing/0304` computes the same in SQL for older runs).
pub fn tenant_key(tenant_ids: &[TenantId]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (i, t) in tenant_ids.iter().enumerate() {
        if i > 0 {
            hash.update(b"\n");
        }
        hash.update(t.as_str().as_bytes());
    }
    let digest = hash.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inserts the run, or returns the existing one for the same period and tenants (`false`).
pub async fn insert_or_existing(
    conn: &mut PgConnection,
    r: &NewRun<'_>,
) -> Result<(RunRow, bool), sqlx::Error> {
    let key = tenant_key(r.tenant_ids);
    let q = format!(
        "INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, tenant_key, status, \
         deadline_seconds, corrects_run_id) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7) \
         ON CONFLICT (period_start, period_end, tenant_key) WHERE corrects_run_id IS NULL \
         DO NOTHING RETURNING {COLUMNS}"
    );
    let inserted: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(r.id)
        .bind(r.period.0)
        .bind(r.period.1)
        .bind(r.tenant_ids)
        .bind(&key)
        .bind(r.deadline_seconds)
        .bind(r.corrects_run_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = inserted {
        return Ok((row, true));
    }
    let q = format!(
        "SELECT {COLUMNS} FROM billing_runs WHERE period_start = $1 AND period_end = $2 \
         AND tenant_key = $3 AND corrects_run_id IS NULL"
    );
    let row = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(r.period.0)
        .bind(r.period.1)
        .bind(&key)
        .fetch_one(conn)
        .await?;
    Ok((row, false))
}

/// The original (non-correction) run of a period and tenant set, locked.
pub async fn original_for_update(
    conn: &mut PgConnection,
    period: (DateTime<Utc>, DateTime<Utc>),
    tenant_ids: &[TenantId],
) -> Result<Option<RunRow>, sqlx::Error> {
    let q = format!(
        "SELECT {COLUMNS} FROM billing_runs WHERE period_start = $1 AND period_end = $2 \
         AND tenant_key = $3 AND corrects_run_id IS NULL FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(period.0)
        .bind(period.1)
        .bind(tenant_key(tenant_ids))
        .fetch_optional(conn)
        .await
}

/// Whether a correction of `original` is queued or running.
pub async fn correction_in_flight(
    conn: &mut PgConnection,
    original: &RunId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM billing_runs WHERE corrects_run_id = $1 \
         AND status IN ('queued', 'running'))",
    )
    .bind(original)
    .fetch_one(conn)
    .await
}

pub async fn insert_correction(
    conn: &mut PgConnection,
    r: &NewRun<'_>,
) -> Result<RunRow, sqlx::Error> {
    let q = format!(
        "INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, tenant_key, status, \
         deadline_seconds, corrects_run_id) VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7) \
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(r.id)
        .bind(r.period.0)
        .bind(r.period.1)
        .bind(r.tenant_ids)
        .bind(tenant_key(r.tenant_ids))
        .bind(r.deadline_seconds)
        .bind(r.corrects_run_id)
        .fetch_one(conn)
        .await
}

pub async fn get(conn: &mut PgConnection, id: &RunId) -> Result<Option<RunRow>, sqlx::Error> {
    let q = format!("SELECT {COLUMNS} FROM billing_runs WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Newest first, after the cursor id, `limit + 1` rows (to tell whether more exist).
pub async fn list(
    conn: &mut PgConnection,
    before: Option<&str>,
    limit: i64,
    tenant: Option<&TenantId>,
) -> Result<Vec<RunRow>, sqlx::Error> {
    let q = format!(
        "SELECT {COLUMNS} FROM billing_runs WHERE ($1::text IS NULL OR id < $1) \
         AND ($2::text IS NULL OR cardinality(tenant_ids) = 0 OR $2 = ANY(tenant_ids)) \
         ORDER BY id DESC LIMIT $3"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(before)
        .bind(tenant)
        .bind(limit + 1)
        .fetch_all(conn)
        .await
}

/// Runs still `running` whose heartbeat is older than `lease` belong to a process that died
/// or stalled: their partial rows are deleted and they go back to `queued`. (A run claimed
/// by a billing process from before leases — attempt 0, no heartbeat, no fenced writes —
/// only once its deadline has passed, as then.) A run one of
/// whose writes is in progress is skipped (its lock says its process lives), so this never
/// waits on a stalled process. Returns their ids.
pub async fn requeue_abandoned(
    conn: &mut PgConnection,
    lease: std::time::Duration,
) -> Result<Vec<RunId>, sqlx::Error> {
    let ids: Vec<RunId> = sqlx::query_scalar(
        "UPDATE billing_runs SET status = 'queued', started_at = NULL, heartbeat_at = NULL, \
         records_processed = 0 WHERE id IN (SELECT id FROM billing_runs WHERE status = 'running' \
         AND ((attempt > 0 AND coalesce(heartbeat_at, started_at) < now() - $1 * INTERVAL '1 second') \
           OR (attempt = 0 AND started_at < now() - deadline_seconds * INTERVAL '1 second')) \
         FOR UPDATE SKIP LOCKED) RETURNING id",
    )
    .bind(lease.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    delete_partial(conn, &ids).await?;
    Ok(ids)
}

async fn delete_partial(conn: &mut PgConnection, ids: &[RunId]) -> Result<(), sqlx::Error> {
    for table in [
        "charges",
        "user_usage_summaries",
        "tenant_summaries",
        "billing_run_shards",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE run_id = ANY($1)"
        )))
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Claims a queued run for execution (a new attempt, its lease fresh); `None` when another
/// worker has it or it is done.
pub async fn claim(conn: &mut PgConnection, id: &RunId) -> Result<Option<RunRow>, sqlx::Error> {
    let q = format!(
        "UPDATE billing_runs SET status = 'running', started_at = now(), heartbeat_at = now(), \
         attempt = attempt + 1 WHERE id = $1 AND status = 'queued' RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Queues a run that failed or ran out of time again, with `deadline_seconds`.
/// `None` when it is no longer failed (a concurrent request queued it already). Whatever a
/// failed attempt's late writes left is deleted with it.
pub async fn retry(
    conn: &mut PgConnection,
    id: &RunId,
    deadline_seconds: i32,
) -> Result<Option<RunRow>, sqlx::Error> {
    let q = format!(
        "UPDATE billing_runs SET status = 'queued', error = '', started_at = NULL, \
         finished_at = NULL, heartbeat_at = NULL, records_processed = 0, \
         records_per_second = 0, deadline_seconds = $2 \
         WHERE id = $1 AND status IN ('failed', 'exceeded_deadline') RETURNING {COLUMNS}"
    );
    let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(id)
        .bind(deadline_seconds)
        .fetch_optional(&mut *conn)
        .await?;
    if row.is_some() {
        delete_partial(conn, std::slice::from_ref(id)).await?;
    }
    Ok(row)
}

/// Inside a transaction that writes for `attempt` of run `id`: whether that attempt still
/// holds the run. It locks the run row against a requeue (`FOR KEY SHARE`: not against other
/// writers or the heartbeat) until the transaction ends, so a requeue either comes before —
/// and the writes are refused — or after, and deletes them.
pub async fn holds(conn: &mut PgConnection, id: &RunId, attempt: i32) -> Result<bool, sqlx::Error> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT attempt FROM billing_runs WHERE id = $1 AND attempt = $2 AND status = 'running' \
         FOR KEY SHARE",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}

/// The attempt's progress, and its heartbeat: the lease runs on from now.
pub async fn progress(
    conn: &mut PgConnection,
    id: &RunId,
    attempt: i32,
    records: i64,
    per_second: f64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE billing_runs SET records_processed = $3, records_per_second = $4, \
         heartbeat_at = now() WHERE id = $1 AND attempt = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(attempt)
    .bind(records)
    .bind(per_second)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends `attempt` of the run with `status`; a run that did not complete loses its partial
/// summaries in the same transaction, so they are never visible. `None` when the attempt no
/// longer holds the run (it was requeued): nothing changes.
pub async fn finish(
    conn: &mut PgConnection,
    id: &RunId,
    attempt: i32,
    status: RunStatus,
    done: (i64, f64),
    error: &str,
) -> Result<Option<RunRow>, sqlx::Error> {
    // The row lock first: it waits for this attempt's writes still open (a deadline's
    // aborted workers may be committing), so the deletion below sees them, and any write
    // after it finds the run no longer `running`.
    let held: Option<RunId> = sqlx::query_scalar(
        "SELECT id FROM billing_runs WHERE id = $1 AND attempt = $2 AND status = 'running' \
         FOR UPDATE",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut *conn)
    .await?;
    if held.is_none() {
        return Ok(None);
    }
    let q = format!(
        "UPDATE billing_runs SET status = $3, records_processed = $4, records_per_second = $5, \
         error = $6, finished_at = now(), heartbeat_at = NULL \
         WHERE id = $1 AND attempt = $2 AND status = 'running' RETURNING {COLUMNS}"
    );
    let row: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(id)
        .bind(attempt)
        .bind(status)
        .bind(done.0)
        .bind(done.1)
        .bind(error)
        .fetch_optional(&mut *conn)
        .await?;
    if row.is_some() && status != RunStatus::Completed {
        delete_partial(conn, std::slice::from_ref(id)).await?;
    }
    Ok(row)
}

/// Per-tenant totals of a run: (tenant, records, quantity).
pub async fn totals(
    conn: &mut PgConnection,
    id: &RunId,
) -> Result<Vec<(TenantId, i64, rust_decimal::Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, records, quantity FROM tenant_summaries WHERE run_id = $1 \
         ORDER BY tenant_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_keys_are_fixed_size_digests_of_the_set() {
        let t = |s: &str| TenantId::parse(s).unwrap();
        let many: Vec<TenantId> = (0..1000).map(|i| t(&format!("ten_{i:032}"))).collect();
        assert_eq!(tenant_key(&many).len(), 64);
        assert_ne!(tenant_key(&many[..2]), tenant_key(&many[1..3]));
        // Joined by newlines, as migration 0304 computes it in SQL.
        assert_eq!(
            tenant_key(&[t("a"), t("b")]),
            "7e18f737311b2dc3b2f269dd78396b0351f14fb66efa879f768cb23181883c78"
        );
        // The digest of the empty string: every tenant.
        assert_eq!(
            tenant_key(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
