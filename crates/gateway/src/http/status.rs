//! `GET /v1/status`: the health of every internal service, as the gateway sees it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use platform::health::{CheckResult, Readiness};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Status {
    /// `ok` when every service is serving, else `degraded`.
    status: &'static str,
    /// Per service: `ok`, `error` (why not), `latency_ms` of its gRPC health check.
    services: BTreeMap<String, CheckResult>,
}

/// `upstreams` holds one gRPC health check per internal service.
pub fn router(upstreams: Readiness) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .with_state(upstreams)
}

async fn status(State(upstreams): State<Readiness>) -> Json<Status> {
    let report = upstreams.report("gateway").await;
    Json(Status {
        status: if report.is_ready() { "ok" } else { "degraded" },
        services: report.checks,
    })
}
