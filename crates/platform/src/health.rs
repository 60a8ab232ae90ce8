//! Liveness, readiness and metrics endpoints.
//!
//! `/healthz` says the process is up. `/readyz` runs every registered dependency check (with a
//! timeout each) and answers 503 naming the failing ones, so an orchestrator stops routing to a
//! replica that cannot reach its database. `/metrics` is the Prometheus text format.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The set of dependency checks behind `/readyz`.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(String, CheckFn)>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// The body of `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    pub status: &'static str,
    pub service: String,
    pub checks: BTreeMap<String, CheckResult>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(|c| c.ok)
    }
}

impl Readiness {
    /// Registers a named check; it should be cheap (a `SELECT 1`, a `PING`).
    pub fn add<F, Fut>(&mut self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name.into(), Arc::new(move || Box::pin(check()))));
    }

    /// Takes over every check of `other`.
    pub fn extend(&mut self, other: Readiness) {
        self.checks.extend(other.checks);
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs every check concurrently, each bounded by the timeout (default 2 s).
    pub async fn report(&self, service: &str) -> ReadinessReport {
        let timeout = self.timeout.unwrap_or(Duration::from_secs(2));
        let runs = self.checks.iter().map(|(name, check)| {
            let fut = check();
            async move {
                let start = Instant::now();
                let result = match tokio::time::timeout(timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
                };
                let latency_ms = start.elapsed().as_millis() as u64;
                let res = CheckResult {
                    ok: result.is_ok(),
                    error: result.err(),
                    latency_ms,
                };
                (name.clone(), res)
            }
        });
        let checks: BTreeMap<_, _> = futures::future::join_all(runs).await.into_iter().collect();
        let ready = checks.values().all(|c| c.ok);
        ReadinessReport {
            status: if ready { "ready" } else { "not_ready" },
            service: service.to_string(),
            checks,
        }
    }
}

#[derive(Clone)]
struct ProbeState {
    service: String,
    readiness: Readiness,
    limiter: Option<concurrency::Limiter>,
    /// Who may read `/metrics`; `None`: anyone who reaches the port.
    metrics_allow: Option<Arc<[Cidr]>>,
}

/// An address range (`10.0.0.0/8`, `::1/128`, or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net: addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `/healthz`, `/readyz` and `/metrics` for one service; `/metrics` only for clients in
/// `metrics_allow` when it is given (others get 404, as if it were not there).
pub fn router(
    service: &str,
    readiness: Readiness,
    limiter: Option<concurrency::Limiter>,
    metrics_allow: Option<Vec<Cidr>>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(ProbeState {
            service: service.to_string(),
            readiness,
            limiter,
            metrics_allow: metrics_allow.map(Arc::from),
        })
}

async fn healthz(State(s): State<ProbeState>) -> Response {
    axum::Json(serde_json::json!({"status": "ok", "service": s.service})).into_response()
}

async fn readyz(State(s): State<ProbeState>) -> Response {
    let report = s.readiness.report(&s.service).await;
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn metrics_text(State(s): State<ProbeState>, req: axum::extract::Request) -> Response {
    if let Some(allow) = &s.metrics_allow {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>();
        let allowed = peer.is_some_and(|p| allow.iter().any(|c| c.contains(p.0.ip())));
        if !allowed {
            return crate::problem::Problem::not_found("route").into_response();
        }
    }
    if let Some(l) = &s.limiter {
        // Gauges are sampled at scrape time: cheaper than updating them on every permit.
        metrics::gauge!("limiter_in_flight_workers").set(l.in_flight_workers() as f64);
        metrics::gauge!("limiter_in_flight_db_jobs").set(l.in_flight_db_jobs() as f64);
        metrics::gauge!("limiter_max_workers").set(l.max_workers() as f64);
        metrics::gauge!("limiter_max_db_jobs").set(l.max_db_jobs() as f64);
    }
    let body = crate::telemetry::metrics_handle().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod cidr_tests {
    use super::Cidr;

    #[test]
    fn ranges_contain_their_addresses_only() {
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains("127.1.2.3".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("10.0.0.1".parse().unwrap()));
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("::2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::/129", "nope", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }
}
