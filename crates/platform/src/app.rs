//! Assembling and serving one service: gRPC and HTTP on one port, background tasks, graceful
//! shutdown.
//!
//! A service library builds an [`App`] from its config (routes, gRPC services, readiness
//! checks, background tasks); its `main.rs` binds the listener and calls [`App::serve`] with
//! [`shutdown_signal`]; tests call the same with port 0 and their own token.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::ServiceConfig;
use crate::conn::{ConnLimits, accept_failed, serve_connection};
use crate::dispatch::Dispatch;
use crate::events::{ConsumerSpec, EventBus, EventHandler, OutboxRelay, run_consumer};
use crate::health::Readiness;
use crate::observe::{ObserveLayer, RouteTagLayer};
use crate::problem::Problem;

/// The request-id header, set at the edge when missing and propagated everywhere.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

type Task = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// Collects what a service consists of.
pub struct AppBuilder {
    cfg: ServiceConfig,
    http: Router,
    grpc: Option<Routes>,
    readiness: Readiness,
    tasks: Vec<(String, Task)>,
    limiter: Option<concurrency::Limiter>,
    descriptors: Vec<&'static [u8]>,
    cors: bool,
    body_limit: Option<usize>,
    compression: bool,
    metrics_allow: Option<Vec<crate::health::Cidr>>,
    /// NATS and the database, once `events` (or `backbone`) registered them: consumers use
    /// them.
    events: Option<(EventBus, sqlx::PgPool)>,
}

impl AppBuilder {
    pub fn new(cfg: ServiceConfig) -> Self {
        AppBuilder {
            cfg,
            http: Router::new(),
            grpc: None,
            readiness: Readiness::default(),
            tasks: Vec::new(),
            limiter: None,
            descriptors: Vec::new(),
            cors: false,
            body_limit: None,
            compression: false,
            metrics_allow: None,
            events: None,
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// Adds HTTP routes (merged with the probes).
    pub fn http(mut self, router: Router) -> Self {
        self.http = self.http.merge(router);
        self
    }

    /// Adds a gRPC service.
    pub fn grpc<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.grpc = Some(match self.grpc.take() {
            Some(routes) => routes.add_service(svc),
            None => Routes::new(svc),
        });
        self
    }

    /// Serves gRPC reflection for the services in this encoded `FileDescriptorSet`
    /// (`rpc::FILE_DESCRIPTOR_SET`), so `grpcurl` and friends can list and call them.
    pub fn reflection(mut self, encoded_descriptor_set: &'static [u8]) -> Self {
        self.descriptors.push(encoded_descriptor_set);
        self
    }

    /// Answers CORS preflights and allows any origin. For a public API authenticated by
    /// bearer tokens (no cookies, so no credentials mode); it must wrap the whole router,
    /// or preflights for routes without an OPTIONS handler would answer 405.
    pub fn cors(mut self) -> Self {
        self.cors = true;
        self
    }

    /// Caps request bodies at `bytes` for every HTTP route (axum's default is 2 MiB).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Serves `/metrics` only to clients in `allow` (a public port: the gateway's).
    pub fn metrics_allow(mut self, allow: Vec<crate::health::Cidr>) -> Self {
        self.metrics_allow = Some(allow);
        self
    }

    /// Compresses responses (gzip) for clients that accept it; small replies stay as they are.
    pub fn compression(mut self) -> Self {
        self.compression = true;
        self
    }

    /// Adds a readiness check.
    pub fn ready_check<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.readiness.add(name, check);
        self
    }

    /// Adds every check of `checks`.
    pub fn readiness(mut self, checks: Readiness) -> Self {
        self.readiness.extend(checks);
        self
    }

