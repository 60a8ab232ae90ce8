//! Billing's read of usage: `COPY … TO STDOUT (FORMAT binary)` (read by `copy_binary`), and,
//! when Postgres reckons its best plan costs about as much as reading the whole table, the
//! table split into block ranges that parallel `COPY`s read from one shared snapshot.
//!
//! Why parts: one `COPY` is one Postgres backend on one core, and emitting the rows alone
//! costs it more than its whole parallel `GROUP BY` of the same rows (BENCHMARKS.md). Block
//! ranges (`ctid` bounds: a TID range scan, Postgres 14+) split the scan with no per-row
//! test, and the exported snapshot makes the parts one consistent read, as one statement is.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use sqlx::{Connection, PgConnection, PgPool};

use super::copy_binary::{CopyError, CopyRows, not_null, numeric, timestamp};
use super::usage::{Out, Select, StreamBatch, StreamQuery};
use crate::domain::usage::Columns;
use crate::error::SubError;

/// Tables smaller than this many blocks (8 KiB each) are read in one part: a part's
/// connection and snapshot import cost more than a few MiB of scan.
const MIN_SPLIT_BLOCKS: i64 = 1024;

impl StreamBatch for Columns {
    async fn read(pool: &PgPool, q: &StreamQuery, out: &Out<Self>) -> Result<(), SubError> {
        // Connections of the read's own, detached from the pool: one left in the middle of a
        // `COPY` is closed with its transaction rather than handed back to be drained.
        let mut first = pool.acquire().await?.detach();
        let (mut filter, ranges) = plan(&mut first, &q.select, q.parts).await?;
        let mut conns = vec![first];
        if ranges.len() > 1 {
            let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
                .fetch_one(&mut conns[0])
                .await?;
            if !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(SubError::Corrupt(format!("snapshot id {snapshot:?}")));
            }
            for _ in 1..ranges.len() {
                let mut conn = pool.acquire().await?.detach();
                begin(&mut conn).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET TRANSACTION SNAPSHOT '{snapshot}'"
                )))
                .execute(&mut conn)
                .await?;
                conns.push(conn);
            }
        }
        let wanted = Arc::new(filter.wanted.take());
        let mut parts = tokio::task::JoinSet::new();
        for (conn, range) in conns.into_iter().zip(&ranges) {
            let statement = format!("COPY ({}) TO STDOUT (FORMAT binary)", filter.select(range));
            parts.spawn(read_part(
                conn,
                statement,
                wanted.clone(),
                q.size,
                out.clone(),
            ));
        }
        // The first part to fail ends the read; dropping the set aborts the others.
        while let Some(part) = parts.join_next().await {
            part.map_err(|e| SubError::Corrupt(format!("a usage read part failed: {e}")))??;
        }
        Ok(())
    }
}

/// How many parallel scans a read of `select` in up to `parts` would use.
pub async fn parts(pool: &PgPool, select: &Select, parts: usize) -> Result<usize, SubError> {
    let mut conn = pool.acquire().await?;
    let planned = plan(&mut conn, select, parts).await.map(|(_, r)| r.len());
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    planned
}

/// Opens the read's transaction on `conn` (its snapshot is the read's) and plans the read.
async fn plan(
    conn: &mut PgConnection,
    select: &Select,
    parts: usize,
) -> Result<(Filter, Vec<String>), SubError> {
    begin(conn).await?;
    let filter = Filter::new(select, conn).await?;
    let ranges = filter.ranges(conn, parts).await?;
    Ok((filter, ranges))
}

async fn begin(conn: &mut PgConnection) -> Result<(), SubError> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(conn)
        .await?;
    Ok(())
}

