//! A payment engine against a real Postgres and a real sandbox PSP (its own HTTP server),
//! whose callbacks reach the engine through a small HTTP receiver standing in for the
//! gateway's `/v1/webhooks/psp/stripe`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use payment_service::callbacks::Callbacks;
use payment_service::engine::Engine;
use payment_service::sandbox::Sandbox;
use payment_service::settings::{SANDBOX_API_KEY, Settings};
use payment_service::worker::Worker;
use sqlx::PgPool;
use test_support::TestDb;
use tokio::sync::Notify;

pub const SANDBOX_SECRET: &str = "whsec_test_sandbox_secret";

pub struct Env {
    pub db: TestDb,
    pub pool: PgPool,
    pub sandbox: Sandbox,
    pub engine: Engine,
    pub callbacks: Callbacks,
    pub worker: Worker,
    receiver: tokio_util::sync::CancellationToken,
}

/// An environment whose settings are the defaults with `overrides` (`SANDBOX_URL` in a value
/// stands for the sandbox's base URL); with `callbacks` off the sandbox sends none (only
/// answers and re-asks settle intents). Adyen notifications are sent when `ADYEN_HMAC_KEYS`
/// is among the overrides.
pub async fn env(overrides: &[(&str, &str)], callbacks: bool) -> Env {
    test_support::init_logging();
    let db = TestDb::new().await;
    let pool = platform::db::connect_and_migrate(
        &db.url,
        platform::db::PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        },
        &payment_service::MIGRATOR,
    )
    .await
    .unwrap();
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SANDBOX_API_KEY,
        SANDBOX_SECRET,
        None,
    )
    .await
    .unwrap();
    let base = sandbox.base_url();
    let settings = Settings::from_lookup(|k| {
        if let Some((_, v)) = overrides.iter().find(|(name, _)| *name == k) {
            return Some(v.replace("SANDBOX_URL", &base));
        }
        match k {
            "SANDBOX_PSP" => Some(base.clone()),
            "SANDBOX_WEBHOOK_SECRET" => Some(SANDBOX_SECRET.into()),
            _ => None,
        }
    })
    .unwrap();
    let (psps, _) = payment_service::connectors(&settings).await.unwrap();
    let settings = Arc::new(settings);
    let wake = Arc::new(Notify::new());
    let engine = Engine {
        pool: pool.clone(),
        psps,
        settings: settings.clone(),
        wake: wake.clone(),
    };
    let cbs = Callbacks {
        pool: pool.clone(),
        settings,
    };
    let receiver = tokio_util::sync::CancellationToken::new();
    if callbacks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let adyen_url = format!("http://{}/adyen", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .route("/adyen", axum::routing::post(receive_adyen))
            .with_state(cbs.clone());
        let stop = receiver.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        sandbox.set_callback_url(url);
        if let Some((_, key)) = overrides.iter().find(|(k, _)| *k == "ADYEN_HMAC_KEYS") {
            sandbox.set_adyen(adyen_url, *key);
        }
    }
    let worker = Worker {
        engine: engine.clone(),
        wake,
    };
    Env {
        db,
        pool,
        sandbox,
        engine,
        callbacks: cbs,
        worker,
        receiver,
    }
}

async fn receive(State(cbs): State<Callbacks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    match cbs.stripe(&body, &headers).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn receive_adyen(State(cbs): State<Callbacks>, body: Bytes) -> (StatusCode, &'static str) {
    match cbs.adyen(&body).await {
        Ok(_) => (StatusCode::OK, "[accepted]"),
        Err(_) => (StatusCode::BAD_REQUEST, ""),
    }
}

impl Env {
    pub async fn stop(self) {
        self.receiver.cancel();
        self.sandbox.stop();
        self.pool.close().await;
        self.db.drop_db().await;
    }

    /// How many events of `kind` the outbox holds about `subject`.
    pub async fn published(&self, kind: &str, subject: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE payload->>'type' = $1 AND payload->>'subject' = $2",
        )
        .bind(kind)
        .bind(subject)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// The PSP callbacks applied so far.
    pub async fn callbacks_seen(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM psp_events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Polls `check` until it gives `Some`, for at most ten seconds.
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
