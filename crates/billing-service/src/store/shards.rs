//! A run's shards (`billing_run_shards`): ranges of its tenants that billing replicas lease
//! and fold one at a time. The shape mirrors the run's own lease (`runs`): a claim bumps
//! `attempt`, every write of the attempt first checks it still holds the shard ([`holds`]),
//! a heartbeat keeps it, and a shard whose heartbeat fell silent goes back to the queue with
//! its partial rows deleted ([`requeue_abandoned`]).

use chrono::{DateTime, Utc};
use ids::RunId;
use sqlx::PgConnection;

/// A shard as its worker sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShardRow {
    pub run_id: RunId,
    pub shard: i32,
    /// From (inclusive); `None`: from the first tenant.
    pub tenant_from: Option<String>,
    /// To (exclusive); `None`: through the last tenant.
    pub tenant_to: Option<String>,
    pub attempt: i32,
}

impl ShardRow {
    /// Whether `tenant` is one of this shard's (byte order, as `COLLATE "C"` compares).
    pub fn covers(&self, tenant: &str) -> bool {
        self.tenant_from.as_deref().is_none_or(|f| tenant >= f)
            && self.tenant_to.as_deref().is_none_or(|t| tenant < t)
    }
}

/// Cuts sorted, distinct `tenants` into at most `n` ranges of (nearly) equal size: the
/// bounds between them. No tenants or `n <= 1`: one range over everything.
pub fn cut(tenants: &[&str], n: usize) -> Vec<(Option<String>, Option<String>)> {
    let n = n.clamp(1, tenants.len().max(1));
    let bounds: Vec<Option<String>> = (1..n)
        .map(|i| Some(tenants[i * tenants.len() / n].to_string()))
        .collect();
    let mut lower = vec![None];
    lower.extend(bounds.iter().cloned());
    let mut upper = bounds;
    upper.push(None);
    lower.into_iter().zip(upper).collect()
}

/// Queues the run's shards.
pub async fn create(
    conn: &mut PgConnection,
    run_id: &RunId,
    ranges: &[(Option<String>, Option<String>)],
) -> Result<(), sqlx::Error> {
    let (from, to): (Vec<Option<String>>, Vec<Option<String>>) = ranges.iter().cloned().unzip();
    sqlx::query(
        "INSERT INTO billing_run_shards (run_id, shard, tenant_from, tenant_to) \
         SELECT $1, n::int - 1, f, t FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(f, t, n)",
    )
    .bind(run_id)
    .bind(&from)
    .bind(&to)
    .execute(conn)
    .await?;
    Ok(())
}

/// Leases a queued shard of a running run (a new attempt; `worker` names the process), the
/// oldest run's first; `None` when there is none.
pub async fn claim_next(
    conn: &mut PgConnection,
    worker: &str,
) -> Result<Option<ShardRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE billing_run_shards s SET status = 'running', attempt = s.attempt + 1, \
         heartbeat_at = now(), worker = $1, records_processed = 0, arrears = '{}' \
         FROM (SELECT q.run_id, q.shard FROM billing_run_shards q \
               JOIN billing_runs r ON r.id = q.run_id AND r.status = 'running' \
               WHERE q.status = 'queued' ORDER BY q.run_id, q.shard LIMIT 1 \
               FOR UPDATE OF q SKIP LOCKED) next \
         WHERE s.run_id = next.run_id AND s.shard = next.shard \
         RETURNING s.run_id, s.shard, s.tenant_from, s.tenant_to, s.attempt",
    )
    .bind(worker)
    .fetch_optional(conn)
    .await
}

/// Inside a transaction that writes for `attempt` of a shard of `attempt` of its run: whether
/// both still hold. Locks both rows against a requeue until the transaction ends (see
/// `runs::holds`).
pub async fn holds(
    conn: &mut PgConnection,
    (run_id, run_attempt): (&RunId, i32),
    (shard, attempt): (i32, i32),
) -> Result<bool, sqlx::Error> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT s.attempt FROM billing_runs r JOIN billing_run_shards s ON s.run_id = r.id \
         WHERE r.id = $1 AND r.attempt = $2 AND r.status = 'running' \
         AND s.shard = $3 AND s.attempt = $4 AND s.status = 'running' \
         FOR KEY SHARE OF r, s",
    )
    .bind(run_id)
    .bind(run_attempt)
    .bind(shard)
    .bind(attempt)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}

/// The shard's progress and heartbeat, and its run's: the run's count is the sum over its
/// shards, its rate that sum over the time since it was claimed.
pub async fn progress(
    conn: &mut PgConnection,
    s: &ShardRow,
    records: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH mine AS (UPDATE billing_run_shards SET records_processed = $4, heartbeat_at = now() \
           WHERE run_id = $1 AND shard = $2 AND attempt = $3 AND status = 'running' \
           RETURNING run_id), \
         total AS (SELECT coalesce(sum(CASE WHEN shard = $2 THEN $4 ELSE records_processed END), 0) AS n \
           FROM billing_run_shards WHERE run_id = $1) \
         UPDATE billing_runs r SET heartbeat_at = now(), records_processed = total.n, \
           records_per_second = total.n / greatest(extract(epoch FROM now() - r.started_at), 0.001) \
         FROM total, mine WHERE r.id = mine.run_id AND r.status = 'running'",
    )
    .bind(&s.run_id)
    .bind(s.shard)
    .bind(s.attempt)
    .bind(records)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the shard done with what it folded; how many of the run's shards are not done yet
