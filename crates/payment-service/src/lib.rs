//! The payment service: payment methods (PSP tokens only), payment intents with Stripe's
//! state machine, PSP connectors (Stripe, Adyen, and a built-in sandbox that behaves like
//! Stripe's test mode), verified PSP callbacks, refunds and dunning.
//!
//! It owns the `saas_payment` database (migrated at start-up) and serves `saas.payment.v1`
//! from `proto/payment/v1/` beside health, readiness and metrics on one port. Transport is in
//! [`grpc`] (errors mapped once in [`error`]); money moves in [`engine`] and [`actions`]
//! (check and record, call the PSP through [`psp`], then [`settle`]); PSP callbacks arrive in
//! [`callbacks`]; the [`worker`] is the clock (intents of invoices, lost answers, dunning).
//! Pure rules (the state machine, signatures, dunning schedules, money) are in [`domain`],
//! SQL in [`store`], the sandbox PSP in [`sandbox`]. `payment.*` events leave through the
//! outbox ([`events`]).

pub mod actions;
pub mod callbacks;
pub mod domain;
pub mod engine;
pub mod error;
pub mod events;
pub mod grpc;
pub mod psp;
pub mod sandbox;
pub mod settings;
pub mod settle;
pub mod store;
pub mod worker;

use std::sync::Arc;

use platform::events::ConsumerSpec;
use platform::{App, AppBuilder, Backbone, Secret, ServiceConfig, StartError};
use tokio::sync::Notify;

use crate::psp::{Connectors, HttpSettings};
use crate::settings::{SANDBOX_API_KEY, SandboxMode, Settings};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/payment");

/// Connects to the infrastructure and assembles the service.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let settings = Settings::from_env().map_err(|e| StartError::Other(e.to_string()))?;
    build_with(cfg, settings).await
}

/// The connectors `settings` configure; an embedded sandbox is started here.
pub async fn connectors(
    s: &Settings,
) -> Result<(Connectors, Option<sandbox::Sandbox>), StartError> {
    // PSPs are reached over TLS through rustls with the ring provider, as everywhere in the
    // platform; reqwest panics when no provider is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| StartError::Other(format!("HTTP client: {e}")))?;
    let via = |base_url: String| HttpSettings {
        base_url,
        timeout: s.psp_timeout,
        retries: s.psp_retries,
    };
    let (sandbox_url, embedded) = match &s.sandbox {
        SandboxMode::Off => (None, None),
        SandboxMode::External(url) => (Some(url.clone()), None),
        SandboxMode::Embedded(addr) => {
            let sb = sandbox::Sandbox::start(
                *addr,
                SANDBOX_API_KEY,
                s.sandbox_webhook_secret.expose(),
                Some(s.sandbox_callback_url.clone()),
            )
            .await
            .map_err(|e| StartError::Other(format!("SANDBOX_PSP_ADDR {addr}: {e}")))?;
            (Some(sb.base_url()), Some(sb))
        }
    };
    let limiter = concurrency::Limiter::new(concurrency::LimiterConfig {
        max_workers: s.psp_max_in_flight,
        max_db_jobs: s.psp_max_in_flight,
    })
    .map_err(|e| StartError::Other(format!("PSP_MAX_IN_FLIGHT: {e}")))?;
    let connectors = Connectors {
        stripe: s
            .stripe_api_key
            .clone()
            .map(|key| psp::stripe::Stripe::new(http.clone(), via(s.stripe_api_base.clone()), key)),
        adyen: s.adyen_api_key.clone().map(|key| {
            psp::adyen::Adyen::new(
                http.clone(),
                via(s.adyen_api_base.clone()),
                key,
                s.adyen_merchant_account.clone(),
            )
        }),
        sandbox: sandbox_url.map(|url| {
            psp::stripe::Stripe::new(http.clone(), via(url), Secret::new(SANDBOX_API_KEY))
        }),
        limiter,
    };
    Ok((connectors, embedded))
}

/// [`build`] with explicit settings (tests).
pub async fn build_with(cfg: ServiceConfig, settings: Settings) -> Result<App, StartError> {
    let backbone = Backbone::connect(&cfg, &MIGRATOR).await?;
    let limiter = cfg.limiter();
    let (psps, embedded) = connectors(&settings).await?;
    let settings = Arc::new(settings);
    let wake = Arc::new(Notify::new());
    let engine = engine::Engine {
        pool: backbone.pool.clone(),
        psps,
        settings: settings.clone(),
        wake: wake.clone(),
    };
    let api = grpc::PaymentApi {
        engine: engine.clone(),
        callbacks: callbacks::Callbacks {
            pool: backbone.pool.clone(),
            settings: settings.clone(),
        },
    };
    let worker = worker::Worker {
        engine,
        wake: wake.clone(),
    };
    let mut app = AppBuilder::new(cfg)
        .backbone(&backbone)
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .grpc(rpc::payment::v1::payment_service_server::PaymentServiceServer::new(api))
        .consumer(
            ConsumerSpec::new("payment-invoices", "INVOICE", "invoice.ready"),
            events::InvoicesReady {
                schedule: settings.dunning.clone(),
                wake,
            },
        )
        .consumer(
            ConsumerSpec::new("payment-invoices-paid", "INVOICE", "invoice.paid"),
            events::InvoicesSettled,
        )
        .consumer(
            ConsumerSpec::new("payment-invoices-voided", "INVOICE", "invoice.voided"),
            events::InvoicesSettled,
        )
        .task("payment-clock", move |stop| worker.serve(stop));
    if let Some(sb) = embedded {
        app = app.task("sandbox-psp", move |stop| async move {
            stop.cancelled().await;
            sb.stop();
        });
    }
    Ok(app.build())
}
