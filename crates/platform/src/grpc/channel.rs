//! A gRPC client channel on the `h2` crate directly.
//!
//! Why not tonic's `Channel`: it hands every call to a `tower::Buffer` worker task, which
//! hands it to hyper's client dispatcher task, which opens the h2 stream — two task hops and
//! their queues per call, a tenth of the gateway's work on a proxied GET. Here the calling
//! task opens the stream itself; only the connection's I/O runs in a task of its own.
//!
//! What it keeps from tonic's channel: it connects on first use and again after the
//! connection is lost (one connect at a time), with TCP_NODELAY; it pings every 30 s and drops
//! a connection whose ping goes unanswered for 20 s; every call is bounded by the channel's
//! timeout or the call's own `grpc-timeout`, whichever is shorter. Failures are gRPC statuses:
//! no connection is UNAVAILABLE, no answer in time DEADLINE_EXCEEDED. Plain-text HTTP/2 only:
//! east-west traffic stays inside the deployment's network (DESIGN.md §2).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri};
use http_body::Body;
use tonic::Status;

use crate::batched::{Batched, InFlight};

mod body;
mod peers;

pub use body::RecvBody;
use body::pump;
use peers::Peers;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Flow-control windows as hyper's client sets them: a stream may have 2 MiB in flight, the
/// connection 5 MiB (h2's 64 KiB default would throttle streamed usage to a trickle).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// A lazily connected HTTP/2 channel to one peer, or to the replicas of a service taken in
/// turn; cheap to clone, all clones share the connections. Use it as the transport of
/// tonic's generated clients.
#[derive(Clone)]
pub struct Channel {
    peers: Arc<Peers>,
    /// Which peer the next call starts with (round robin).
    next: Arc<AtomicUsize>,
    timeout: Duration,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peers", &self.peers.describe())
            .finish()
    }
}

/// Why a URL cannot name a peer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPeer(String);

struct Shared {
    authority: Authority,
    /// The live connection, if any.
    current: Mutex<Option<Conn>>,
    /// Held while connecting, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
    /// When the last connection attempt failed, if the one after it has not succeeded.
    failed_at: Mutex<Option<std::time::Instant>>,
}

/// How long a peer that could not be reached is tried after the others.
const COOL_DOWN: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    /// Calls in flight, so the connection's task batches writes only when there are several.
    calls: InFlight,
    /// Cleared when the connection's task ends.
    alive: Arc<AtomicBool>,
}

impl Channel {
    /// A channel to `url` (`http://host:port`, or several comma-separated: a service's
    /// replicas; or `dns://host:port`: every address the name resolves to, see [`peers`])
    /// that connects on first use; `timeout` bounds every call. Calls go to the replicas in
    /// turn, each over its own connection; one that cannot be reached is passed over for the
    /// next (nothing was sent to it, so that is safe for any call).
    pub fn lazy(url: &str, timeout: Duration) -> Result<Channel, InvalidPeer> {
        Ok(Channel {
            peers: Arc::new(Peers::parse(url)?),
            next: Arc::new(AtomicUsize::new(0)),
            timeout,
        })
    }
}

impl Shared {
    fn lazy(url: &str) -> Result<Shared, InvalidPeer> {
        let uri: Uri = url
            .parse()
            .map_err(|e| InvalidPeer(format!("{url:?} is not a URL: {e}")))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(InvalidPeer(format!(
                "{url:?}: east-west gRPC is plain http://host:port"
            )));
        }
        let authority = uri
            .authority()
            .filter(|a| a.port_u16().is_some())
            .cloned()
            .ok_or_else(|| InvalidPeer(format!("{url:?} names no host:port")))?;
        Ok(Shared::new(authority))
    }

    fn new(authority: Authority) -> Shared {
        Shared {
            authority,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_at: Mutex::new(None),
        }
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Response<RecvBody>, Status>> + Send>>;

impl tower::Service<Request<tonic::body::Body>> for Channel {
    type Response = Response<RecvBody>;
    type Error = Status;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        // Capacity is awaited per call (h2's concurrent-stream limit), not here.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> CallFuture {
        let peers = self.peers.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let timeout = self.timeout;
        Box::pin(async move {
            let limit = grpc_timeout(req.headers()).map_or(timeout, |t| t.min(timeout));
            let names = peers.describe();
            let call = async move {
                let peers = peers.current().await?;
                let mut unreachable = None;
                let mut order: Vec<&Arc<Shared>> = (0..peers.len())
                    .map(|i| &peers[(start + i) % peers.len()])
                    .collect();
                // A peer that could not be reached a moment ago goes last (a stopped pod's
                // address may swallow connection attempts until they time out).
                order.sort_by_key(|p| p.cooling());
                for peer in order {
                    match peer.connection().await {
                        Ok(conn) => return peer.send(conn, req).await,
                        Err(e) => unreachable = Some(e),
                    }
                }
                Err(unreachable.expect("a channel has at least one peer"))
            };
            match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer from {names} within {limit:?}"
                ))),
            }
        })
    }
}

