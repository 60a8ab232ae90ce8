//! The billing service: billing runs that bill each part of every subscription period once —
//! fees in advance when a period begins, usage and true-ups when it ends — streaming the
//! periods' usage from the subscription service through a bounded, deadline-capped pipeline
//! into per-tenant and per-user summaries and pricing them into charges; started by request
//! or by the billing clock ([`clock`]).
//!
//! It owns the `saas_billing` database (migrated at start-up) and serves `saas.billing.v1`
//! from `proto/billing/v1/` beside health, readiness and metrics on one port. Transport is in
//! [`grpc`] (errors mapped once in [`error`]), the run's engine in [`pipeline`] and
//! [`runner`], pure rules (the usage fold, charges) in [`domain`], SQL in [`store`] — the
//! summary writes in canonical lock order ([`store::summaries`]), proven by the ConcurFlow
//! regression suite (`tests/concurflow.rs`). `billing.run.*` events leave through the outbox.

pub mod cli;
pub mod clock;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod pipeline;
pub mod runner;
pub mod settings;
pub mod store;

use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/billing");

/// Connects to the infrastructure and assembles the service.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let settings = settings::Settings::from_env().map_err(|e| StartError::Other(e.to_string()))?;
    build_with(cfg, settings).await
}

/// [`build`] with explicit settings (tests).
pub async fn build_with(
    cfg: ServiceConfig,
    settings: settings::Settings,
) -> Result<App, StartError> {
    let backbone = Backbone::connect(&cfg, &MIGRATOR).await?;
    let limiter = cfg.limiter();
    let usage_channel = platform::grpc::lazy_channel(
        cfg.upstream(platform::ServiceName::Subscription),
        cfg.grpc_timeout,
    )
    .map_err(|e| StartError::Other(format!("SUBSCRIPTION_SERVICE_ADDR: {e}")))?;
    let runner = runner::Runner {
        pool: backbone.pool.clone(),
        usage: rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient::new(
            usage_channel,
        ),
        limiter: limiter.clone(),
        lease: settings.lease,
        shards: settings.shards,
        worker: runner::worker_name(),
    };
    let api = grpc::BillingApi {
        pool: backbone.pool.clone(),
        runner: runner.clone(),
    };
    let (ids_tx, ids_rx) = tokio::sync::mpsc::unbounded_channel();
    let requested = runner::RunRequested { ids: ids_tx };
    let pool = backbone.pool.clone();
    let mut app = AppBuilder::new(cfg)
        .backbone(&backbone)
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .grpc(rpc::billing::v1::billing_service_server::BillingServiceServer::new(api))
        .consumer(
            platform::events::ConsumerSpec::new(
                "billing-run-requests",
                "BILLING",
                "billing.run.requested",
            ),
            requested,
        )
        .task("runner", move |stop| runner.serve(ids_rx, stop));
    if let Some(every) = settings.clock {
        app = app.task("clock", move |stop| clock::run(pool, every, stop));
    }
    Ok(app.build())
}
