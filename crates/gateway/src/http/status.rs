//! `GET /v1/status`: the health of every internal service, as the gateway sees it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use platform::health::{CheckResult, Readiness};
use serde::Serialize;
use tokio::sync::Mutex;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::PublicErrors;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` when every service is serving, else `degraded`.
    status: &'static str,
    /// Per service: `ok`, `error` (why not), `latency_ms` of its gRPC health check.
    #[schema(value_type = Object)]
    services: BTreeMap<String, CheckResult>,
}

/// How long one round of health checks answers every caller: the route is public, and each
/// round is a call to every service.
const FRESH_FOR: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Checks {
    upstreams: Readiness,
    /// The last answer; the lock also makes concurrent callers share one round.
    last: Arc<Mutex<Option<(Instant, Status)>>>,
}

/// `upstreams` holds one gRPC health check per internal service.
pub fn router(upstreams: Readiness) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(status))
        .with_state(Checks {
            upstreams,
            last: Arc::new(Mutex::new(None)),
        })
}

/// The health of every internal service (public; at most a second old).
#[utoipa::path(get, path = "/v1/status", tag = "operations", responses((status = 200, body = Status), PublicErrors))]
async fn status(State(checks): State<Checks>) -> Json<Status> {
    let mut last = checks.last.lock().await;
    if let Some((at, answer)) = &*last
        && at.elapsed() < FRESH_FOR
    {
        return Json(answer.clone());
    }
    let report = checks.upstreams.report("gateway").await;
    let answer = Status {
        status: if report.is_ready() { "ok" } else { "degraded" },
        services: report.checks,
    };
    *last = Some((Instant::now(), answer.clone()));
    Json(answer)
}
