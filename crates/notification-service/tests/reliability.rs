//! At least once, recorded once: a sender that dies with attempts in flight (its task dropped
//! mid-request, as a killed process would leave them: leased, unrecorded) leaves them to a
//! later sender once the leases run out, and each delivery ends delivered with one
//! successful attempt on record. A receiver that is down for a while gets everything once it
//! is back, and never earlier than the retry schedule says.

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
use notification_service::store::endpoints::{self, NewEndpoint};
use sqlx::PgPool;
use test_support::TestDb;
use tokio::sync::{Mutex, Notify};

/// A request's `webhook-id` and when it arrived.
type Arrival = (String, DateTime<Utc>);

/// A receiver answering `status` (0: hold every request until released, then 200).
#[derive(Clone, Default)]
struct Receiver {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    status: Arc<AtomicU16>,
    release: Arc<Notify>,
}

async fn receiver(status: u16) -> (Receiver, String) {
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
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

async fn setup(url: &str, messages: usize) -> (TestDb, PgPool, TenantId) {
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
    let tenant = TenantId::parse("ten_reliable").unwrap();
    let mut tx = pool.begin().await.unwrap();
    endpoints::insert(
        &mut tx,
        &NewEndpoint {
            tenant: &tenant,
            url,
            description: "",
            event_types: &[],
            secret: &Secret::generate().expose(),
        },
    )
    .await
    .unwrap();
    for n in 0..messages {
        let data = serde_json::json!({"tenant_id": tenant, "n": n});
        let told = tell(
            &mut tx,
            Telling {
                tenant: &tenant,
                event_id: &format!("evt-{n}"),
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
    }
    tx.commit().await.unwrap();
    (db, pool, tenant)
}

fn sender(pool: &PgPool, vars: &[(&str, &str)]) -> notification_service::sender::Sender {
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
async fn all_delivered(pool: &PgPool, n: i64) -> HashMap<String, i64> {
    for _ in 0..200 {
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
    panic!("not every delivery was delivered within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_dying_mid_delivery_loses_nothing_and_records_once() {
    let (rx, url) = receiver(0).await;
    let (db, pool, _) = setup(&url, 12).await;
    // The first sender runs in a runtime of its own, with a pool of its own, and gets four
    // attempts into the receiver, which holds them; then the runtime is shut down, dropping
    // every task and connection it had, as a killed process would.
    let stop = tokio_util::sync::CancellationToken::new();
    let timeout = [("WEBHOOK_TIMEOUT_MS", "1000"), ("NOTIFY_CLOCK_MS", "50")];
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url_db = db.url.clone();
    let first_pool = doomed
        .spawn(async move { PgPool::connect(&url_db).await.unwrap() })
        .await
        .unwrap();
    doomed.spawn(sender(&first_pool, &timeout).serve(stop.clone()));
    for _ in 0..100 {
        if rx.arrivals.lock().await.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rx.arrivals.lock().await.len() >= 4,
        "attempts reached the receiver"
    );
    doomed.shutdown_background();
    let unrecorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE lease IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(unrecorded > 0, "the dead sender left leases behind");
    // The receiver answers again; a new sender takes over once the leases run out.
    rx.status.store(200, Ordering::SeqCst);
    rx.release.notify_waiters();
    let second = sender(&pool, &timeout);
    let running = tokio::spawn(second.serve(stop.clone()));
    let per_message = all_delivered(&pool, 12).await;
    assert_eq!(per_message.len(), 12);
    for (m, ok) in &per_message {
        assert_eq!(*ok, 1, "{m}: one successful attempt on record");
    }
    let arrivals = rx.arrivals.lock().await.clone();
    for m in per_message.keys() {
        assert!(
            arrivals.iter().any(|(id, _)| id == m),
            "{m} reached the receiver"
        );
    }
    stop.cancel();
    let _ = running.await;
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_everything_in_the_schedule() {
    let (rx, url) = receiver(503).await;
    let (db, pool, _) = setup(&url, 3).await;
    let schedule = [
        ("WEBHOOK_RETRY_SCHEDULE", "0s,1s,2s,2s,2s"),
        ("NOTIFY_CLOCK_MS", "50"),
    ];
    let s = sender(&pool, &schedule);
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(s.serve(stop.clone()));
    // Down for two attempts of each message, then back.
    for _ in 0..100 {
        let a = rx.arrivals.lock().await;
        if a.len() >= 6 {
            break;
        }
        drop(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rx.status.store(200, Ordering::SeqCst);
    let per_message = all_delivered(&pool, 3).await;
    assert!(per_message.values().all(|ok| *ok == 1));
    // Each message's attempts came no sooner than the schedule allows.
    let arrivals = rx.arrivals.lock().await.clone();
    for m in per_message.keys() {
        let times: Vec<DateTime<Utc>> = arrivals
            .iter()
            .filter(|(id, _)| id == m)
            .map(|(_, t)| *t)
            .collect();
        assert!(times.len() >= 3, "{m}: {times:?}");
        let base = [1000, 2000, 2000, 2000];
        for (i, w) in times.windows(2).enumerate() {
            let gap = (w[1] - w[0]).num_milliseconds();
            assert!(
                gap >= base[i] - 20,
                "{m}: attempt {} came {gap} ms after the one before",
                i + 2
            );
        }
    }
    stop.cancel();
    let _ = running.await;
    pool.close().await;
    db.drop_db().await;
}
