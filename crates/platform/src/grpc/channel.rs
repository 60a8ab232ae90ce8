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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, Uri};
use http_body::{Body, Frame};
use tonic::Status;

use crate::batched::{Batched, InFlight};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Flow-control windows as hyper's client sets them: a stream may have 2 MiB in flight, the
/// connection 5 MiB (h2's 64 KiB default would throttle streamed usage to a trickle).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// A lazily connected HTTP/2 channel to one peer; cheap to clone, all clones share the
/// connection. Use it as the transport of tonic's generated clients.
#[derive(Clone)]
pub struct Channel {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.shared.authority)
            .finish()
    }
}

/// Why a URL cannot name a peer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPeer(String);

struct Shared {
    authority: Authority,
    timeout: Duration,
    /// The live connection, if any.
    current: Mutex<Option<Conn>>,
    /// Held while connecting, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    /// Calls in flight, so the connection's task batches writes only when there are several.
    calls: InFlight,
    /// Cleared when the connection's task ends.
    alive: Arc<AtomicBool>,
}

impl Channel {
    /// A channel to `url` (`http://host:port`) that connects on first use; `timeout` bounds
    /// every call.
    pub fn lazy(url: &str, timeout: Duration) -> Result<Channel, InvalidPeer> {
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
        Ok(Channel {
            shared: Arc::new(Shared {
                authority,
                timeout,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
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
        let shared = self.shared.clone();
        Box::pin(async move {
            let limit =
                grpc_timeout(req.headers()).map_or(shared.timeout, |t| t.min(shared.timeout));
            match tokio::time::timeout(limit, shared.send(req)).await {
                Ok(result) => result,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no answer from {} within {limit:?}",
                    shared.authority
                ))),
            }
        })
    }
}

impl Shared {
    async fn send(&self, req: Request<tonic::body::Body>) -> Result<Response<RecvBody>, Status> {
        let conn = self.connection().await?;
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
        let conn = self.connect().await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
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

/// Sends a request body on its stream. The last chunk seen is held until the body says
/// whether more follows, so a unary call goes out as one DATA frame that ends the stream;
/// every chunk after the first waits for room in the stream (so a large body waits for the
/// peer's window instead of piling up in memory).
async fn pump(mut body: tonic::body::Body, mut stream: h2::SendStream<Bytes>) {
    let mut held: Option<Bytes> = None;
    let mut sent_any = false;
    loop {
        let polled =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more yet: what is held goes now.
                if let Some(data) = held.take()
                    && !send(&mut stream, data, &mut sent_any).await
                {
                    return;
                }
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        match frame {
            None => {
                let _ = stream.send_data(held.take().unwrap_or_default(), true);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if let Some(prev) = held.replace(data)
                        && !send(&mut stream, prev, &mut sent_any).await
                    {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        if let Some(prev) = held.take()
                            && !send(&mut stream, prev, &mut sent_any).await
                        {
                            return;
                        }
                        let _ = stream.send_trailers(trailers);
                        return;
                    }
                }
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "gRPC request body failed; resetting the stream");
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
}

/// Sends one chunk that does not end the stream, after the first waiting until the stream
/// has room; false when the stream or connection is gone (the response side reports it).
async fn send(stream: &mut h2::SendStream<Bytes>, data: Bytes, sent_any: &mut bool) -> bool {
    if *sent_any {
        stream.reserve_capacity(1);
        while stream.capacity() == 0 {
            match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return false,
            }
        }
    }
    *sent_any = true;
    stream.send_data(data, false).is_ok()
}

/// A response body read off its h2 stream, giving the peer window back as it is read.
pub struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
    done: bool,
}

impl RecvBody {
    fn new(recv: h2::RecvStream) -> Self {
        RecvBody {
            recv,
            data_done: false,
            done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => self.data_done = true,
            }
        }
        let trailers = ready!(self.recv.poll_trailers(cx));
        self.done = true;
        Poll::Ready(match trailers {
            Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.recv.is_end_stream()
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
