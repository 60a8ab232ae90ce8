//! `/scim/v2/...`: SCIM 2.0 for identity providers (Okta, Entra ID), forwarded as raw HTTP to
//! the user service, which authenticates the tenant's SCIM token and answers in SCIM's own
//! error format. Not in the OpenAPI document: SCIM describes itself (ServiceProviderConfig,
//! Schemas, ResourceTypes).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use platform::grpc::Channel;
use rpc::user::v1::ScimRequest;
use rpc::user::v1::user_service_client::UserServiceClient;

use super::error::from_status;

/// Request headers SCIM needs; everything else stays at the edge.
const FORWARDED: &[&str] = &["authorization", "content-type", "if-match", "if-none-match"];

/// `public_url`: `PUBLIC_URL` as (scheme, authority). The user service builds `meta.location`
/// from the `host` and `x-forwarded-proto` sent here: `PUBLIC_URL`'s when set; otherwise the
/// request's Host over plain http (development). A client's own `X-Forwarded-Proto` is never
/// trusted.
pub fn router(
    users: UserServiceClient<Channel>,
    max_body_bytes: usize,
    public_url: Option<(String, String)>,
) -> Router {
    let handler = move |State(mut users): State<UserServiceClient<Channel>>, req: Request| async move {
        let (parts, body) = req.into_parts();
        let body: Bytes = match axum::body::to_bytes(body, max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return scim_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                );
            }
        };
        let path = parts
            .uri
            .path()
            .strip_prefix("/scim/v2")
            .unwrap_or("")
            .to_string();
        let mut headers: std::collections::HashMap<String, String> = FORWARDED
            .iter()
            .filter_map(|h| {
                parts
                    .headers
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (h.to_string(), v.to_string()))
            })
            .collect();
        let (proto, host) = match &public_url {
            Some((scheme, authority)) => (scheme.clone(), authority.clone()),
            None => (
                "http".to_string(),
                parts
                    .headers
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("localhost")
                    .to_string(),
            ),
        };
        headers.insert("x-forwarded-proto".into(), proto);
        headers.insert("host".into(), host);
        let call = users
            .scim(ScimRequest {
                tenant_id: String::new(),
                method: parts.method.to_string(),
                path,
                query: parts.uri.query().unwrap_or("").to_string(),
                body: body.to_vec(),
                headers,
            })
            .await;
        match call {
            Ok(r) => {
                let r = r.into_inner();
                let status = u16::try_from(r.status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let mut resp = Response::builder().status(status);
                for (k, v) in &r.headers {
                    if let (Ok(k), Ok(v)) =
                        (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
                    {
                        resp = resp.header(k, v);
                    }
                }
                resp.body(Body::from(r.body)).unwrap_or_else(|_| {
                    scim_error(StatusCode::BAD_GATEWAY, "bad upstream response")
                })
            }
            Err(s) => from_status(s).into_response(),
        }
    };
    Router::new()
        .route("/scim/v2/{*rest}", any(handler))
        .with_state(users)
}

fn scim_error(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    (
        status,
        [("content-type", "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

/// The edge's problem responses (401, 404, 413, 429, …) on SCIM paths, as SCIM Errors: same
/// status and headers (`Retry-After` stays), the problem's detail as the error's.
pub(super) async fn as_scim_error(resp: Response) -> Response {
    let is_problem = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    if !is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let problem: serde_json::Value = axum::body::to_bytes(body, 64 << 10)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let detail = problem["detail"]
        .as_str()
        .or(problem["title"].as_str())
        .unwrap_or("request refused");
    let error = scim_error(parts.status, detail);
    parts.headers.remove("content-type");
    parts.headers.remove("content-length");
    let (error_parts, error_body) = error.into_parts();
    parts.headers.extend(error_parts.headers);
    Response::from_parts(parts, error_body)
}
