//! The run pipeline against real Postgres: totals written through bounded workers in
//! canonical lock order equal a plain recomputation; a run past its deadline stops.

use std::sync::Arc;
use std::time::Duration;

use billing_service::domain::aggregate::{Total, fold};
use billing_service::pipeline::{self, MemorySink, SummarySink};
use billing_service::store::summaries;
use concurrency::{Limiter, LimiterConfig, ThroughputTracker, batch_channel, with_deadline};
use test_support::TestDb;

fn tenant(t: &str) -> ids::TenantId {
    ids::TenantId::parse(t).unwrap()
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
    let run = ids::RunId::generate();
    let sink = Arc::new(SummarySink {
        pool: pool.clone(),
        run_id: run.clone(),
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
