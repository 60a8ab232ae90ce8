//! The ConcurFlow regression suite (`../shared/reference/original-go-design.md`, case study),
//! against real Postgres.
//!
//! An import of usage rows for tenant "ConcurFlow" is applied by concurrent billing workers,
//! each batch one transaction that updates the tenant summary row and the user rows:
//! - with the lock order shuffled (the bug), Postgres detects deadlocks (SQLSTATE 40P01) — the
//!   suite asserts it sees them, so it can tell;
//! - with `canonical_lock_keys` order, the same workload has zero deadlocks and its totals equal
//!   an independent recomputation;
//! - with unbounded concurrency a small pool starves (acquire timeouts); through the
//!   `Limiter` it does not.
//!
//! Size: `CONCURFLOW_ROWS` (default 20,000; set 1000000 for the case study's full import).

use std::collections::BTreeMap;

use ids::{RunId, TenantId};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use billing_service::domain::aggregate::{Total, Usage, fold};
use billing_service::store::is_deadlock;
use billing_service::store::summaries::{self, LockOrder};
use concurrency::{Limiter, LimiterConfig};
use rust_decimal::Decimal;
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;
use test_support::TestDb;

const TENANT: &str = "ConcurFlow";
const BATCH: usize = 200;

fn rows() -> Vec<Usage> {
    let n: usize = std::env::var("CONCURFLOW_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    (0..n)
        .map(|i| Usage {
            tenant_id: TENANT.into(),
            user_id: format!("user-{:03}", (i * 7919) % 40),
            metric: if i % 3 == 0 { "expenses" } else { "api_calls" }.into(),
            quantity: Decimal::new((i % 997) as i64 + 1, 2),
        })
        .collect()
}

async fn schema() -> (TestDb, sqlx::PgPool) {
    let db = TestDb::new().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        // Detect deadlocks in milliseconds rather than the default second.
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET deadlock_timeout = '10ms'").await?;
                Ok(())
            })
        })
        .connect(&db.url)
        .await
        .unwrap();
    billing_service::MIGRATOR.run(&pool).await.unwrap();
    (db, pool)
}

