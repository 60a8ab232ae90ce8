//! The gateway's public HTTP routes, one module per resource.

mod status;

use axum::Router;
use platform::health::Readiness;

pub fn router(upstream_health: Readiness) -> Router {
    Router::new().merge(status::router(upstream_health))
}
