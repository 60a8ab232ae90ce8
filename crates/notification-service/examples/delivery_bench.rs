//! The measuring side of `cargo xtask bench notifications` (DATABASE_URL names the Postgres
//! server; a database of its own is made and dropped). Three parts, each printed as
//! `key=value`:
//!
//! 1. `baseline_*`: a plain reqwest loop posting the same bodies to the same local receiver,
//!    with as many requests in flight as the sender may have (no signing, no database).
//! 2. `webhook_*`: `--messages N` messages already told (one per tenant event, spread over
//!    `--endpoints E` tenants with one endpoint each), then the sender started: signed
//!    deliveries/s until the receiver has every one, each leased, attempted and recorded.
//! 3. `latency_*`: with the sender running, messages told at a steady rate; from the message
//!    being written (its transaction) to its arrival at the receiver, p50/p99.
//! 4. `email_*` (with `--smtp URL`): e-mails/s through the sender to that SMTP server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ids::TenantId;
use notification_service::events::{Telling, tell};
use notification_service::settings::Settings;
use notification_service::store::{Channel, endpoints, recipients};
use sqlx::PgPool;
use tokio::sync::Notify;

type Arrivals = Arc<Mutex<HashMap<String, DateTime<Utc>>>>;

fn opt(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A body shaped like a `payment.refunded` webhook (about 400 bytes).
fn data(tenant: &TenantId, n: usize) -> serde_json::Value {
    serde_json::json!({
        "refund_id": format!("rfd_bench_{n:012}"), "payment_intent_id": format!("pay_bench_{n:012}"),
        "tenant_id": tenant, "invoice_id": "inv_01a23d25ad2f70d6a147aaacba7de7f3",
        "amount_minor": 5831, "currency": "EUR", "amount_refunded_minor": 5831,
    })
}

async fn receiver(arrivals: Arrivals) -> String {
    let app = axum::Router::new().route(
        "/hook/{n}",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let a = arrivals.clone();
            async move {
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    a.lock().unwrap().insert(id.to_string(), Utc::now());
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn baseline(url: &str, bodies: &[String], in_flight: usize) -> f64 {
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = Arc::new(bodies.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let (http, next, bodies) = (http.clone(), next.clone(), bodies.clone());
        let url = format!("{url}/hook/{w}");
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", format!("base_{i}"))
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the receiver answers");
                assert!(r.status().is_success());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    bodies.len() as f64 / started.elapsed().as_secs_f64()
}

async fn tell_one(pool: &PgPool, tenant: &TenantId, event: &str, event_type: &str, n: usize) {
    let mut tx = pool.begin().await.unwrap();
    let vars = [("retries", "4".to_string())].into_iter().collect();
    tell(
        &mut tx,
        Telling {
            tenant,
            event_id: event,
            event_type,
            time: Utc::now(),
            data: &data(tenant, n),
            vars,
            also_email: None,
            attachment: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn wait_delivered(pool: &PgPool, n: i64) {
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
                .fetch_one(pool)
                .await
                .unwrap();
        if done >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let messages = opt(&args, "--messages", 5000);
    let endpoints_n = opt(&args, "--endpoints", 8);
    let steady = opt(&args, "--latency-messages", 1000);
    let mails = opt(&args, "--mails", 2000);
    let smtp = args
        .iter()
        .position(|a| a == "--smtp")
        .and_then(|i| args.get(i + 1).cloned());
    let db = test_support::TestDb::new().await;
    let pool = platform::db::connect_and_migrate(
        &db.url,
        platform::db::PoolSettings {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(30),
        },
        &notification_service::MIGRATOR,
    )
    .await
    .unwrap();
    let arrivals: Arrivals = Arc::default();
    let url = receiver(arrivals.clone()).await;
    let settings = Settings::from_lookup(|k| match k {
        "WEBHOOK_ALLOW_PRIVATE" => Some("true".into()),
        "NOTIFY_CLOCK_MS" => Some("20".into()),
        "EMAIL_TRANSPORT" => smtp.clone(),
        _ => None,
    })
    .unwrap();
    let in_flight = (endpoints_n * settings.per_endpoint).min(settings.max_in_flight);
    println!(
        "messages={messages} endpoints={endpoints_n} per_endpoint={} in_flight={in_flight}",
        settings.per_endpoint
    );

    let tenants: Vec<TenantId> = (0..endpoints_n)
        .map(|i| TenantId::parse(&format!("ten_bench{i}")).unwrap())
        .collect();
    {
        let mut conn = pool.acquire().await.unwrap();
        for (i, t) in tenants.iter().enumerate() {
            endpoints::insert(
                &mut conn,
                &endpoints::NewEndpoint {
                    tenant: t,
                    url: &format!("{url}/hook/{i}"),
                    description: "",
                    event_types: &["payment.*".to_string()],
                    secret: &notification_service::domain::signing::Secret::generate().expose(),
                },
            )
            .await
            .unwrap();
        }
    }

    // 1. The plain loop.
    let bodies: Vec<String> = (0..messages)
        .map(|n| {
            notification_service::events::body(
                "payment.refunded",
                Utc::now(),
                &data(&tenants[n % tenants.len()], n),
            )
        })
        .collect();
    let base = baseline(&url, &bodies, in_flight).await;
    println!("baseline_per_sec={base:.0}");

    // 2. Signed deliveries by the sender, everything due at once.
    for n in 0..messages {
        let t = &tenants[n % tenants.len()];
        tell_one(&pool, t, &format!("evt-{n}"), "payment.refunded", n).await;
    }
    let settings = Arc::new(settings);
    let wake = Arc::new(Notify::new());
    let start = || {
        let nowhere =
            platform::grpc::lazy_channel("http://127.0.0.1:9", Duration::from_secs(1)).unwrap();
        let sender =
            notification_service::sender(pool.clone(), settings.clone(), nowhere, wake.clone())
                .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        (stop.clone(), tokio::spawn(sender.serve(stop)))
    };
    let started = Instant::now();
    let (stop, running) = start();
    wait_delivered(&pool, messages as i64).await;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    println!("webhook_per_sec={rate:.0}");
    println!("webhook_vs_baseline={:.2}", rate / base);

    // 3. Event to delivery at a steady rate (one message every 2 ms per tenant round).
    let before = arrivals.lock().unwrap().len();
    for n in 0..steady {
        let t = &tenants[n % tenants.len()];
        tell_one(&pool, t, &format!("lat-{n}"), "payment.refunded", n).await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_delivered(&pool, (messages + steady) as i64).await;
    let told: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, created_at FROM messages WHERE event_id LIKE 'lat-%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let got = arrivals.lock().unwrap().clone();
    assert!(got.len() >= before + steady);
    let mut ms: Vec<f64> = told
        .iter()
        .filter_map(|(id, at)| {
            got.get(id)
                .map(|a| (*a - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "latency_ms_p50={:.1} latency_ms_p99={:.1} latency_ms_max={:.1}",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );

    stop.cancel();
    let _ = running.await;

    // 4. E-mails through the sender to the SMTP server, everything due at once.
    if smtp.is_some() {
        let t = TenantId::parse("ten_mail").unwrap();
        {
            let mut conn = pool.acquire().await.unwrap();
            for i in 0..8 {
                recipients::insert(
                    &mut conn,
                    &t,
                    Channel::Email,
                    &format!("ops{i}@mail.example"),
                    &[],
                )
                .await
                .unwrap();
            }
        }
        let per_message = 8;
        let count = mails / per_message;
        for n in 0..count {
            tell_one(
                &pool,
                &t,
                &format!("mail-{n}"),
                "payment.dunning.exhausted",
                n,
            )
            .await;
        }
        let started = Instant::now();
        let (stop, running) = start();
        wait_delivered(&pool, (messages + steady + count * per_message) as i64).await;
        println!(
            "email_per_sec={:.0} emails={}",
            (count * per_message) as f64 / started.elapsed().as_secs_f64(),
            count * per_message
        );
        stop.cancel();
        let _ = running.await;
    }
    pool.close().await;
    db.drop_db().await;
}
