//! Serving one accepted connection: HTTP/1 or HTTP/2 (told apart by the first bytes), the
//! timeouts that close silent or idle connections, and the graceful drain at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::batched::{Batched, InFlight};

/// How long a connection may stay silent.
#[derive(Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Until a request head (and, for HTTP/1, between requests) is complete.
    pub(crate) header_timeout: Duration,
    /// An HTTP/2 connection without a call.
    pub(crate) h2_idle: Duration,
}

/// Serves one accepted connection until it closes, or until shutdown once it has finished
/// what it was serving.
pub(crate) async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    // Small gRPC and HTTP replies must not wait for Nagle's algorithm (a 40 ms stall against
    // delayed ACKs under load).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    // A connection that says nothing is closed like one that stalls in a request head.
    let h2 = tokio::select! {
        h2 = tokio::time::timeout(limits.header_timeout, speaks_h2(&tcp)) => match h2 {
            Ok(h2) => h2,
            Err(_) => {
                tracing::debug!(%peer, "nothing received in time; closing the connection");
                return;
            }
        },
        () = shutdown.cancelled() => return,
    };
    // Peer addresses reach handlers (rate limits key anonymous callers by IP).
    let service = router.map_request(move |mut req: axum::http::Request<axum::body::Body>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let incoming = |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new);
    let io = TokioIo::new(tcp);
    let open =
        metrics::gauge!("connections_open", "protocol" => if h2 { "http2" } else { "http1" });
    open.increment(1.0);
    let served = if h2 {
        // An HTTP/2 connection (gRPC) carries many calls, and its replies are written by the
        // connection's task: while several are in flight, replies finished together leave in
        // one write (`batched`). Only here are calls counted: an HTTP/1 connection has one
        // reply at a time to write.
        let calls = InFlight::default();
        let counter = calls.clone();
        let service = service.map_request(incoming).map_future(move |answer| {
            let call = counter.enter();
            async move {
                let _call = call;
                answer.await
            }
        });
        let conn = builder
            .serve_connection(io, TowerToHyperService::new(service))
            .into_owned();
        // Not `watcher.watch`: this connection also closes itself when idle. Held until it
        // ends, the watcher still makes the drain at shutdown wait for it.
        let _drain = watcher;
        let conn = std::pin::pin!(Batched::new(conn, calls.clone()));
        let idle = std::pin::pin!(idle(calls, limits.h2_idle));
        close_gracefully_on(conn, idle, &shutdown).await
    } else {
        // A response to a request whose body was left unread says `Connection: close`
        // (`unread`): hyper closes such a connection, and the client must know before it
        // sends the next request on it.
        let service = tower::service_fn(move |req: axum::http::Request<axum::body::Body>| {
            let (req, end) = crate::unread::watch(req);
            let answer = service.clone().oneshot(req);
            async move {
                let mut resp = answer.await?;
                crate::unread::close_if_unread(&mut resp, end);
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let service = service.map_request(incoming);
        let conn = builder.serve_connection(io, TowerToHyperService::new(service));
        watcher.watch(conn.into_owned()).await
    };
    open.decrement(1.0);
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Drives an HTTP/2 connection to its end; on shutdown or when `idle` fires it says GOAWAY,
/// lets the calls in flight finish and closes.
async fn close_gracefully_on<C: GracefulConnection>(
    mut conn: std::pin::Pin<&mut Batched<C>>,
    mut idle: std::pin::Pin<&mut impl Future<Output = ()>>,
    shutdown: &CancellationToken,
) -> Result<(), C::Error> {
    let mut closing = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => return done,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().inner().graceful_shutdown();
            }
            () = idle.as_mut(), if !closing => {
                closing = true;
                tracing::debug!("idle HTTP/2 connection; closing");
                conn.as_mut().inner().graceful_shutdown();
            }
        }
    }
}

/// Resolves once no call has started or been in flight for `after` (checked every `after`,
/// so an idle connection closes between one and two `after`s).
async fn idle(calls: InFlight, after: Duration) {
    let mut seen = calls.started();
    loop {
        tokio::time::sleep(after).await;
        let now = calls.started();
        if now == seen && calls.in_flight() == 0 {
            return;
        }
        seen = now;
    }
}

/// Whether the client opened with HTTP/2's connection preface (`PRI * HTTP/2.0`); looks
/// without consuming, so hyper still reads it.
async fn speaks_h2(tcp: &TcpStream) -> bool {
    let mut head = [0u8; 3];
    matches!(tcp.peek(&mut head).await, Ok(3)) && head == *b"PRI"
}

/// A failed `accept`: a connection that died in the backlog is the client's problem; anything
/// else (out of file descriptors, say) is ours and is retried after a pause.
pub(crate) async fn accept_failed(e: &std::io::Error, shutdown: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::debug!(error = %e, "connection failed before it was accepted");
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in a second");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = shutdown.cancelled() => {}
    }
}
