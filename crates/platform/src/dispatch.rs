//! One port, two protocols: requests with a gRPC content type go to tonic's routes, the rest
//! to axum's.

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::response::Response;

/// One port, two protocols: gRPC (by content type) to tonic's routes, the rest to axum's.
#[derive(Clone)]
pub(crate) struct Dispatch {
    pub http: Router,
    pub grpc: Router,
}

impl tower::Service<Request> for Dispatch {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if is_grpc(&req) {
            self.grpc.call(req)
        } else {
            self.http.call(req)
        }
    }
}

pub(crate) fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
