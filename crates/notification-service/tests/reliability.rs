//! At least once, recorded once: a sender that dies with attempts in flight (its runtime
//! shut down mid-request, as a killed process would leave them: leased, unrecorded) leaves
//! them to a later sender once the leases run out, and each delivery ends delivered with one
//! successful attempt on record. A receiver that is down for a while gets everything once it
//! is back, and never earlier than the retry schedule says — or than its `Retry-After`, when
//! that asks for longer.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use common::{all_delivered, receiver, sender, setup};

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
    // Down for two attempts of each message, then back. (Six arrivals in all is not
    // enough: one message may have had three and another one.)
    for _ in 0..200 {
        let a = rx.arrivals.lock().await;
        let mut per_message: std::collections::HashMap<&String, usize> = Default::default();
        for (id, _) in a.iter() {
            *per_message.entry(id).or_default() += 1;
        }
        if per_message.len() == 3 && per_message.values().all(|n| *n >= 2) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_when_it_asks_for_longer() {
    let (rx, url) = receiver(503).await;
    rx.retry_after.store(3, Ordering::SeqCst);
    let (db, pool, _) = setup(&url, 1).await;
    let s = sender(
        &pool,
        &[
            ("WEBHOOK_RETRY_SCHEDULE", "0s,1s,1s"),
            ("NOTIFY_CLOCK_MS", "50"),
        ],
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(s.serve(stop.clone()));
    for _ in 0..100 {
        if !rx.arrivals.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rx.status.store(200, Ordering::SeqCst);
    all_delivered(&pool, 1).await;
    let times: Vec<DateTime<Utc>> = rx.arrivals.lock().await.iter().map(|(_, t)| *t).collect();
    assert_eq!(times.len(), 2, "{times:?}");
    let gap = (times[1] - times[0]).num_milliseconds();
    assert!(
        gap >= 2980,
        "Retry-After: 3 asked for 3 s; the retry came after {gap} ms"
    );
    stop.cancel();
    let _ = running.await;
    pool.close().await;
    db.drop_db().await;
}
