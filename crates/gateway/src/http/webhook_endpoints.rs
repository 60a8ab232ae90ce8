//! A tenant's webhook endpoints, `/v1/tenants/{tenant_id}/webhook_endpoints`: where the
//! notification service sends the tenant's events, signed per Standard Webhooks. The signing
//! secret (`whsec_…`) is in the answer to a creation or rotation only.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use platform::Problem;
use rpc::notification::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, from_status};
use super::notifications::{Notifications, TENANT};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, time};
use crate::auth::Identity;

type Result<T> = std::result::Result<T, Problem>;

const ENDPOINT: &str = "webhook endpoint id, e.g. ep_…";

pub fn router(n: Notifications) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .with_state(n)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    id: String,
    tenant_id: String,
    url: String,
    description: String,
    /// Event types or prefixes (`invoice.*`); empty: every event.
    event_types: Vec<String>,
    enabled: bool,
    /// gone (it answered 410), failing (it failed for days) or manual.
    #[serde(skip_serializing_if = "String::is_empty")]
    disabled_reason: String,
    /// Since when every delivery has failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    failing_since: Option<String>,
    created_at: Option<String>,
    /// Until when the previous secret signs beside the current one.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_expires_at: Option<String>,
}

impl From<pb::WebhookEndpoint> for WebhookEndpoint {
    fn from(e: pb::WebhookEndpoint) -> Self {
        WebhookEndpoint {
            id: e.id,
            tenant_id: e.tenant_id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: time(e.failing_since),
            created_at: time(e.created_at),
            previous_secret_expires_at: time(e.previous_secret_expires_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: WebhookEndpoint,
    /// `whsec_…`: verify deliveries with it. Shown this once.
    secret: String,
}

impl From<pb::WebhookEndpointWithSecret> for EndpointWithSecret {
    fn from(e: pb::WebhookEndpointWithSecret) -> Self {
        EndpointWithSecret {
            endpoint: e.endpoint.unwrap_or_default().into(),
            secret: e.secret,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// An https URL on a public address.
    url: String,
    /// Event types or prefixes (`invoice.*`); empty or absent: every event.
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    description: String,
}

/// Add a webhook endpoint; the answer carries its signing secret, shown once.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/webhook_endpoints", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT)), request_body = CreateEndpoint, responses((status = 200, body = EndpointWithSecret), BodyErrors), security(("bearer" = [])))]
async fn create_endpoint(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> Result<Json<EndpointWithSecret>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::CreateWebhookEndpointRequest {
        tenant_id,
        url: body.url,
        event_types: body.event_types,
        description: body.description,
    };
    let r = n
        .create_webhook_endpoint(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// The tenant's webhook endpoints.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/webhook_endpoints", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT)), responses((status = 200, body = List<WebhookEndpoint>), Errors), security(("bearer" = [])))]
async fn list_endpoints(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<List<WebhookEndpoint>>> {
    id.check_tenant(&tenant_id)?;
    let r = n
        .list_webhook_endpoints(call(&id, pb::TenantRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.endpoints.into_iter().map(Into::into).collect(),
        None,
    )))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("endpoint_id" = String, Path, description = ENDPOINT)), responses((status = 200, body = WebhookEndpoint), Errors), security(("bearer" = [])))]
async fn get_endpoint(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<WebhookEndpoint>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::WebhookEndpointRef {
        tenant_id,
        endpoint_id,
    };
    let r = n
        .get_webhook_endpoint(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    url: Option<String>,
    /// Replaces the filters; `[]`: every event.
    event_types: Option<Vec<String>>,
    description: Option<String>,
    /// `true` enables a disabled endpoint (its failure record starts afresh); `false`
    /// disables it.
    enabled: Option<bool>,
}

/// Change a webhook endpoint's URL, filters or description, or enable or disable it.
#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("endpoint_id" = String, Path, description = ENDPOINT)), request_body = UpdateEndpoint, responses((status = 200, body = WebhookEndpoint), BodyErrors), security(("bearer" = [])))]
async fn update_endpoint(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, endpoint_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> Result<Json<WebhookEndpoint>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::UpdateWebhookEndpointRequest {
        tenant_id,
        endpoint_id,
        url: body.url,
        set_event_types: body.event_types.is_some(),
        event_types: body.event_types.unwrap_or_default(),
        description: body.description,
        enabled: body.enabled,
    };
    let r = n
        .update_webhook_endpoint(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// Delete a webhook endpoint; what was pending to it fails.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("endpoint_id" = String, Path, description = ENDPOINT)), responses((status = 200, body = WebhookEndpoint), Errors), security(("bearer" = [])))]
async fn delete_endpoint(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<WebhookEndpoint>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::WebhookEndpointRef {
        tenant_id,
        endpoint_id,
    };
    let r = n
        .delete_webhook_endpoint(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// A new signing secret, shown once; the previous one keeps signing beside it for
/// `WEBHOOK_SECRET_OVERLAP` (both signatures are in `webhook-signature`).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/webhook_endpoints/{endpoint_id}/rotate_secret", tag = "notifications", params(("tenant_id" = String, Path, description = TENANT), ("endpoint_id" = String, Path, description = ENDPOINT)), responses((status = 200, body = EndpointWithSecret), BodyErrors), security(("bearer" = [])))]
async fn rotate_secret(
    State(mut n): State<Notifications>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, endpoint_id)): Path<(String, String)>,
) -> Result<Json<EndpointWithSecret>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::WebhookEndpointRef {
        tenant_id,
        endpoint_id,
    };
    let r = n
        .rotate_webhook_secret(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}
