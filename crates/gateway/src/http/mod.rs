//! The gateway's public HTTP routes, one module per resource, behind authentication and the
//! permission table.

pub mod error;
mod identity;
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
    max_body_bytes: usize,
) -> Router {
    Router::new()
        .merge(status::router(upstream_health))
        .merge(identity::router(UserServiceClient::new(users)))
        // route_layer: runs after routing, so the middleware sees the matched path.
        .route_layer(axum::middleware::from_fn_with_state(auth, authorize))
        .layer(DefaultBodyLimit::max(max_body_bytes))
}