/// (0: this one was the last, its worker completes the run). `None` when the attempt no
/// longer holds the shard or its run. Locks the run row, so of two shards finishing together
/// exactly one sees the other done.
pub async fn finish(
    conn: &mut PgConnection,
    s: &ShardRow,
    run_attempt: i32,
    records: i64,
    arrears: &[String],
) -> Result<Option<i64>, sqlx::Error> {
    let run: Option<RunId> = sqlx::query_scalar(
        "SELECT id FROM billing_runs WHERE id = $1 AND attempt = $2 AND status = 'running' \
         FOR UPDATE",
    )
    .bind(&s.run_id)
    .bind(run_attempt)
    .fetch_optional(&mut *conn)
    .await?;
    if run.is_none() {
        return Ok(None);
    }
    let done = sqlx::query(
        "UPDATE billing_run_shards SET status = 'done', records_processed = $4, arrears = $5, \
         heartbeat_at = NULL WHERE run_id = $1 AND shard = $2 AND attempt = $3 AND status = 'running'",
    )
    .bind(&s.run_id)
    .bind(s.shard)
    .bind(s.attempt)
    .bind(records)
    .bind(arrears)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let left = sqlx::query_scalar(
        "SELECT count(*) FROM billing_run_shards WHERE run_id = $1 AND status <> 'done'",
    )
    .bind(&s.run_id)
    .fetch_one(conn)
    .await?;
    Ok(Some(left))
}

/// What the run's shards folded: records, and the arrears periods whose usage they read.
pub async fn folded(
    conn: &mut PgConnection,
    run_id: &RunId,
) -> Result<(i64, Vec<String>), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(records_processed), 0)::bigint FROM billing_run_shards \
                 WHERE run_id = $1), \
                (SELECT coalesce(array_agg(a), '{}') FROM billing_run_shards, unnest(arrears) a \
                 WHERE run_id = $1)",
    )
    .bind(run_id)
    .fetch_one(conn)
    .await
}

/// The key an arrears period is recorded under in `arrears`.
pub fn arrears_key(tenant: &str, period_start: DateTime<Utc>) -> String {
    format!("{tenant} {}", period_start.to_rfc3339())
}

/// Shards of running runs whose heartbeat is older than `lease` (their worker died or
/// stalled) go back to the queue, their partial summaries deleted; a shard one of whose
/// writes is open is skipped (its worker lives). Which were requeued.
pub async fn requeue_abandoned(
    conn: &mut PgConnection,
    lease: std::time::Duration,
) -> Result<Vec<(RunId, i32)>, sqlx::Error> {
    let requeued: Vec<(RunId, i32, Option<String>, Option<String>)> = sqlx::query_as(
        "UPDATE billing_run_shards s SET status = 'queued', heartbeat_at = NULL, \
         records_processed = 0, arrears = '{}' \
         FROM (SELECT q.run_id, q.shard FROM billing_run_shards q \
               JOIN billing_runs r ON r.id = q.run_id AND r.status = 'running' \
               WHERE q.status = 'running' AND q.heartbeat_at < now() - $1 * INTERVAL '1 second' \
               FOR UPDATE OF q SKIP LOCKED) dead \
         WHERE s.run_id = dead.run_id AND s.shard = dead.shard \
         RETURNING s.run_id, s.shard, s.tenant_from, s.tenant_to",
    )
    .bind(lease.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    // Their runs live on in the replica that requeued them: their leases run on from now,
    // rather than lapse with the dead shard's and send the whole run back to the start.
    let runs: Vec<&RunId> = requeued.iter().map(|(r, _, _, _)| r).collect();
    sqlx::query(
        "UPDATE billing_runs SET heartbeat_at = now() WHERE id = ANY($1) AND status = 'running'",
    )
    .bind(&runs)
    .execute(&mut *conn)
    .await?;
    for (run_id, _, from, to) in &requeued {
        for table in ["user_usage_summaries", "tenant_summaries"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE run_id = $1 \
                 AND ($2::text IS NULL OR tenant_id >= $2 COLLATE \"C\") \
                 AND ($3::text IS NULL OR tenant_id < $3 COLLATE \"C\")"
            )))
            .bind(run_id)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(requeued.into_iter().map(|(r, s, _, _)| (r, s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_tenant_once_in_order() {
        let tenants = ["a", "b", "c", "d", "e", "f", "g"];
        for n in 0..10 {
            let ranges = cut(&tenants, n);
            assert_eq!(ranges.len(), n.clamp(1, tenants.len()));
            assert_eq!(ranges.first().unwrap().0, None);
            assert_eq!(ranges.last().unwrap().1, None);
            for t in tenants {
                let holding = ranges
                    .iter()
                    .enumerate()
                    .filter(|(i, (f, to))| {
                        ShardRow {
                            run_id: RunId::generate(),
                            shard: *i as i32,
                            tenant_from: f.clone(),
                            tenant_to: to.clone(),
                            attempt: 1,
                        }
                        .covers(t)
                    })
                    .count();
                assert_eq!(holding, 1, "{t} in {n} ranges: {ranges:?}");
            }
        }
        assert_eq!(cut(&[], 4), vec![(None, None)]);
    }
}
