//! What the notification tests share: a database, endpoints and messages in it, a receiver
//! that records arrivals and answers as told, and senders.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use ids::TenantId;
use notification_service::domain::signing::Secret;
use notification_service::events::{Telling, tell};
use notification_service::settings::Settings;
use notification_service::store::endpoints::{self, EndpointRow, NewEndpoint};
use sqlx::PgPool;
use test_support::TestDb;
use tokio::sync::{Mutex, Notify};

/// A request's `webhook-id` and when it arrived.
pub type Arrival = (String, DateTime<Utc>);

/// A receiver answering `status` (0: hold every request until released, then 200).
#[derive(Clone, Default)]
pub struct Receiver {
    pub arrivals: Arc<Mutex<Vec<Arrival>>>,
    pub status: Arc<AtomicU16>,
    /// Sent as `Retry-After` (seconds) when not 0.
    pub retry_after: Arc<AtomicU16>,
    pub release: Arc<Notify>,
}

pub async fn receiver(status: u16) -> (Receiver, String) {
    let r = Receiver::default();
    r.status.store(status, Ordering::SeqCst);
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let s = state.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                s.arrivals.lock().await.push((id, Utc::now()));
                let mut status = s.status.load(Ordering::SeqCst);
                if status == 0 {
                    s.release.notified().await;
                    status = 200;
                }
                let after = s.retry_after.load(Ordering::SeqCst);
                let mut headers = HeaderMap::new();
                if after > 0 {
                    headers.insert("retry-after", after.into());
                }
                (StatusCode::from_u16(status).unwrap(), headers)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

/// A fresh, migrated database.
pub async fn db() -> (TestDb, PgPool) {
    test_support::init_logging();
    let db = TestDb::new().await;
    let pool = platform::db::connect_and_migrate(
        &db.url,
        platform::db::PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        },
        &notification_service::MIGRATOR,
    )
    .await
    .unwrap();
    (db, pool)
}

/// An endpoint of `tenant` at `url`, taking every event.
pub async fn endpoint(pool: &PgPool, tenant: &TenantId, url: &str) -> EndpointRow {
    let mut conn = pool.acquire().await.unwrap();
    endpoints::insert(
        &mut conn,
        &NewEndpoint {
            tenant,
            url,
            description: "",
            event_types: &[],
            secret: &Secret::generate().expose(),
        },
    )
    .await
    .unwrap()
}

/// Tells `tenant` of `n` events `evt-<tag>-<i>`, one transaction each, as the consumer does.
pub async fn tell_n(pool: &PgPool, tenant: &TenantId, tag: &str, n: usize) {
    for i in 0..n {
        let mut tx = pool.begin().await.unwrap();
        let data = serde_json::json!({"tenant_id": tenant, "n": i});
        let told = tell(
            &mut tx,
            Telling {
                tenant,
                event_id: &format!("evt-{tag}-{i}"),
                event_type: "payment.refunded",
                time: Utc::now(),
                data: &data,
                vars: Default::default(),
                also_email: None,
                attachment: None,
            },
        )
        .await
        .unwrap();
        assert!(told);
        tx.commit().await.unwrap();
    }
}

/// A database with one endpoint at `url` and `messages` messages to it.
pub async fn setup(url: &str, messages: usize) -> (TestDb, PgPool, TenantId) {
    let (db, pool) = db().await;
    let tenant = TenantId::parse("ten_reliable").unwrap();
    endpoint(&pool, &tenant, url).await;
    tell_n(&pool, &tenant, "a", messages).await;
    (db, pool, tenant)
}

pub fn sender(pool: &PgPool, vars: &[(&str, &str)]) -> notification_service::sender::Sender {
    let settings = Settings::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
            .or_else(|| (k == "WEBHOOK_ALLOW_PRIVATE").then(|| "true".into()))
    })
    .unwrap();
    let nowhere =
        platform::grpc::lazy_channel("http://127.0.0.1:9", Duration::from_secs(1)).unwrap();
    notification_service::sender(
        pool.clone(),
        Arc::new(settings),
        nowhere,
        Arc::new(Notify::new()),
    )
    .unwrap()
}

/// (delivered deliveries, attempts with a 2xx) once every delivery is delivered (bounded).
pub async fn all_delivered(pool: &PgPool, n: i64) -> HashMap<String, i64> {
    all_delivered_within(pool, n, Duration::from_secs(20)).await
}

/// [`all_delivered`] waiting up to `limit`.
pub async fn all_delivered_within(pool: &PgPool, n: i64, limit: Duration) -> HashMap<String, i64> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let delivered: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
                .fetch_one(pool)
                .await
                .unwrap();
        if delivered == n {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT d.message_id, count(a.*) FILTER (WHERE a.response_code BETWEEN 200 AND 299) \
                 FROM deliveries d LEFT JOIN delivery_attempts a ON a.delivery_id = d.id \
                 GROUP BY d.message_id",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            return rows.into_iter().collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states: Vec<(String, i64, Option<String>, i32)> = sqlx::query_as(
        "SELECT status, count(*), max(last_error), max(attempts) FROM deliveries GROUP BY status",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    panic!("not every delivery was delivered within {limit:?}: {states:?}");
}
