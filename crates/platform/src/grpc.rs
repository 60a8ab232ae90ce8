//! East-west gRPC client helpers: lazily connected channels with deadlines, the identity
//! metadata the gateway forwards, and the gRPC health check.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Metadata keys carrying the verified caller's identity (DESIGN.md §5).
pub mod metadata {
    pub const TENANT_ID: &str = "x-tenant-id";
    pub const SUBJECT: &str = "x-subject";
    pub const ROLES: &str = "x-roles";
    pub const REQUEST_ID: &str = "x-request-id";
}

/// A channel to `url` that connects on first use (so a service may start before its peers)
/// and applies `timeout` as the deadline of every call.
pub fn lazy_channel(url: &str, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Asks a peer's gRPC health service for its overall status.
pub async fn check_health(channel: Channel) -> Result<(), String> {
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    match resp.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("status {}", other.as_str_name())),
    }
}
