//! `GET /v1/status`: the health of every internal service, as the gateway sees it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use platform::health::{CheckResult, Readiness};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::PublicErrors;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` when every service is serving, else `degraded`.
    status: &'static str,
    /// Per service: `ok`, `error` (why not), `latency_ms` of its gRPC health check.
    #[schema(value_type = Object)]
    services: BTreeMap<String, CheckResult>,
}

/// `upstreams` holds one gRPC health check per internal service.
pub fn router(upstreams: Readiness) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(status))
        .with_state(upstreams)
}

/// The health of every internal service (public).
#[utoipa::path(get, path = "/v1/status", tag = "operations", responses((status = 200, body = Status), PublicErrors))]
async fn status(State(upstreams): State<Readiness>) -> Json<Status> {
    let report = upstreams.report("gateway").await;
    Json(Status {
        status: if report.is_ready() { "ok" } else { "degraded" },
        services: report.checks,
    })
}
