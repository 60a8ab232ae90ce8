//! The OpenAPI 3.1 document, generated from the route annotations (utoipa) and served at
//! `/openapi.json`. Routes are registered through `utoipa_axum::routes!`, so a route cannot
//! exist without its spec entry; a test checks the spec against the permission table.

use axum::Json;
use axum::routing::get;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The shape of every error body (RFC 9457 problem details), for the spec.
#[derive(utoipa::ToSchema)]
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
