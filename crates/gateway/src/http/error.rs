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
        Code::ResourceExhausted => {
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited").with_detail(msg)
        }
        Code::Unimplemented => {
            Problem::new(StatusCode::NOT_IMPLEMENTED, "not_implemented").with_detail(msg)
        }
        Code::DeadlineExceeded => Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            .with_detail("the service did not answer in time"),
        Code::Unavailable => Problem::unavailable("the service is unavailable; retry shortly"),
        _ => {
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
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
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
