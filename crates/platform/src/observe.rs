//! What every request passes through first, HTTP and gRPC alike: a request id, a tracing
//! span with one access-log line, and the request metrics.
//!
//! One hand-written layer instead of four generic ones (request id, trace, propagate,
//! a `from_fn` metrics middleware): each of those wrapped the request, the response future
//! and often the body once more, and on a proxied request that bookkeeping cost more than the
//! work it observed. Metrics are labelled by route template, which only the router knows:
//! [`RouteTagLayer`] sits on every route and hands the template out on the response, and
//! [`Observe`] records with handles it registered once per (route, method, status).
//!
//! Request ids: a caller's `x-request-id` is kept when it is 1–128 visible ASCII characters,
//! otherwise a UUID v4 replaces it. HTTP responses echo it; gRPC responses do not (the caller
//! chose it). Forwarded east-west it is sent as a never-indexed HPACK literal
//! ([`crate::grpc::Caller::apply`]): a value that is new on every request would only churn the
//! connection's header table.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, Uri};
use axum::response::Response;
use metrics::{Counter, Histogram, Label, SharedString};

use crate::app::REQUEST_ID;

/// The longest caller-chosen request id kept; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// Wraps a service in [`Observe`].
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    service: &'static str,
    metrics: Arc<MetricsCache>,
}

impl ObserveLayer {
    pub(crate) fn new(service: &'static str) -> Self {
        ObserveLayer {
            service,
            metrics: Arc::new(MetricsCache::default()),
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            service: self.service,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    service: &'static str,
    metrics: Arc<MetricsCache>,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let id = match req.headers().get(REQUEST_ID) {
            Some(v) if acceptable_id(v) => v.clone(),
            _ => {
                let v = new_request_id();
                req.headers_mut().insert(REQUEST_ID, v.clone());
                v
            }
        };
        let grpc = crate::dispatch::is_grpc(&req);
        let span = tracing::info_span!(
            "request",
            service = self.service,
            method = %req.method(),
            path = %req.uri().path(),
            request_id = id.to_str().unwrap_or("-"),
            tenant = tracing::field::Empty,
        );
        let method = method_label(req.method());
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ObserveFuture {
            inner,
            span,
            start,
            // gRPC callers chose the id; echoing it back would only cost header-table work.
            echo: (!grpc).then_some(id),
            method,
            grpc,
            service: self.service,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        start: Instant,
        echo: Option<HeaderValue>,
        method: &'static str,
        grpc: bool,
        service: &'static str,
        metrics: Arc<MetricsCache>,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let Ok(mut resp) = std::task::ready!(this.inner.poll(cx));
        let elapsed = this.start.elapsed();
        if let Some(id) = this.echo.take() {
            resp.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        let route = resp.extensions_mut().remove::<RouteTag>();
        let route = match &route {
            Some(RouteTag::Template(p)) => p.as_str(),
            Some(RouteTag::Grpc(uri)) => uri.path(),
            None => "unmatched",
        };
        let status = resp.status();
        this.metrics.record(
            this.service,
            route,
            this.method,
            status.as_u16(),
            elapsed.as_secs_f64(),
        );
        // The access log: one line per request, inside the request span.
        let latency_us = elapsed.as_micros() as u64;
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                latency_us,
                grpc = *this.grpc,
                "request failed"
            );
        } else {
            tracing::info!(
                status = status.as_u16(),
                latency_us,
                grpc = *this.grpc,
                "request finished"
            );
        }
        Poll::Ready(Ok(resp))
    }
}

fn acceptable_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).expect("a hyphenated UUID is a valid header value")
}

/// Standard methods by name; anything else is `other`, so made-up methods cannot grow the
/// label set.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route a response came from, for its metric labels.
#[derive(Clone)]
enum RouteTag {
    /// An HTTP route's template (`/v1/tenants/{tenant_id}`).
    Template(MatchedPath),
    /// A routed gRPC call, labelled by its method path (bounded by the services' definitions).
    Grpc(Uri),
}

/// Put on every route (`Router::layer`): tells [`Observe`] which route answered.
#[derive(Clone, Copy)]
pub(crate) struct RouteTagLayer;

impl<S> tower::Layer<S> for RouteTagLayer {
    type Service = RouteTagged<S>;

    fn layer(&self, inner: S) -> RouteTagged<S> {
        RouteTagged { inner }
    }
}

#[derive(Clone)]
pub(crate) struct RouteTagged<S> {
    inner: S,
}

impl<S> tower::Service<Request> for RouteTagged<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TaggedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let tag = req.extensions().get::<MatchedPath>().map(|p| {
            if crate::dispatch::is_grpc(&req) {
                RouteTag::Grpc(req.uri().clone())
            } else {
                RouteTag::Template(p.clone())
            }
        });
        TaggedFuture {
            inner: self.inner.call(req),
            tag,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct TaggedFuture<F> {
        #[pin]
        inner: F,
        tag: Option<RouteTag>,
    }
}

impl<F> Future for TaggedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut resp) = std::task::ready!(this.inner.poll(cx));
        if let Some(tag) = this.tag.take() {
            resp.extensions_mut().insert(tag);
        }
        Poll::Ready(Ok(resp))
    }
}

/// Metric handles registered once per (route, method, status) and reused: building label sets
/// and looking them up in the recorder's registry on every request cost more than recording.
/// Bounded: routes are templates, gRPC method paths or `unmatched`; methods a fixed set.
#[derive(Default)]
struct MetricsCache {
    by_route: RwLock<HashMap<Box<str>, Vec<Handles>>>,
}

#[derive(Clone)]
struct Handles {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl MetricsCache {
    fn record(
        &self,
        service: &'static str,
        route: &str,
        method: &'static str,
        status: u16,
        secs: f64,
    ) {
        {
            let map = self.by_route.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = map
                .get(route)
                .and_then(|hs| hs.iter().find(|h| h.method == method && h.status == status))
            {
                h.requests.increment(1);
                h.duration.record(secs);
                return;
            }
        }
        let h = self.register(service, route, method, status);
        h.requests.increment(1);
        h.duration.record(secs);
    }

    #[cold]
    fn register(
        &self,
        service: &'static str,
        route: &str,
        method: &'static str,
        status: u16,
    ) -> Handles {
        let labels = [
            Label::from_static_parts("service", service),
            Label::from_static_parts("method", method),
            Label::new("route", SharedString::from(route.to_owned())),
            Label::new("status", status.to_string()),
        ];
        let h = Handles {
            method,
            status,
            requests: metrics::counter!("http_requests_total", labels.to_vec()),
            duration: metrics::histogram!("http_request_duration_seconds", labels[..3].to_vec()),
        };
        let mut map = self.by_route.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(route.into()).or_default();
        if !list
            .iter()
            .any(|x| x.method == method && x.status == status)
        {
            list.push(h.clone());
        }
        h
    }
}
