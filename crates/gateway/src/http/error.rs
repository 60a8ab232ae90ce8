//! Everything the gateway answers when something is wrong, in one place: gRPC status →
//! problem, and JSON/query extraction failures → problem naming what is wrong.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use platform::Problem;
use serde::de::DeserializeOwned;
use tonic::Code;

/// The one gRPC-status → HTTP mapping.
pub fn from_status(s: tonic::Status) -> Problem {
    let msg = s.message().to_string();
    match s.code() {
        Code::InvalidArgument => {
            let p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .with_detail(&msg);
            match s
                .metadata()
                .get(platform::grpc::FIELD_METADATA)
                .and_then(|v| v.to_str().ok())
            {
                Some(field) => {
                    let reason = msg
                        .strip_prefix(&format!("{field}: "))
                        .unwrap_or(&msg)
                        .to_string();
                    p.with_field(field, reason)
                }
                None => p,
            }
        }
        Code::NotFound => Problem::new(StatusCode::NOT_FOUND, "not_found").with_detail(msg),
        Code::AlreadyExists => Problem::new(StatusCode::CONFLICT, "conflict").with_detail(msg),
        Code::FailedPrecondition | Code::Aborted => {
            Problem::new(StatusCode::CONFLICT, "conflict").with_detail(msg)
        }
        Code::PermissionDenied => Problem::new(StatusCode::FORBIDDEN, "forbidden").with_detail(msg),
        Code::Unauthenticated => {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated").with_detail(msg)
        }
        // Never used by our services for quotas; tonic and h2 answer it when an upstream is
        // out of capacity (e.g. too many concurrent streams): come back shortly.
        Code::ResourceExhausted => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "upstream_busy")
            .with_detail("the service is busy; retry shortly"),
        // tonic's answer to a message over the peer's size limit.
        Code::OutOfRange => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
            .with_detail("the request is too large for the service; send less at once"),
        Code::Unimplemented => {
            Problem::new(StatusCode::NOT_IMPLEMENTED, "not_implemented").with_detail(msg)
        }
        Code::DeadlineExceeded => Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            .with_detail("the service did not answer in time"),
        Code::Unavailable | Code::Cancelled => {
            Problem::unavailable("the service is unavailable; retry shortly")
        }
        // A reply that is not a gRPC answer of ours (protocol error, wrong peer).
        Code::Unknown => {
            tracing::error!(message = %msg, "upstream answered with an unknown error");
            Problem::new(StatusCode::BAD_GATEWAY, "bad_gateway")
                .with_detail("the service answered unexpectedly")
        }
        Code::Internal | Code::DataLoss | Code::Ok => {
            tracing::error!(code = ?s.code(), message = %msg, "upstream error");
            Problem::internal()
        }
    }
}

/// `Json<T>` whose rejections are problems that say what is wrong with the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    .with_detail("send the body as JSON with Content-Type: application/json"),
            );
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            // Over the body limit, or the body could not be read.
            .map_err(|e| Problem::new(e.status(), "bad_body").with_detail(e.body_text()))?;
        // Hostile strings are refused before the body means anything (`input.rs`).
        super::input::check_json(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// `application/json` or `application/<something>+json`, parameters allowed.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn json_problem(r: JsonRejection) -> Problem {
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                .with_detail("send the body as JSON with Content-Type: application/json")
        }
        JsonRejection::JsonDataError(e) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .with_detail(e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => {
            Problem::new(StatusCode::BAD_REQUEST, "malformed_json").with_detail(e.body_text())
        }
        JsonRejection::BytesRejection(e) => {
            // Over the body limit, or the body could not be read.
            Problem::new(e.status(), "bad_body").with_detail(e.body_text())
        }
        other => Problem::new(other.status(), "bad_request").with_detail(other.body_text()),
    }
}

/// `Query<T>` whose rejections are problems.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(Problem::new(StatusCode::BAD_REQUEST, "bad_query").with_detail(e.body_text()))
            }
            Err(other) => {
                Err(Problem::new(other.status(), "bad_query").with_detail(other.body_text()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_internal_failures_are_500() {
        for code in [
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Unavailable,
            Code::Unauthenticated,
        ] {
            let p = from_status(tonic::Status::new(code, "x"));
            assert_ne!(p.status, 500, "{code:?}");
        }
        assert_eq!(
            from_status(tonic::Status::out_of_range("too big")).status,
            413
        );
        assert_eq!(
            from_status(tonic::Status::resource_exhausted("busy")).status,
            503
        );
        assert_eq!(from_status(tonic::Status::internal("x")).status, 500);
    }
}
