//! Reliability with a real `kill -9`: the service's binary consumes `payment.refunded` events
//! from JetStream (each published twice, as a relay that died after publishing would), gets
//! four signed deliveries into a receiver that holds them, and is killed with SIGKILL. Once
//! restarted and the receiver answering (events the dead consumer held come back after
//! JetStream's ack wait), every event has exactly one message, every message
//! reached the receiver, and each delivery has one successful attempt on record.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ids::TenantId;
use platform::events::{CloudEvent, EventBus};

use common::{all_delivered_within, db, endpoint, receiver};

const EVENTS: usize = 12;

fn start(db_url: &str, prefix: &str) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_notification-service"))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", db_url)
        .env("REDIS_URL", test_support::redis_url())
        .env("NATS_URL", test_support::nats_url())
        .env("EVENT_PREFIX", prefix)
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_TIMEOUT_MS", "1000")
        .env("NOTIFY_CLOCK_MS", "50")
        .env("EMAIL_TRANSPORT", "maildir:/nonexistent-unused")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the notification-service binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_delivery_then_a_restart_delivers_everything_once() {
    let prefix = test_support::unique_prefix();
    let (rx, url) = receiver(0).await;
    let (db, pool) = db().await;
    let tenant = TenantId::parse("ten_crash").unwrap();
    endpoint(&pool, &tenant, &url).await;
    let bus = EventBus::connect(&test_support::nats_url(), &prefix)
        .await
        .unwrap();
    bus.ensure_streams().await.unwrap();
    for n in 0..EVENTS {
        let data = serde_json::json!({
            "refund_id": format!("rfd_{n}"), "payment_intent_id": format!("pay_{n}"),
            "tenant_id": tenant, "amount_minor": 100 + n, "currency": "EUR",
            "amount_refunded_minor": 100 + n,
        });
        let event = CloudEvent::new("/services/payment", "payment.refunded", data)
            .with_tenant(tenant.as_str());
        bus.publish(&event).await.unwrap();
        bus.publish(&event).await.unwrap();
    }

    let mut first = start(&db.url, &prefix);
    for _ in 0..300 {
        if rx.arrivals.lock().await.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        rx.arrivals.lock().await.len() >= 4,
        "deliveries reached the receiver"
    );
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE lease IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(leased > 0, "the killed service left attempts unrecorded");

    rx.status.store(200, Ordering::SeqCst);
    rx.release.notify_waiters();
    let mut second = start(&db.url, &prefix);
    // Events the killed consumer had taken but not acknowledged come back after JetStream's
    // ack wait (30 s).
    let per_message = all_delivered_within(&pool, EVENTS as i64, Duration::from_secs(90)).await;
    second.kill().ok();
    second.wait().ok();
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        messages, EVENTS as i64,
        "each event told once, though published twice"
    );
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
    let _ = bus.delete_streams().await;
    pool.close().await;
    db.drop_db().await;
}
