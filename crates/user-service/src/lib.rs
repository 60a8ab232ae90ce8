//! The user-service: tenants, org users, roles, API keys and SCIM.
//!
//! It owns the `saas_user` database (migrated at start-up) and serves the `saas.user.v1`
//! gRPC contract from `proto/user/v1/` beside health, readiness and metrics on one port.
//! Until its issue lands, the contract's methods answer `UNIMPLEMENTED`.

use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/user");

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