/// Reads one `COPY` into batches of `size` records.
async fn read_part(
    mut conn: PgConnection,
    statement: String,
    wanted: Arc<Option<Wanted>>,
    size: usize,
    out: Out<Columns>,
) -> Result<(), SubError> {
    let mut copy = conn.copy_out_raw(&statement).await?;
    let mut rows = CopyRows::<5>::default();
    let mut batch = Columns::default();
    let mut full = Vec::new();
    while let Some(chunk) = copy.try_next().await? {
        rows.feed::<SubError>(&chunk, |[tenant, user, metric, quantity, start]| {
            let t = not_null(tenant)?;
            if let Some(w) = wanted.as_ref()
                && !w.has(t, timestamp(start)?)
            {
                return Ok(());
            }
            let (u, m) = (not_null(user)?, not_null(metric)?);
            batch
                .push_utf8(t, u, m, numeric(quantity)?)
                .map_err(|_| CopyError("text that is not UTF-8".into()))?;
            if batch.len() == size {
                full.push(std::mem::take(&mut batch));
            }
            Ok(())
        })?;
        for b in full.drain(..) {
            if out.send(Ok(b)).await.is_err() {
                // The reader left: dropping the connection closes it mid-`COPY`.
                return Ok(());
            }
        }
    }
    drop(copy);
    if !rows.finished() {
        return Err(SubError::Corrupt("COPY output ended early".into()));
    }
    if !batch.is_empty() {
        let _ = out.send(Ok(batch)).await;
    }
    let _ = conn.close().await;
    Ok(())
}

/// The read's `WHERE` clause, and what it lets through that was not asked for.
struct Filter {
    /// The condition, its values written in as literals by Postgres itself (`format('%L')` of
    /// bound values: nothing from a request is spliced in by us). `COPY` takes no bind
    /// parameters, and constant arrays are what the planner hashes: `tenant_id = ANY (…)` is
    /// one probe per row, not a scan of the list.
    sql: String,
    /// `period_start`, when [`Wanted`] needs it; else a NULL, which costs Postgres nothing.
    period: &'static str,
    wanted: Option<Wanted>,
}

impl Filter {
    /// By period, the condition is the tenants asked for × the starts asked for: a hash join
    /// on the exact pairs costs Postgres twice as much per row as the rest of the scan. When
    /// that product is more than the pairs (tenants with different starts), [`Wanted`] drops
    /// the rows of pairs not asked for.
    async fn new(select: &Select, conn: &mut PgConnection) -> Result<Filter, SubError> {
        const TENANTS: &str = "tenant_id = ANY (%L::text[])";
        const NO_PERIOD: &str = "NULL::timestamptz";
        match select {
            Select::Window { tenants, from, to } => {
                let sql = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT format('{TENANTS} AND ts >= %L::timestamptz AND ts < %L::timestamptz', \
                     $1::text[], $2::timestamptz, $3::timestamptz)"
                )))
                .bind(tenants)
                .bind(from)
                .bind(to)
                .fetch_one(conn)
                .await?;
                Ok(Filter {
                    sql,
                    period: NO_PERIOD,
                    wanted: None,
                })
            }
            Select::Periods(pairs) => {
                let wanted = Wanted::new(pairs);
                let mut tenants: Vec<&str> = pairs.iter().map(|(t, _)| t.as_str()).collect();
                let mut starts: Vec<i64> = wanted.0.values().flatten().copied().collect();
                tenants.sort_unstable();
                tenants.dedup();
                starts.sort_unstable();
                starts.dedup();
                let exact = wanted.pairs() == tenants.len() * starts.len();
                let starts: Vec<_> = starts.into_iter().map(from_pg_micros).collect();
                let sql = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT format('{TENANTS} AND period_start = ANY (%L::timestamptz[])', \
                     $1::text[], $2::timestamptz[])"
                )))
                .bind(tenants)
                .bind(starts)
                .fetch_one(conn)
                .await?;
                Ok(Filter {
                    sql,
                    period: if exact { NO_PERIOD } else { "period_start" },
                    wanted: (!exact).then_some(wanted),
                })
            }
        }
    }

    /// The query of one part: `range` is a `ctid` bound, or empty.
    fn select(&self, range: &str) -> String {
        format!(
            "SELECT tenant_id, user_id, metric, quantity, {} FROM usage_records WHERE {}{range}",
            self.period, self.sql
        )
    }

    /// How the read splits: block ranges of the table for up to `parts` parallel scans when
    /// the table is big enough and Postgres reckons its best plan costs at least half of
    /// reading the whole table (the rows asked for are spread over most of it, so an index
    /// saves little); else one part, unbounded, on Postgres' own plan.
    async fn ranges(&self, conn: &mut PgConnection, parts: usize) -> Result<Vec<String>, SubError> {
        let whole = || vec![String::new()];
        if parts < 2 {
            return Ok(whole());
        }
        let blocks: i64 = sqlx::query_scalar(
            "SELECT pg_relation_size('usage_records') / current_setting('block_size')::bigint",
        )
        .fetch_one(&mut *conn)
        .await?;
        if blocks < MIN_SPLIT_BLOCKS {
            return Ok(whole());
        }
        let (best, node) = self.plan(conn).await?;
        if node == "Seq Scan" {
            return Ok(block_ranges(blocks, parts));
        }
        // The whole table's cost: the same query with index plans off, for this estimate only.
        sqlx::raw_sql(
            "SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off; \
             SET LOCAL enable_bitmapscan = off",
        )
        .execute(&mut *conn)
        .await?;
        let (scan, _) = self.plan(conn).await?;
        sqlx::raw_sql(
            "RESET enable_indexscan; RESET enable_indexonlyscan; RESET enable_bitmapscan",
        )
        .execute(&mut *conn)
        .await?;
        if best < scan / 2.0 {
            return Ok(whole());
        }
        Ok(block_ranges(blocks, parts))
    }

    /// Postgres' plan of the unsplit query: its estimated total cost and its top node.
    async fn plan(&self, conn: &mut PgConnection) -> Result<(f64, String), SubError> {
        let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (FORMAT JSON) {}",
            self.select("")
        )))
        .fetch_one(conn)
        .await?;
        let top = &plan[0]["Plan"];
        let cost = top["Total Cost"]
            .as_f64()
            .ok_or_else(|| SubError::Corrupt(format!("a plan without a cost: {plan}")))?;
        Ok((
            cost,
            top["Node Type"].as_str().unwrap_or_default().to_string(),
        ))
    }
}