    /// Reports the limiter's gauges on `/metrics`.
    pub fn limiter(mut self, limiter: concurrency::Limiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Registers Postgres as a readiness dependency.
    pub fn postgres(self, pool: sqlx::PgPool) -> Self {
        self.ready_check("postgres", move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// Registers Redis as a readiness dependency.
    pub fn redis(self, conn: redis::aio::ConnectionManager) -> Self {
        self.ready_check("redis", move || {
            let mut conn = conn.clone();
            async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// Registers the service's database and NATS as readiness dependencies and runs its
    /// outbox relay.
    pub fn backbone(self, backbone: &crate::Backbone) -> Self {
        self.postgres(backbone.pool.clone())
            .events(backbone.bus.clone(), backbone.pool.clone())
    }

    /// Registers NATS as a readiness dependency and runs this service's outbox relay.
    pub fn events(mut self, bus: EventBus, pool: sqlx::PgPool) -> Self {
        let relay = OutboxRelay::new(pool.clone(), bus.clone(), self.cfg.outbox_poll);
        self.events = Some((bus.clone(), pool));
        self.ready_check("nats", move || {
            let ok = bus.is_connected();
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("not connected".to_string())
                }
            }
        })
        .task("outbox-relay", move |stop| relay.run(stop))
    }

    /// Consumes the events `spec` selects with `handler` for the life of the service, through
    /// the inbox (each effect once; retries, then the dead-letter stream). Needs
    /// [`backbone`](Self::backbone) (or [`events`](Self::events)) first.
    pub fn consumer<H: EventHandler>(self, spec: ConsumerSpec, handler: H) -> Self {
        let (bus, pool) = self
            .events
            .clone()
            .expect("AppBuilder::consumer needs backbone() or events() first");
        let name = format!("consumer:{}", spec.name);
        self.task(&name, move |stop| async move {
            let durable = spec.name.clone();
            if let Err(e) = run_consumer(bus, pool, spec, handler, stop).await {
                tracing::error!(consumer = %durable, error = %e, "event consumer stopped");
            }
        })
    }

    /// Runs a background task for the life of the service; it must return once `stop` fires.
    pub fn task<F, Fut>(mut self, name: &str, task: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push((name.to_string(), Box::new(move |stop| Box::pin(task(stop)))));
        self
    }

    /// Finishes the service: probes, gRPC health, middleware.
    pub fn build(self) -> App {
        // Install the recorder before anything records, or early metrics go nowhere.
        crate::telemetry::metrics_handle();
        let name = self.cfg.service.binary();
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let mut grpc = match self.grpc {
            Some(routes) => routes.add_service(health_service),
            None => Routes::new(health_service),
        };
        if !self.descriptors.is_empty() {
            let mut reflection = tonic_reflection::server::Builder::configure();
            for set in &self.descriptors {
                reflection = reflection.register_encoded_file_descriptor_set(set);
            }
            match reflection.build_v1() {
                Ok(svc) => grpc = grpc.add_service(svc),
                // A bad descriptor set is a build bug, but not worth refusing to serve over.
                Err(e) => tracing::error!(error = %e, "gRPC reflection disabled"),
            }
        }
        let grpc_router = grpc.prepare().into_axum_router();
        let readiness = self.readiness.clone();
        let mut tasks = self.tasks;
        // The gRPC health status follows readiness, so the gateway (and any gRPC-aware load
        // balancer) stops sending to a replica whose database is gone.
        tasks.push((
            "grpc-health".to_string(),
            Box::new(move |stop: CancellationToken| {
                Box::pin(async move {
                    loop {
                        let status = if readiness.report(name).await.is_ready() {
                            ServingStatus::Serving
                        } else {
                            ServingStatus::NotServing
                        };
                        reporter.set_service_status("", status).await;
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                    }
                    reporter
                        .set_service_status("", ServingStatus::NotServing)
                        .await;
                })
            }),
        ));
        // Routes tag their responses with the route that answered (for metric labels); the
        // tag is the only layer applied per route (each `Router::layer` re-wraps every route,
        // and axum clones the whole wrapped chain per request).
        let http = self
            .http
            .merge(crate::health::router(
                name,
                self.readiness,
                self.limiter,
                self.metrics_allow,
            ))
            .method_not_allowed_fallback(|req: Request| async move {
                Problem::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                )
                .with_detail(format!(
                    "{} is not allowed on {}",
                    req.method(),
                    req.uri().path()
                ))
            })
            .fallback(|req: Request| crate::problem::not_found_fallback(req.uri().clone()))
            .layer(RouteTagLayer);
        let grpc = grpc_router.layer(RouteTagLayer);
        // The rest of the stack wraps both protocols once, as plain (unboxed) tower layers;
        // what a service did not ask for (CORS, compression, a body limit) is not there at all.
        use tower_http::compression::{CompressionLayer, predicate::DefaultPredicate};
        let stack = tower::ServiceBuilder::new()
            .option_layer(self.cors.then(|| {
                tower::ServiceBuilder::new().map_response(plain_body).layer(
                    tower_http::cors::CorsLayer::new()
                        .allow_origin(tower_http::cors::Any)
                        .allow_methods(tower_http::cors::Any)
                        .allow_headers(tower_http::cors::Any)
                        .expose_headers(tower_http::cors::Any)
                        .max_age(Duration::from_secs(600))
                        // Every answer is the same whatever the Origin (`*` throughout), so
                        // no `Vary` headers: tower-http would add three to every response.
                        .vary([]),
                )
            }))
            // Request id, span and access log, metrics: outside the panic and timeout
            // layers, so it sees the 500s and 504s they answer with.
            .layer(ObserveLayer::new(name))
            .map_response(plain_body)
            .layer(CatchPanicLayer::custom(|_| {
                tracing::error!("handler panicked");
                Problem::internal().into_response()
            }))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                self.cfg.request_timeout,
            ))
            .option_layer(self.compression.then(|| {
                tower::ServiceBuilder::new()
                    .map_response(plain_body)
                    .layer(CompressionLayer::new().compress_when(DefaultPredicate::new()))
            }))
            .option_layer(self.body_limit.map(axum::extract::DefaultBodyLimit::max))
            .service(Dispatch { http, grpc });
        App {
            name,
            // A router again, for `into_make_service_with_connect_info` and `oneshot` in tests.
            router: Router::new().fallback_service(stack),
            tasks,
            grace: self.cfg.shutdown_grace,
            limits: ConnLimits {
                header_timeout: self.cfg.header_read_timeout,
                h2_idle: self.cfg.http2_idle_timeout,
            },
            max_connections: self.cfg.max_connections,
        }
    }
}

/// Layers that answer with bodies of their own (CORS preflights, compression, panics,
/// timeouts) hand back axum's body type again, so the layers around them see one type.
fn plain_body<B>(r: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    r.map(axum::body::Body::new)
}

/// A built service, ready to serve.
pub struct App {
    name: &'static str,
    router: Router,
    tasks: Vec<(String, Task)>,
    grace: Duration,
    limits: ConnLimits,
    max_connections: usize,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("name", &self.name).finish()
    }
}

