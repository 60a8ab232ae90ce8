//! The client side of `cargo xtask bench payments`:
//!
//! - `loop N`: verifies one signed Stripe callback N times in a plain loop (the baseline);
//! - `send URL N CONCURRENCY SECRET`: posts N distinct signed callbacks to URL;
//! - `charge BASE N CONCURRENCY`: N create-and-confirm calls straight to a sandbox PSP.
//!
//! Each prints `key=value` pairs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use payment_service::domain::signature::{stripe_sign, stripe_verify};

/// A callback shaped like Stripe's `payment_intent.processing` (about 1 KiB).
fn event(n: u64) -> String {
    serde_json::json!({
        "id": format!("evt_bench_{n:012}"), "object": "event", "api_version": "2024-06-20",
        "type": "payment_intent.processing", "created": 1_780_000_000, "livemode": false,
        "data": {"object": {
            "id": format!("pi_bench_{n:012}"), "object": "payment_intent", "amount": 5831,
            "amount_capturable": 0, "amount_received": 0, "capture_method": "automatic",
            "confirmation_method": "automatic", "currency": "eur", "customer": "cus_bench",
            "description": "Invoice INV-2026-000123", "latest_charge": format!("ch_bench_{n:012}"),
            "metadata": {"invoice": "inv_01a23d25ad2f70d6a147aaacba7de7f3"},
            "payment_method": "pm_card_visa", "payment_method_types": ["card"],
            "status": "processing", "last_payment_error": null, "next_action": null,
        }},
        "request": {"id": "req_bench", "idempotency_key": format!("pay_bench-a{n}")},
    })
    .to_string()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {name}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("loop") => verify_loop(arg(&args, 1, "N")),
        Some("send") | Some("charge") => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                if args[0] == "send" {
                    send(
                        args[1].clone(),
                        arg(&args, 2, "N"),
                        arg(&args, 3, "CONCURRENCY"),
                        args[4].clone(),
                    )
                    .await
                } else {
                    charge(
                        args[1].clone(),
                        arg(&args, 2, "N"),
                        arg(&args, 3, "CONCURRENCY"),
                    )
                    .await
                }
            });
        }
        _ => {
            eprintln!("usage: callback_bench loop N | send URL N C SECRET | charge BASE N C");
            std::process::exit(2);
        }
    }
}

fn verify_loop(n: u64) {
    let body = event(1);
    let t = chrono::Utc::now().timestamp();
    let header = stripe_sign("whsec_bench", t, body.as_bytes());
    let started = Instant::now();
    let mut ok = 0u64;
    for _ in 0..n {
        let h = std::hint::black_box(header.as_str());
        ok += u64::from(stripe_verify(&["whsec_bench"], Some(h), body.as_bytes(), t, 300).is_ok());
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ok, n);
    println!("verified={n} secs={secs:.3} per_sec={:.0}", n as f64 / secs);
}

/// Runs `n` jobs on `c` workers; the seconds it took and how many succeeded.
async fn drive<F, Fut>(n: u64, c: u64, job: F) -> (f64, u64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let job = Arc::new(job);
    let started = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (next, ok, job) = (next.clone(), ok.clone(), job.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    if job(i).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a worker");
    }
    (started.elapsed().as_secs_f64(), ok.load(Ordering::Relaxed))
}

async fn send(url: String, n: u64, c: u64, secret: String) {
    let http = reqwest::Client::new();
    let (secs, ok) = drive(n, c, move |i| {
        let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
        async move {
            let body = event(i + 1_000_000 * u64::from(std::process::id()));
            let sig = stripe_sign(&secret, chrono::Utc::now().timestamp(), body.as_bytes());
            http.post(&url)
                .header("content-type", "application/json")
                .header("stripe-signature", sig)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!(
        "sent={n} ok={ok} secs={secs:.3} per_sec={:.0}",
        n as f64 / secs
    );
}

async fn charge(base: String, n: u64, c: u64) {
    let http = reqwest::Client::new();
    let (secs, ok) = drive(n, c, move |i| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let form = format!(
                "amount=5831&currency=eur&confirm=true&off_session=true&payment_method=pm_card_visa\
                 &metadata%5Bpayment_intent%5D=bench{i}"
            );
            http.post(format!("{base}/v1/payment_intents"))
                .bearer_auth(payment_service::settings::SANDBOX_API_KEY)
                .header(
                    "idempotency-key",
                    format!("bench-{}-{i}", std::process::id()),
                )
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!(
        "charged={n} ok={ok} secs={secs:.3} per_sec={:.0}",
        n as f64 / secs
    );
}
