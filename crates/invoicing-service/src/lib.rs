//! The invoicing-service: invoices with gapless numbers, tax rules and PDFs.
//!
//! It owns the `saas_invoicing` database (migrated at start-up) and serves the `saas.invoicing.v1`
//! gRPC contract from `proto/invoicing/v1/` beside health, readiness and metrics on one port.
//! Until its issue lands, the contract's methods answer `UNIMPLEMENTED`.

pub mod domain;
pub mod store;

use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/invoicing");

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
