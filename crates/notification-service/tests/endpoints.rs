//! Endpoints under the sender: a slow endpoint holds only its own `WEBHOOK_PER_ENDPOINT`
//! slots while another tenant's deliveries flow; an endpoint failing every attempt for longer
//! than `WEBHOOK_DISABLE_AFTER` is disabled, what was pending to it fails, and the tenant is
//! told by e-mail.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use ids::TenantId;
use notification_service::store::{Channel, EndpointStatus, endpoints, recipients};
use sqlx::PgPool;

use common::{db, endpoint, receiver, sender, tell_n};

async fn delivered_of(pool: &PgPool, tenant: &TenantId) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND status = 'delivered'",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_holds_only_its_own_slots() {
    let (db, pool) = db().await;
    let (slow, slow_url) = receiver(0).await;
    let (_fast, fast_url) = receiver(200).await;
    let (a, b) = (
        TenantId::parse("ten_slow").unwrap(),
        TenantId::parse("ten_fast").unwrap(),
    );
    endpoint(&pool, &a, &slow_url).await;
    endpoint(&pool, &b, &fast_url).await;
    tell_n(&pool, &a, "slow", 10).await;
    tell_n(&pool, &b, "fast", 20).await;
    let s = sender(
        &pool,
        &[
            ("NOTIFY_MAX_IN_FLIGHT", "8"),
            ("WEBHOOK_PER_ENDPOINT", "2"),
            ("WEBHOOK_TIMEOUT_MS", "30000"),
            ("NOTIFY_CLOCK_MS", "50"),
        ],
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(s.serve(stop.clone()));
    let mut fast_done = false;
    for _ in 0..200 {
        if delivered_of(&pool, &b).await == 20 {
            fast_done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        fast_done,
        "the fast endpoint got everything while the slow one held its requests"
    );
    assert_eq!(
        slow.arrivals.lock().await.len(),
        2,
        "the slow endpoint holds two slots, no more"
    );
    assert_eq!(delivered_of(&pool, &a).await, 0);
    // Once it answers, it gets the rest.
    slow.status.store(200, Ordering::SeqCst);
    slow.release.notify_waiters();
    for _ in 0..200 {
        if delivered_of(&pool, &a).await == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered_of(&pool, &a).await, 10);
    stop.cancel();
    let _ = running.await;
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_days_is_disabled_and_the_tenant_told() {
    let (db, pool) = db().await;
    let (_rx, url) = receiver(500).await;
    let t = TenantId::parse("ten_failing").unwrap();
    let e = endpoint(&pool, &t, &url).await;
    {
        let mut conn = pool.acquire().await.unwrap();
        recipients::insert(&mut conn, &t, Channel::Email, "ops@failing.example", &[])
            .await
            .unwrap()
            .unwrap();
    }
    tell_n(&pool, &t, "f", 1).await;
    let mail = std::env::temp_dir().join(format!("mail-{}", uuid::Uuid::new_v4()));
    let transport = format!("maildir:{}", mail.display());
    // "Days" are two seconds here; the schedule has attempts enough to outlast them.
    let s = sender(
        &pool,
        &[
            ("WEBHOOK_DISABLE_AFTER", "2s"),
            ("WEBHOOK_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s"),
            ("NOTIFY_CLOCK_MS", "50"),
            ("EMAIL_TRANSPORT", &transport),
        ],
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(s.serve(stop.clone()));
    let mut row = None;
    for _ in 0..200 {
        let mut conn = pool.acquire().await.unwrap();
        let r = endpoints::get(&mut conn, None, &e.id, false)
            .await
            .unwrap()
            .unwrap();
        if r.status == EndpointStatus::Disabled {
            row = Some(r);
            break;
        }
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = row.expect("the endpoint was disabled within 10 s");
    assert_eq!(row.disabled_reason.as_deref(), Some("failing"));
    let (status, attempts): (String, i32) = sqlx::query_as(
        "SELECT status, attempts FROM deliveries WHERE channel = 'webhook' AND target = $1",
    )
    .bind(e.id.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "failed");
    assert!(
        attempts >= 3,
        "it failed for the whole span: {attempts} attempts"
    );
    // The tenant hears of it by e-mail.
    let mut told = None;
    for _ in 0..100 {
        if let Some(f) = std::fs::read_dir(mail.join("new"))
            .ok()
            .and_then(|mut d| d.next())
        {
            told = Some(std::fs::read_to_string(f.unwrap().path()).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let told = told.expect("an e-mail telling the tenant");
    assert!(
        told.contains("Subject: Webhook endpoint disabled for ten_failing"),
        "{told}"
    );
    let text: String = sqlx::query_scalar(
        "SELECT text_body FROM messages WHERE event_type = 'webhook.endpoint.disabled'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        text.contains(&url) && text.contains("every delivery has failed since"),
        "{text}"
    );
    assert!(told.contains("To: ops@failing.example"), "{told}");
    stop.cancel();
    let _ = running.await;
    let _ = std::fs::remove_dir_all(&mail);
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_cannot_be_filled_skips_mail_but_not_webhooks() {
    let (db, pool) = db().await;
    let t = TenantId::parse("ten_unfilled").unwrap();
    endpoint(&pool, &t, "http://127.0.0.1:9/hook").await;
    let mut tx = pool.begin().await.unwrap();
    recipients::insert(&mut tx, &t, Channel::Email, "ops@unfilled.example", &[])
        .await
        .unwrap()
        .unwrap();
    // invoice.paid's template needs the number, amount and date; none are given.
    let data = serde_json::json!({"tenant_id": t});
    let told = notification_service::events::tell(
        &mut tx,
        notification_service::events::Telling {
            tenant: &t,
            event_id: "evt-unfilled",
            event_type: "invoice.paid",
            time: chrono::Utc::now(),
            data: &data,
            vars: Default::default(),
            also_email: None,
            attachment: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(told);
    let channels: Vec<String> = sqlx::query_scalar("SELECT channel FROM deliveries")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(channels, ["webhook"]);
    pool.close().await;
    db.drop_db().await;
}