/// `parts` `ctid` bounds covering blocks `0..blocks` about evenly; the last one is open, so
/// blocks added since the size was read are read too (rows the snapshot sees are older).
fn block_ranges(blocks: i64, parts: usize) -> Vec<String> {
    let k = parts as i64;
    (0..k)
        .map(|i| {
            let (from, to) = (blocks * i / k, blocks * (i + 1) / k);
            let lower = if i == 0 {
                String::new()
            } else {
                format!(" AND ctid >= '({from},0)'::tid")
            };
            let upper = if i == k - 1 {
                String::new()
            } else {
                format!(" AND ctid < '({to},0)'::tid")
            };
            lower + &upper
        })
        .collect()
}

/// The (tenant, period start) pairs a read by period asked for, to drop the other rows the
/// `COPY` filter lets through. Starts in Postgres' binary form (microseconds since 2000),
/// truncated as sqlx truncates them when it binds them.
#[derive(Debug)]
struct Wanted(HashMap<Box<[u8]>, Vec<i64>, foldhash::fast::RandomState>);

impl Wanted {
    fn new(pairs: &[(ids::TenantId, chrono::DateTime<chrono::Utc>)]) -> Wanted {
        let mut map: HashMap<Box<[u8]>, Vec<i64>, _> = HashMap::default();
        for (tenant, start) in pairs {
            map.entry(tenant.as_str().as_bytes().into())
                .or_default()
                .push(pg_micros(*start));
        }
        for starts in map.values_mut() {
            starts.sort_unstable();
            starts.dedup();
        }
        Wanted(map)
    }

    /// Distinct pairs.
    fn pairs(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    fn has(&self, tenant: &[u8], start: i64) -> bool {
        self.0.get(tenant).is_some_and(|s| s.contains(&start))
    }
}

const PG_EPOCH_SECS: i64 = 946_684_800;

/// Microseconds since 2000-01-01 UTC, as Postgres stores a `timestamptz`.
fn pg_micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    (t.timestamp() - PG_EPOCH_SECS) * 1_000_000 + i64::from(t.timestamp_subsec_micros())
}

fn from_pg_micros(micros: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(micros + PG_EPOCH_SECS * 1_000_000)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ranges_cover_the_table_once() {
        assert_eq!(
            block_ranges(10, 3),
            [
                " AND ctid < '(3,0)'::tid",
                " AND ctid >= '(3,0)'::tid AND ctid < '(6,0)'::tid",
                " AND ctid >= '(6,0)'::tid",
            ]
        );
        assert_eq!(block_ranges(10, 1), [""]);
    }

    #[test]
    fn postgres_micros_round_trip() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00.123456Z")
            .unwrap()
            .to_utc();
        assert_eq!(from_pg_micros(pg_micros(t)), t);
        assert_eq!(
            pg_micros(chrono::DateTime::from_timestamp(PG_EPOCH_SECS, 0).unwrap()),
            0
        );
    }
}
