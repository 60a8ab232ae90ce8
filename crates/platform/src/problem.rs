//! RFC 9457 `application/problem+json` error bodies.
//!
//! Every HTTP error this platform answers has this shape, with a stable `type` URI and `code`
//! clients can match on. Internal details are logged, never sent: a [`Problem`] built from an
//! internal error carries only a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Base of every problem `type` URI.
pub const TYPE_BASE: &str = "https://docs.saas-platform.dev/problems/";

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer-ish path of the field, e.g. `records[3].quantity`.
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem: boxed, so `Result<T, Problem>` stays small on the happy path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemDetails>);

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;
    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

/// The fields of an RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Stable machine-readable code (the last segment of `type`).
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem with the given status and stable code; the title is the status' reason phrase.
    pub fn new(status: StatusCode, code: &str) -> Self {
        Problem(Box::new(ProblemDetails {
            type_uri: format!("{TYPE_BASE}{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            code: code.to_string(),
            errors: Vec::new(),
            request_id: None,
        }))
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.0.title = title.into();
        self
    }

    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.0.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.0.instance = Some(instance.into());
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request").with_detail(detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found").with_detail(format!("{what} not found"))
    }

    /// For errors whose details must stay inside: log them, send this.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal")
            .with_detail("an internal error occurred; it has been logged")
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable").with_detail(detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The media type of problem bodies.
pub const CONTENT_TYPE: &str = "application/problem+json";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| {
            br#"{"type":"about:blank","title":"Internal Server Error","status":500,"code":"internal"}"#
                .to_vec()
        });
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        resp
    }
}

/// Answers unknown routes with a problem instead of an empty 404.
pub async fn not_found_fallback(uri: axum::http::Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "route_not_found")
        .with_detail(format!("no route for {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_per_rfc9457() {
        let p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .with_detail("2 fields are invalid")
            .with_field("email", "must contain @");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], format!("{TYPE_BASE}validation_failed"));
        assert_eq!(v["status"], 422);
        assert_eq!(v["title"], "Unprocessable Entity");
        assert_eq!(v["errors"][0]["field"], "email");
        assert!(v.get("instance").is_none());
    }

    #[tokio::test]
    async fn response_has_problem_content_type() {
        let resp = Problem::not_found("tenant").into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }
}