impl App {
    /// The full router (probes, routes, gRPC), e.g. for `tower::ServiceExt::oneshot` in tests.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `listener` and runs the background tasks until `shutdown` fires; then stops
    /// accepting, lets in-flight requests finish for up to the grace period, and stops the tasks.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(service = self.name, %addr, "serving gRPC and HTTP");
        let tasks_stop = CancellationToken::new();
        let mut set = JoinSet::new();
        for (name, task) in self.tasks {
            let stop = tasks_stop.clone();
            set.spawn(async move {
                task(stop).await;
                tracing::debug!(task = %name, "task stopped");
            });
        }
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        // Each connection holds a permit; at the cap, new ones wait in the kernel's backlog.
        let permits = Arc::new(Semaphore::new(self.max_connections));
        loop {
            if permits.available_permits() == 0 {
                tracing::warn!(
                    service = self.name,
                    max = self.max_connections,
                    "connection cap reached (MAX_CONNECTIONS); new connections wait"
                );
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = shutdown.cancelled() => break,
            };
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(&e, &shutdown).await;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let served = serve_connection(
                tcp,
                peer,
                self.router.clone(),
                builder.clone(),
                graceful.watcher(),
                self.limits,
                shutdown.clone(),
            );
            tokio::spawn(async move {
                served.await;
                drop(permit);
            });
        }
        drop(listener);
        // Open connections finish what they are serving (idle ones close now), for at most
        // the grace period.
        if tokio::time::timeout(self.grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(service = self.name, grace = ?self.grace, "drain timed out; closing remaining connections");
        }
        tasks_stop.cancel();
        while set.join_next().await.is_some() {}
        tracing::info!(service = self.name, "stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C and cancels the returned token.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown signal received; draining");
        t.cancel();
    });
    token
}
