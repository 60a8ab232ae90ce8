//! The two directions of a call's body: the request's pumped onto its h2 stream, the
//! response's read back as an `http_body::Body` for tonic.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame};

/// Sends a request body on its stream. The last chunk seen is held until the body says
/// whether more follows, so a unary call goes out as one DATA frame that ends the stream;
/// every chunk after the first waits for room in the stream (so a large body waits for the
/// peer's window instead of piling up in memory).
pub(super) async fn pump(mut body: tonic::body::Body, mut stream: h2::SendStream<Bytes>) {
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
    pub(super) fn new(recv: h2::RecvStream) -> Self {
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
