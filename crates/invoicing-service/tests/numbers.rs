//! Invoice numbers stay gapless and unique under concurrent finalizations, including ones that
//! roll back or whose connection dies between taking a number and committing.

use std::sync::Arc;

use invoicing_service::domain::lifecycle::Kind;
use invoicing_service::store::numbers;
use sqlx::{Connection, Executor};
use test_support::TestDb;

/// How a simulated finalization ends.
#[derive(Clone, Copy)]
enum End {
    Commit,
    Rollback,
    /// The connection is dropped mid-transaction, as when the service is killed.
    Crash,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_finalizations_leave_no_gap_and_no_duplicate() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    invoicing_service::MIGRATOR.run(&pool).await.unwrap();
    // Stands in for the invoices a finalization writes with its number.
    pool.execute("CREATE TABLE finalized (year int, number bigint, PRIMARY KEY (year, number))")
        .await
        .unwrap();
    // Fifty finalizations, twenty connections at a time (the test shares Postgres with
    // others), in two years; every fifth rolls back, every seventh crashes.
    let connections = Arc::new(tokio::sync::Semaphore::new(20));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (url, connections) = (db.url.clone(), connections.clone());
            let end = match i {
                _ if i % 5 == 4 => End::Rollback,
                _ if i % 7 == 6 => End::Crash,
                _ => End::Commit,
            };
            let year = if i % 3 == 0 { 2027 } else { 2026 };
            tokio::spawn(async move {
                let _permit = connections.acquire().await.unwrap();
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                conn.execute("BEGIN").await.unwrap();
                let n = numbers::allocate(&mut conn, Kind::Invoice, year)
                    .await
                    .unwrap();
                sqlx::query("INSERT INTO finalized VALUES ($1, $2)")
                    .bind(year)
                    .bind(n as i64)
                    .execute(&mut conn)
                    .await
                    .unwrap();
                match end {
                    End::Commit => conn.execute("COMMIT").await.map(|_| ()).unwrap(),
                    End::Rollback => conn.execute("ROLLBACK").await.map(|_| ()).unwrap(),
                    End::Crash => drop(conn),
                }
                (year, end)
            })
        })
        .collect();
    let mut committed = std::collections::BTreeMap::<i32, i64>::new();
    for t in tasks {
        let (year, end) = t.await.unwrap();
        if matches!(end, End::Commit) {
            *committed.entry(year).or_default() += 1;
        }
    }
    for (year, count) in committed {
        let numbers: Vec<i64> =
            sqlx::query_scalar("SELECT number FROM finalized WHERE year = $1 ORDER BY number")
                .bind(year)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(numbers, (1..=count).collect::<Vec<_>>(), "year {year}");
    }
    // The next finalization continues each year where the committed ones ended.
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let next = numbers::allocate(&mut tx, Kind::Invoice, 2026)
        .await
        .unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(number) FROM finalized WHERE year = 2026")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(next as i64, last + 1);
    drop(tx);
    drop(conn);
    pool.close().await;
    db.drop_db().await;
}
