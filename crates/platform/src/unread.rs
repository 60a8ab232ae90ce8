//! HTTP/1 keep-alive and request bodies a handler never read.
//!
//! When a service answers before reading a request's body (a 401, a 429, a 415 decided from
//! the headers), hyper drains what is already buffered and, if the rest has not arrived yet,
//! closes the connection after the response — but the response head is already written
//! without `Connection: close`. A keep-alive client then sends its next request on a
//! connection that is being closed and sees "server disconnected without a response" (seen
//! once in 1,500 requests by a client that writes headers and body separately). So the body
//! of every HTTP/1 request that has one is watched, and a response to a request whose body
//! was not read to its end says `Connection: close`: the client opens a new connection
//! instead of losing a request. Requests without a body (GETs) are not touched.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

/// Set once the body has been read to its end.
#[derive(Clone, Default)]
pub struct ReadToEnd(Arc<AtomicBool>);

impl ReadToEnd {
    fn done(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

struct Watched {
    inner: Body,
    end: ReadToEnd,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.end.0.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether the request announces a body (a non-zero length, or chunks).
fn has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Watches the body of `req` if it has one.
pub fn watch(req: Request<Body>) -> (Request<Body>, Option<ReadToEnd>) {
    if !has_body(&req) {
        return (req, None);
    }
    let end = ReadToEnd::default();
    let watched = end.clone();
    let req = req.map(|inner| {
        Body::new(Watched {
            inner,
            end: watched,
        })
    });
    (req, Some(end))
}

/// Adds `Connection: close` to `resp` when the watched body was left unread.
pub fn close_if_unread<B>(resp: &mut Response<B>, end: Option<ReadToEnd>) {
    if end.is_some_and(|e| !e.done()) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(len: &str) -> Request<Body> {
        Request::post("/x")
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from("hello"))
            .unwrap()
    }

    #[tokio::test]
    async fn only_unread_bodies_close_the_connection() {
        let (req, end) = watch(post("5"));
        let mut resp = Response::new(());
        drop(req);
        close_if_unread(&mut resp, end);
        assert_eq!(resp.headers()[header::CONNECTION], "close");

        let (req, end) = watch(post("5"));
        let bytes = axum::body::to_bytes(req.into_body(), 100).await.unwrap();
        assert_eq!(&bytes[..], b"hello");
        let mut resp = Response::new(());
        close_if_unread(&mut resp, end);
        assert!(resp.headers().get(header::CONNECTION).is_none());

        let (_, end) = watch(Request::get("/x").body(Body::empty()).unwrap());
        assert!(end.is_none(), "no body, nothing watched");
        let (_, end) = watch(post("0"));
        assert!(end.is_none());
    }
}
