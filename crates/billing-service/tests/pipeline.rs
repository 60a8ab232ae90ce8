//! The run pipeline against real Postgres: totals written through bounded workers in
//! canonical lock order equal a plain recomputation; a run past its deadline stops; an
//! attempt that lost its lease writes nothing.

use std::sync::Arc;
use std::time::Duration;

use billing_service::domain::RunStatus;
use billing_service::domain::aggregate::{Total, fold};
use billing_service::pipeline::{self, MemorySink, PipelineError, Sink, SummarySink};
use billing_service::store::{runs, summaries};
use concurrency::{Limiter, LimiterConfig, ThroughputTracker, batch_channel, with_deadline};
use test_support::TestDb;

fn tenant(t: &str) -> ids::TenantId {
    ids::TenantId::parse(t).unwrap()
}

/// A run claimed by its first attempt.
async fn claimed_run(pool: &sqlx::PgPool) -> runs::RunRow {
    let id = ids::RunId::generate();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(
        "INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, tenant_key, status, \
         deadline_seconds) VALUES ($1, now(), now(), '{}', $1, 'queued', 600)",
    )
    .bind(&id)
    .execute(&mut *conn)
    .await
    .unwrap();
    runs::claim(&mut conn, &id).await.unwrap().unwrap()
}

fn limiter() -> Limiter {
    Limiter::new(LimiterConfig {
        max_workers: 4,
        max_db_jobs: 4,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_written_by_the_pipeline_equal_a_recomputation() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    billing_service::MIGRATOR.run(&pool).await.unwrap();
    let records: Vec<_> = pipeline::synthetic(50_000, 10).collect();
    let expected = fold(&records);

    let (mut tx, rx) = batch_channel(8, 1000);
    let producer = tokio::spawn(async move {
        for r in records {
            tx.push(r).await.unwrap();
        }
        tx.finish().await.unwrap();
    });
    let claimed = claimed_run(&pool).await;
    let run = claimed.id.clone();
    let sink = Arc::new(SummarySink {
        pool: pool.clone(),
        run_id: run.clone(),
        attempt: claimed.attempt,
        shard: None,
        periods: Arc::new(
            expected
                .iter()
                .map(|d| (d.tenant_id.clone(), chrono::DateTime::UNIX_EPOCH))
                .collect(),
        ),
    });
    let progress = Arc::new(ThroughputTracker::new());
    let n = pipeline::run(rx.into_inner(), &limiter(), sink, progress.clone())
        .await
        .unwrap();
    producer.await.unwrap();
    assert_eq!(n, 50_000);
    assert_eq!(progress.total(), 50_000);

    let mut conn = pool.acquire().await.unwrap();
    for want in &expected {
        let (users, tenant) = summaries::read(&mut conn, &run, &tenant(&want.tenant_id))
            .await
            .unwrap();
        let got: Vec<((String, String), Total)> = users
            .into_iter()
            .map(|(u, m, records, quantity)| ((u, m), Total { records, quantity }))
            .collect();
        let want_users: Vec<_> = want.users.clone().into_iter().collect();
        assert_eq!(got, want_users, "tenant {}", want.tenant_id);
        let (records, quantity) = tenant.unwrap();
        assert_eq!(Total { records, quantity }, want.total());
    }
    drop(conn);
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_stops_with_exceeded_deadline() {
    let (mut tx, rx) = batch_channel(2, 100);
    // A producer that never finishes: only the deadline can end the run.
    let producer = tokio::spawn(async move {
        for r in pipeline::synthetic(u64::MAX, 3) {
            if tx.push(r).await.is_err() {
                return;
            }
        }
    });
    let progress = Arc::new(ThroughputTracker::new());
    let limit = Duration::from_millis(200);
    let lim = limiter();
    let out = with_deadline(
        limit,
        pipeline::run(
            rx.into_inner(),
            &lim,
            Arc::new(MemorySink::default()),
            progress.clone(),
        ),
    )
    .await;
    assert_eq!(out.unwrap_err().limit, limit);
    assert!(
        progress.total() > 0,
        "the run made progress before the deadline"
    );
    // The dropped run released its receiver: the producer stops.
    tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .expect("producer stops once the run is gone")
        .unwrap();
    // The run's workers were aborted with it: their permits come back.
    for _ in 0..100 {
        if lim.in_flight_workers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lim.in_flight_workers(), 0, "a worker permit leaked");
}

async fn summary_rows(pool: &sqlx::PgPool, run: &ids::RunId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tenant_summaries WHERE run_id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_lost_its_lease_writes_nothing_and_cannot_finish() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    billing_service::MIGRATOR.run(&pool).await.unwrap();
    let lease = Duration::from_secs(15);
    let first = claimed_run(&pool).await;
    let id = first.id.clone();
    let records: Vec<_> = pipeline::synthetic(1_000, 3).collect();
    let deltas = fold(&records);
    let sink = |attempt| SummarySink {
        pool: pool.clone(),
        run_id: id.clone(),
        attempt,
        shard: None,
        periods: Arc::new(
            deltas
                .iter()
                .map(|d| (d.tenant_id.clone(), chrono::DateTime::UNIX_EPOCH))
                .collect(),
        ),
    };
    let stalled = sink(first.attempt);
    stalled.write(deltas.clone()).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        runs::requeue_abandoned(&mut conn, lease)
            .await
            .unwrap()
            .is_empty(),
        "a run with a fresh heartbeat keeps its attempt"
    );

    // The heartbeat falls silent while one of the attempt's writes is open: the requeue
    // skips the run rather than wait for (or cut under) the write.
    sqlx::query("UPDATE billing_runs SET heartbeat_at = now() - interval '1 minute'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut writing = pool.begin().await.unwrap();
    assert!(runs::holds(&mut writing, &id, first.attempt).await.unwrap());
    assert!(
        runs::requeue_abandoned(&mut conn, lease)
            .await
            .unwrap()
            .is_empty()
    );
    writing.commit().await.unwrap();
    assert_eq!(
        runs::requeue_abandoned(&mut conn, lease).await.unwrap(),
        vec![id.clone()]
    );
    assert_eq!(summary_rows(&pool, &id).await, 0, "partial rows dropped");
    let second = runs::claim(&mut conn, &id).await.unwrap().unwrap();
    assert_eq!(second.attempt, first.attempt + 1);

    // The stalled attempt wakes up: its writes and its finish are refused.
    let refused = stalled.write(deltas.clone()).await.unwrap_err();
    assert!(matches!(refused, PipelineError::Superseded), "{refused}");
    let finished = runs::finish(
        &mut conn,
        &id,
        first.attempt,
        RunStatus::Completed,
        (1_000, 1.0),
        "",
    )
    .await
    .unwrap();
    assert!(finished.is_none());
    assert_eq!(summary_rows(&pool, &id).await, 0);

    // The attempt that holds the run writes and finishes.
    sink(second.attempt).write(deltas.clone()).await.unwrap();
    assert_eq!(summary_rows(&pool, &id).await, deltas.len() as i64);
    let done = runs::finish(
        &mut conn,
        &id,
        second.attempt,
        RunStatus::Completed,
        (1_000, 1.0),
        "",
    )
    .await
    .unwrap()
    .expect("the holder finishes");
    assert_eq!(done.status, RunStatus::Completed);
    drop(conn);
    pool.close().await;
    db.drop_db().await;
}
