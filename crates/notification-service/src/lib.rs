//! The notification-service: e-mail, SMS and signed webhook notifications.
//!
//! It owns the `saas_notification` database (migrated at start-up) and serves the `saas.notification.v1`
//! gRPC contract from `proto/notification/v1/` beside health, readiness and metrics on one port.
//! Until its issue lands, the contract's methods answer `UNIMPLEMENTED`; the pure rules of
//! delivery — Standard Webhooks signatures, the retry schedule, SSRF rules — are in [`domain`].

pub mod domain;

use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/notification");

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