impl Shared {
    async fn send(
        &self,
        conn: Conn,
        req: Request<tonic::body::Body>,
    ) -> Result<Response<RecvBody>, Status> {
        let _call = conn.calls.enter();
        let (mut parts, body) = req.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(uri).map_err(|e| Status::internal(e.to_string()))?;
        let mut send = conn
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| self.lost(&conn, e))?;
        let end = body.is_end_stream();
        let (response, stream) = send
            .send_request(Request::from_parts(parts, ()), end)
            .map_err(|e| self.lost(&conn, e))?;
        let response = if end {
            response.await
        } else {
            // The request body goes out while the answer is awaited (a streaming call may be
            // answered first); a body that outlives the answer keeps going in a task.
            let mut pump = Box::pin(pump(body, stream));
            let mut response = std::pin::pin!(response);
            tokio::select! {
                biased;
                () = &mut pump => response.await,
                r = &mut response => {
                    tokio::spawn(pump);
                    r
                }
            }
        };
        match response {
            Ok(resp) => Ok(resp.map(RecvBody::new)),
            Err(e) => Err(self.lost(&conn, e)),
        }
    }

    /// The live connection, connecting if there is none.
    async fn connection(&self) -> Result<Conn, Status> {
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.live() {
            return Ok(c);
        }
        let made = self.connect().await;
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) =
            made.is_err().then(std::time::Instant::now);
        let conn = made?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Whether the last attempt to reach this peer failed less than [`COOL_DOWN`] ago.
    fn cooling(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < COOL_DOWN)
    }

    fn live(&self) -> Option<Conn> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| c.alive.load(Ordering::Acquire))
            .cloned()
    }

    async fn connect(&self) -> Result<Conn, Status> {
        let peer = self.authority.as_str();
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            Status::unavailable(format!("{what} {peer}: {e}"))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(peer))
            .await
            .map_err(|e| unavailable("connecting to", &e))?
            .map_err(|e| unavailable("connecting to", &e))?;
        // Small calls must not wait for Nagle's algorithm against delayed ACKs.
        tcp.set_nodelay(true)
            .map_err(|e| unavailable("configuring the connection to", &e))?;
        let (send, mut conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| unavailable("HTTP/2 handshake with", &e))?;
        let alive = Arc::new(AtomicBool::new(true));
        let mut ping = conn
            .ping_pong()
            .expect("ping_pong is taken once, right after the handshake");
        let flag = alive.clone();
        let peer = peer.to_string();
        let calls = InFlight::default();
        let counted = calls.clone();
        tokio::spawn(async move {
            let keepalive = async {
                loop {
                    tokio::time::sleep(KEEPALIVE_EVERY).await;
                    let pong =
                        tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.ping(h2::Ping::opaque()))
                            .await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return;
                    }
                }
            };
            tokio::select! {
                r = Batched::new(conn, counted) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "gRPC connection closed");
                },
                () = keepalive => tracing::warn!(%peer, "gRPC keep-alive unanswered; dropping the connection"),
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Conn { send, calls, alive })
    }

    /// A call's h2 error as a status; a connection-level error also retires the connection,
    /// so the next call makes a new one.
    fn lost(&self, conn: &Conn, e: h2::Error) -> Status {
        if e.is_io() || e.is_go_away() || e.reason().is_none() {
            conn.alive.store(false, Ordering::Release);
            return Status::unavailable(format!("connection to {} lost: {e}", self.authority));
        }
        Status::from_error(Box::new(e))
    }
}

/// A call's own deadline from its `grpc-timeout` header (`<digits><unit>`, gRPC over HTTP/2).
fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit_and_reject_junk() {
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(t("500m"), Some(Duration::from_millis(500)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(t("100"), None, "no unit");
        assert_eq!(t("m"), None, "no digits");
        assert_eq!(t("123456789S"), None, "more than 8 digits");
        assert_eq!(t("-1S"), None);
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn only_plain_http_peers_with_a_port() {
        let ok = Channel::lazy("http://127.0.0.1:50051", Duration::from_secs(1));
        assert!(ok.is_ok());
        for bad in ["https://svc:443", "http://svc", "svc:50051", "not a url"] {
            assert!(
                Channel::lazy(bad, Duration::from_secs(1)).is_err(),
                "{bad} accepted"
            );
        }
    }
}
