//! Migrations that rewrite data, run against rows written before them (real Postgres).

use chrono::{DateTime, Utc};
use test_support::TestDb;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// 0201 gives every stored record the period ingestion counted it in (a record stamped
/// before its subscription began belongs to the first period), and every subscription its
/// current period, closed at cancellation for canceled ones.
#[tokio::test]
async fn periods_are_backfilled_as_ingestion_counted_them() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    sqlx::raw_sql(include_str!(
        "../../../migrations/subscription/0200_subscriptions.sql"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        "INSERT INTO plans (id, version, name, currency, interval, trial_days, fixed_seats, prices, \
           features, archived, created_at) \
         VALUES ('pro', 1, 'Pro', 'EUR', 'month', 0, false, '[]', '[]', false, now()); \
         INSERT INTO subscriptions (id, tenant_id, plan_id, plan_version, status, period_anchor, \
           period_start, period_end, canceled_at) VALUES \
           ('sub_a', 'ten_a', 'pro', 1, 'active', '2026-01-10Z', '2026-03-10Z', '2026-04-10Z', NULL), \
           ('sub_b', 'ten_b', 'pro', 1, 'canceled', '2026-01-10Z', '2026-03-10Z', '2026-04-10Z', '2026-03-20Z'); \
         INSERT INTO usage_period (tenant_id, metric, period_start, user_id, period_end, quantity) VALUES \
           ('ten_a', 'api', '2026-01-10Z', 'u', '2026-02-10Z', 5), \
           ('ten_a', 'api', '2026-02-10Z', '', '2026-03-10Z', 1), \
           ('ten_a', 'api', '2026-03-10Z', '', '2026-04-10Z', 2); \
         INSERT INTO usage_records (tenant_id, id, user_id, metric, quantity, ts) VALUES \
           ('ten_a', 'early', 'u', 'api', 5, '2026-01-09Z'), \
           ('ten_a', 'feb', '', 'api', 1, '2026-02-15Z'), \
           ('ten_a', 'mar', '', 'api', 2, '2026-03-11Z');",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!(
        "../../../migrations/subscription/0201_subscription_periods.sql"
    ))
    .execute(&pool)
    .await
    .unwrap();

    let records: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, period_start FROM usage_records ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        records,
        [
            ("early".to_string(), at("2026-01-10T00:00:00Z")),
            ("feb".to_string(), at("2026-02-10T00:00:00Z")),
            ("mar".to_string(), at("2026-03-10T00:00:00Z")),
        ]
    );
    let periods: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT subscription_id, period_start, ended_at FROM subscription_periods \
         ORDER BY subscription_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        periods,
        [
            ("sub_a".to_string(), at("2026-03-10T00:00:00Z"), None),
            (
                "sub_b".to_string(),
                at("2026-03-10T00:00:00Z"),
                Some(at("2026-03-20T00:00:00Z"))
            ),
        ]
    );
    pool.close().await;
    db.drop_db().await;
}
