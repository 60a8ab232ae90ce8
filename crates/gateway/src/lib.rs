//! The gateway: the platform's only public door (DESIGN.md §6, §7).
//!
//! It owns no database. It holds a lazily connected gRPC channel to every internal service
//! ([`upstream`]), reports their health on `/readyz` and `GET /v1/status`, and (with the
//! gateway issue) authenticates, authorises, rate-limits and forwards `/v1/...` requests.

pub mod auth;
pub mod http;
pub mod upstream;

use platform::{App, AppBuilder, ServiceConfig, StartError};

/// Assembles the gateway. Redis is optional at start-up: the gateway keeps serving without it.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let upstreams = upstream::Upstreams::new(&cfg)?;
    let mut builder = AppBuilder::new(cfg.clone());
    match platform::cache::connect(&cfg.redis_url).await {
        Ok(conn) => builder = builder.redis(conn),
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable at start-up; continuing without it")
        }
    }
    let upstream_health = upstreams.health_checks();
    Ok(builder
        .readiness(upstream_health.clone())
        .http(http::router(upstream_health))
        .build())
}
