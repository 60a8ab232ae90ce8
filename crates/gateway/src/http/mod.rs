//! The gateway's public HTTP routes, one module per resource, behind authentication and the
//! permission table.

pub mod error;
pub mod idempotency;
mod identity;
pub mod ratelimit;
mod status;
mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use platform::health::Readiness;
use rpc::user::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;

use crate::auth::{Authenticator, authorize};

/// Everything under `/v1`.
pub fn router(
    upstream_health: Readiness,
    users: Channel,
    auth: Authenticator,
    redis: Option<redis::aio::ConnectionManager>,
    limits: (ratelimit::Quota, ratelimit::Quota),
    max_body_bytes: usize,
) -> Router {
    let limiter = ratelimit::RateLimiter::new(limits.0, limits.1, redis.clone());
    let idem = idempotency::Idempotency {
        redis,
        max_body_bytes,
    };
    Router::new()
        .merge(status::router(upstream_health))
        .merge(identity::router(UserServiceClient::new(users)))
        // route_layer runs after routing, so these see the matched path. The last added runs
        // first: authenticate and authorize, rate-limit (per caller, per tenant), then
        // idempotency (which needs the identity).
        .route_layer(axum::middleware::from_fn_with_state(
            idem,
            idempotency::layer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            limiter,
            ratelimit::layer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(auth, authorize))
        .layer(DefaultBodyLimit::max(max_body_bytes))
}
