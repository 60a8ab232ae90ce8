//! The gateway's public HTTP routes, one module per resource, behind authentication and the
//! permission table.

mod auth_throttle;
mod billing;
mod catalog;
mod credentials;
mod dunning;
pub mod error;
pub mod gcra;
pub mod idempotency;
mod identity;
pub mod input;
mod invoices;
mod metering;
mod notifications;
pub mod openapi;
mod payment_methods;
mod payments;
pub mod ratelimit;
mod refunds;
mod scim;
mod status;
mod taxes;
mod webhook_endpoints;
mod webhooks;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use platform::ServiceName;
use platform::health::Readiness;
use rpc::billing::v1::billing_service_client::BillingServiceClient;
use rpc::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use rpc::notification::v1::notification_service_client::NotificationServiceClient;
use rpc::payment::v1::payment_service_client::PaymentServiceClient;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use rpc::user::v1::user_service_client::UserServiceClient;
use utoipa_axum::router::OpenApiRouter;

use crate::upstream::Upstreams;

use crate::auth::{Authenticator, Identity, authorize};

/// What the public routes need.
pub struct Deps {
    /// One gRPC health check per internal service (for `/v1/status`).
    pub upstream_health: Readiness,
    pub upstreams: Upstreams,
    pub auth: Authenticator,
    /// Shared rate limits and idempotency records; `None` while Redis is unreachable.
    pub redis: Option<redis::aio::ConnectionManager>,
    pub per_caller: ratelimit::Quota,
    pub per_tenant: ratelimit::Quota,
    /// Failed authentications allowed per client address.
    pub auth_failures: ratelimit::Quota,
    pub max_body_bytes: usize,
    /// `PUBLIC_URL` as (scheme, authority), for links handed out (SCIM).
    pub public_url: Option<(String, String)>,
    /// Prefix of every Redis key (`EVENT_PREFIX`): stacks sharing one Redis stay apart.
    pub redis_namespace: String,
}

/// Everything under `/v1`.
pub fn router(deps: Deps) -> Router {
    let Deps {
        upstream_health,
        upstreams,
        auth,
        redis,
        per_caller,
        per_tenant,
        auth_failures,
        max_body_bytes,
        public_url,
        redis_namespace,
    } = deps;
    let users = UserServiceClient::new(upstreams.channel(ServiceName::User).clone());
    let payments = PaymentServiceClient::new(upstreams.channel(ServiceName::Payment).clone());
    let subs = SubscriptionServiceClient::new(upstreams.channel(ServiceName::Subscription).clone());
    let invoicing = InvoicingServiceClient::new(upstreams.channel(ServiceName::Invoicing).clone());
    let notifications =
        NotificationServiceClient::new(upstreams.channel(ServiceName::Notification).clone());
    let redis_health = Arc::new(platform::cache::Breaker::new(ratelimit::REDIS_COOL_DOWN));
    let limiter = ratelimit::RateLimiter::new(
        per_caller,
        per_tenant,
        redis.clone(),
        Some(ratelimit::PlanQuotas::new(subs.clone())),
    )
    .with_namespace(&redis_namespace)
    .with_breaker(redis_health.clone());
    let idem = idempotency::Idempotency {
        redis,
        redis_health,
        claim_lease: idempotency::CLAIM_LEASE,
        max_body_bytes,
        route_body_limits: &[("/v1/usage", metering::USAGE_BODY_LIMIT)],
        namespace: redis_namespace,
    };
    let (router, doc) = OpenApiRouter::new()
        .merge(status::router(upstream_health))
        .merge(identity::router(users.clone()))
        .merge(credentials::router(users.clone()))
        .merge(metering::router(subs.clone()))
        .merge(catalog::router(subs))
        .merge(billing::router(BillingServiceClient::new(
            upstreams.channel(ServiceName::Billing).clone(),
        )))
        .merge(invoices::router(invoicing.clone()))
        .merge(taxes::router(invoicing))
        .merge(payment_methods::router(payments.clone()))
        .merge(payments::router(payments.clone()))
        .merge(refunds::router(payments.clone()))
        .merge(dunning::router(payments.clone()))
        .merge(webhooks::router(payments))
        .merge(notifications::router(notifications.clone()))
        .merge(webhook_endpoints::router(notifications))
        .split_for_parts();
    let edge = Arc::new(Edge {
        auth,
        auth_failures: auth_throttle::AuthFailures::new(auth_failures),
        limiter,
        idem,
    });
    router
        .merge(openapi::route(openapi::finish(doc)))
        .merge(scim::router(users, max_body_bytes, public_url))
        // route_layer runs after routing, so the edge sees the matched path. One middleware
        // for all three steps: every `route_layer` wraps each route once more, and axum clones
        // the whole wrapped chain for every request.
        .route_layer(axum::middleware::from_fn_with_state(edge, edge_checks))
}

/// What stands between a routed request and its handler.
struct Edge {
    auth: Authenticator,
    auth_failures: auth_throttle::AuthFailures,
    limiter: ratelimit::RateLimiter,
    idem: idempotency::Idempotency,
}

/// Authenticate and authorize (unless the client address has failed too often), rate-limit
/// (per caller, per tenant), then idempotency (which needs the identity); the rate-limit
/// headers go on whatever comes back.
async fn edge_checks(State(edge): State<Arc<Edge>>, req: Request, next: Next) -> Response {
    // Under /scim/v2 every error, the edge's own included, is a SCIM Error (RFC 7644 §3.12).
    let scim = req.uri().path().starts_with("/scim/v2/");
    let resp = checked(&edge, req, next).await;
    if scim {
        scim::as_scim_error(resp).await
    } else {
        resp
    }
}

async fn checked(edge: &Edge, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(refused) = edge.auth_failures.refuse(peer) {
        return refused;
    }
    if let Err(bad) = input::check_uri(req.uri()) {
        return bad.into_response();
    }
    if let Err(denied) = authorize(&edge.auth, &mut req).await {
        if denied.status() == axum::http::StatusCode::UNAUTHORIZED {
            edge.auth_failures.record(peer);
        }
        return denied;
    }
    let shown = match edge
        .limiter
        .admit(req.extensions().get::<Identity>(), peer)
        .await
    {
        Ok(shown) => shown,
        Err(limited) => return limited,
    };
    let mut resp = idempotency::run(&edge.idem, req, next).await;
    ratelimit::set_headers(resp.headers_mut(), &shown);
    resp
}
