//! The OpenAPI 3.1 document, generated from the route annotations (utoipa) and served at
//! `/openapi.json`. Routes are registered through `utoipa_axum::routes!`, so a route cannot
//! exist without its spec entry; a test checks the spec against the permission table.

use std::collections::BTreeMap;

use axum::Json;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The shape of every error body (RFC 9457 problem details), for the spec.
#[derive(utoipa::ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// URI of the problem type, e.g. `https://docs.saas-platform.dev/problems/not_found`.
    r#type: String,
    title: String,
    status: u16,
    detail: Option<String>,
    /// Stable machine-readable code, e.g. `validation_failed`.
    code: String,
    /// The fields that failed validation.
    errors: Option<Vec<FieldErrorDoc>>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FieldErrorDoc {
    field: String,
    message: String,
}

/// Every error the gateway may answer, with what it means. Operations list the subset that
/// applies through [`Errors`], [`BodyErrors`] or [`CallbackErrors`], so the document states
/// each error once and cannot drift from what the code answers.
const ERRORS: &[(u16, &str)] = &[
    (
        400,
        "malformed input: a path segment, query parameter, JSON body or Idempotency-Key that cannot be read (control characters, over-long values, bad syntax)",
    ),
    (401, "not authenticated (WWW-Authenticate says why)"),
    (
        403,
        "missing permission, a grant beyond the caller's own permissions, or a write by a suspended tenant",
    ),
    (404, "not found, or another tenant's"),
    (
        409,
        "conflicts with the current state, or a request with this Idempotency-Key is in progress or was done with a response too large to replay",
    ),
    (413, "the body is over the route's limit"),
    (415, "the body is not JSON (Content-Type: application/json)"),
    (
        422,
        "a field is invalid (`errors[].field` names it), or the Idempotency-Key was used with another body",
    ),
    (
        429,
        "rate limited, or too many failed authentications from this address (Retry-After says when to retry)",
    ),
    (500, "an unexpected error (logged with the request id)"),
    (501, "not implemented yet"),
    (502, "a service answered unexpectedly"),
    (503, "a service is unavailable or busy; retry shortly"),
    (504, "a service did not answer in time"),
];

fn error_responses(codes: &[u16]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    ERRORS
        .iter()
        .filter(|(code, _)| codes.contains(code))
        .map(|(code, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ProblemDoc::name())))
                        .build(),
                )
                .build();
            (code.to_string(), RefOr::T(response))
        })
        .collect()
}

/// The errors of an authenticated operation without a body.
pub struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504])
    }
}

/// The errors of an authenticated operation with a JSON body.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[
            400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504,
        ])
    }
}

/// The errors of a public PSP callback (its body goes to the payment service as it came).
pub struct CallbackErrors;

impl IntoResponses for CallbackErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[400, 401, 413, 422, 429, 500, 502, 503, 504])
    }
}

/// The errors of a public read (`/v1/status`).
pub struct PublicErrors;

impl IntoResponses for PublicErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        error_responses(&[400, 429, 500])
    }
}

/// Title, version, servers and the bearer scheme on top of the generated paths.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "saas-platform".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Public REST API of the platform. Errors are RFC 9457 problem+json. POSTs accept an \
         Idempotency-Key header. Authenticate with `Authorization: Bearer <JWT or sk_ API key>`."
            .into(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = Vec::new();
    ProblemDoc::schemas(&mut schemas);
    schemas.push((ProblemDoc::name().into(), ProblemDoc::schema()));
    components.schemas.extend(schemas);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc
}

/// `GET /openapi.json`
pub fn route(doc: OpenApi) -> axum::Router {
    let json = serde_json::to_value(&doc).unwrap_or_default();
    axum::Router::new().route("/openapi.json", get(move || async move { Json(json) }))
}
