//! The billing-service: billing runs: aggregates usage into charges with bounded concurrency and deadlock-free locking.
//!
//! It owns the `saas_billing` database (migrated at start-up) and serves the `saas.billing.v1`
//! gRPC contract from `proto/billing/v1/` beside health, readiness and metrics on one port.
//! Built so far: the usage fold ([`domain`]) and the summary writes in canonical lock order
//! ([`store::summaries`]), proven by the ConcurFlow regression suite
//! (`tests/concurflow.rs`). The runs API and pipeline follow; until then the contract's
//! methods answer `UNIMPLEMENTED`.

pub mod cli;
pub mod domain;
pub mod pipeline;
pub mod store;

use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/billing");

/// Connects to the infrastructure and assembles the service.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let backbone = Backbone::connect(&cfg, &MIGRATOR).await?;
    let limiter = cfg.limiter();
    Ok(AppBuilder::new(cfg)
        .backbone(&backbone)
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .build())
}