/// Applies every batch with 8 concurrent workers and counts the deadlocks. A batch chosen as
/// a deadlock victim is rolled back and counted, not retried: with the shuffled order a retry
/// deadlocks again as often as not, and the suite only needs to see them.
async fn import(
    pool: &sqlx::PgPool,
    run_id: &RunId,
    rows: &[Usage],
    order: impl Fn(usize) -> LockOrder,
) -> u64 {
    let limiter = Limiter::new(LimiterConfig {
        max_workers: 8,
        max_db_jobs: 8,
    })
    .unwrap();
    let deadlocks = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for (b, chunk) in rows.chunks(BATCH).enumerate() {
        let deltas = fold(chunk);
        let (pool, run_id, deadlocks, order, l) = (
            pool.clone(),
            run_id.clone(),
            deadlocks.clone(),
            order(b),
            limiter.clone(),
        );
        handles.push(
            limiter
                .spawn(async move {
                    let res = l
                        .run(async {
                            let mut tx = pool.begin().await?;
                            for d in &deltas {
                                summaries::apply(&mut tx, target(&run_id), d, order).await?;
                            }
                            tx.commit().await
                        })
                        .await;
                    match res {
                        Ok(()) => {}
                        Err(e) if is_deadlock(&e) => {
                            deadlocks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("batch {b}: {e}"),
                    }
                })
                .await,
        );
    }
    for h in handles {
        h.await.expect("worker");
    }
    deadlocks.load(Ordering::Relaxed)
}

/// The totals recomputed from all rows at once, independently of batching and the database.
fn expected(rows: &[Usage]) -> (BTreeMap<(String, String), Total>, Total) {
    let mut users = BTreeMap::new();
    let mut tenant = Total::default();
    for r in rows {
        let t: &mut Total = users
            .entry((r.user_id.clone(), r.metric.clone()))
            .or_default();
        let one = Total {
            records: 1,
            quantity: r.quantity,
        };
        t.add(one);
        tenant.add(one);
    }
    (users, tenant)
}

async fn assert_totals(pool: &sqlx::PgPool, run_id: &RunId, rows: &[Usage]) {
    let (want_users, want_tenant) = expected(rows);
    let mut conn = pool.acquire().await.unwrap();
    let (users, tenant) = summaries::read(&mut conn, run_id, &TenantId::parse(TENANT).unwrap())
        .await
        .unwrap();
    let got: BTreeMap<(String, String), Total> = users
        .into_iter()
        .map(|(u, m, records, quantity)| ((u, m), Total { records, quantity }))
        .collect();
    assert_eq!(got, want_users, "user rows differ from the recomputation");
    let (records, quantity) = tenant.expect("tenant row");
    assert_eq!(
        Total { records, quantity },
        want_tenant,
        "tenant row differs from the recomputation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_lock_order_deadlocks_and_canonical_order_does_not() {
    let (db, pool) = schema().await;
    let rows = rows();

    // The bug: every worker locks the same rows in its own order. Postgres must report
    // deadlocks (the suite proves it can see them). The first 40 batches are plenty.
    let sample = &rows[..rows.len().min(40 * BATCH)];
    let mut deadlocks = 0;
    for pass in 0..5u64 {
        let run = RunId::generate();
        deadlocks += import(&pool, &run, sample, |b| {
            LockOrder::Shuffled(pass * 1_000_003 + b as u64)
        })
        .await;
        if deadlocks > 0 {
            break;
        }
    }
    assert!(
        deadlocks > 0,
        "shuffled lock order produced no deadlock: the suite cannot detect them"
    );

    // The fix: canonical order. Same workload, zero deadlocks, exact totals.
    let run = RunId::generate();
    let canonical = import(&pool, &run, &rows, |_| LockOrder::Canonical).await;
    assert_eq!(canonical, 0, "canonical lock order deadlocked");
    assert_totals(&pool, &run, &rows).await;
    eprintln!(
        "ConcurFlow: {} rows; shuffled order: {deadlocks} deadlocks; canonical: 0",
        rows.len()
    );

    pool.close().await;
    db.drop_db().await;
}

/// 64 concurrent transactions each holding a connection ~50 ms, on a pool of 4 that gives up
/// waiting after 300 ms; returns (succeeded, acquire timeouts).
async fn burst(pool: &sqlx::PgPool, limiter: Option<Limiter>) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let timeouts = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let run = RunId::generate();
    for i in 0..64 {
        let (pool, ok, timeouts, limiter) =
            (pool.clone(), ok.clone(), timeouts.clone(), limiter.clone());
        let burst = run.clone();
        handles.push(tokio::spawn(async move {
            let delta = &fold(&[Usage {
                tenant_id: format!("tenant-{i}"),
                user_id: "u".into(),
                metric: "api_calls".into(),
                quantity: Decimal::ONE,
            }])[0];
            let work = async {
                let mut tx = pool.begin().await?;
                summaries::apply(&mut tx, target(&burst), delta, LockOrder::Canonical).await?;
                sqlx::query("SELECT pg_sleep(0.05)")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            };
            let res = match &limiter {
                Some(l) => l.run(work).await,
                None => work.await,
            };
            match res {
                Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                Err(sqlx::Error::PoolTimedOut) => timeouts.fetch_add(1, Ordering::Relaxed),
                Err(e) => panic!("{e}"),
            };
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), timeouts.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_concurrency_starves_the_pool_and_the_limiter_does_not() {
    let (db, _) = schema().await;
    let small = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(300))
        .connect(&db.url)
        .await
        .unwrap();
    let (_, starved) = burst(&small, None).await;
    assert!(
        starved > 0,
        "64 unbounded transactions on 4 connections never timed out"
    );

    let limiter = Limiter::new(LimiterConfig {
        max_workers: 64,
        max_db_jobs: 4,
    })
    .unwrap();
    let (ok, timeouts) = burst(&small, Some(limiter)).await;
    assert_eq!((ok, timeouts), (64, 0), "the Limiter let the pool starve");
    eprintln!("pool of 4: unbounded → {starved} acquire timeouts; Limiter(max_db_jobs=4) → 0");
    small.close().await;
    db.drop_db().await;
}

/// Summary rows of `run` for one period.
fn target(run_id: &ids::RunId) -> summaries::Target<'_> {
    summaries::Target {
        run_id,
        period_start: chrono::DateTime::UNIX_EPOCH,
    }
}
