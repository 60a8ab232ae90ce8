//! The user service: tenants, org users, roles, API keys and SCIM 2.0 provisioning.
//!
//! It owns the `saas_user` database (migrated at start-up) and serves `saas.user.v1` from
//! `proto/user/v1/` beside health, readiness and metrics on one port. Transport is in
//! [`grpc`] (one file per resource) and [`scim`], pure rules in [`domain`] (grants bounded by
//! the granter's permissions in [`domain::grants`]), SQL in [`store`]; `tenant.*` and
//! `user.*` events ([`events`]) leave through the outbox in the same transaction as the
//! change.

pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod scim;
pub mod settings;
pub mod store;

use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/user");

/// Connects to the infrastructure and assembles the service.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let settings = settings::Settings::from_env()?;
    let backbone = Backbone::connect(&cfg, &MIGRATOR).await?;
    let limiter = cfg.limiter();
    let tenants = store::tenant_cache::TenantCache::new(settings.tenant_cache_ttl);
    let api = grpc::UserApi::new(backbone.pool.clone(), tenants.clone());
    let pool = backbone.pool.clone();
    Ok(AppBuilder::new(cfg)
        .backbone(&backbone)
        .task("tenant-cache", move |stop| tenants.listen(pool, stop))
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .grpc(rpc::user::v1::user_service_server::UserServiceServer::new(
            api,
        ))
        .build())
}
