//! A tenant's credentials: API keys (`/v1/tenants/{tenant_id}/api_keys`) and SCIM tokens
//! (`/v1/tenants/{tenant_id}/scim_tokens`), forwarded to the user service, which bounds what a
//! key may carry by its creator's permissions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use platform::Problem;
use rpc::user::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::identity::{PageQuery, Users};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, time};
use crate::auth::Identity;

type Result<T> = std::result::Result<T, Problem>;

pub fn router(users: Users) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
        .routes(routes!(create_scim_token))
        .routes(routes!(revoke_scim_token))
        .with_state(users)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    id: String,
    tenant_id: String,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    created_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
    /// Present only in the response that created the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<pb::ApiKey> for ApiKey {
    fn from(k: pb::ApiKey) -> Self {
        ApiKey {
            id: k.id,
            tenant_id: k.tenant_id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_at: time(k.created_at),
            revoked_at: time(k.revoked_at),
            last_used_at: time(k.last_used_at),
            secret: None,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    name: String,
    scopes: Vec<String>,
}

/// Create an API key; the secret is in this response only.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/api_keys", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), request_body = CreateApiKey, responses((status = 201, body = ApiKey), BodyErrors), security(("bearer" = [])))]
async fn create_api_key(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, Json<ApiKey>)> {
    id.check_tenant(&tenant_id)?;
    let r = users
        .create_api_key(call(
            &id,
            pb::CreateApiKeyRequest {
                tenant_id,
                name: body.name,
                scopes: body.scopes,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    let mut key: ApiKey = r.key.unwrap_or_default().into();
    key.secret = Some(r.secret);
    Ok((StatusCode::CREATED, Json(key)))
}

/// List API keys (never their secrets).
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/api_keys", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), PageQuery), responses((status = 200, body = List<ApiKey>), Errors), security(("bearer" = [])))]
async fn list_api_keys(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<List<ApiKey>>> {
    id.check_tenant(&tenant_id)?;
    let r = users
        .list_api_keys(call(
            &id,
            pb::ListApiKeysRequest {
                tenant_id,
                page: q.page()?,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.keys.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/api_keys/{key_id}", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("key_id" = String, Path, description = "API key id, e.g. key_…")), responses((status = 200, body = ApiKey), Errors), security(("bearer" = [])))]
async fn revoke_api_key(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, key_id)): Path<(String, String)>,
) -> Result<Json<ApiKey>> {
    id.check_tenant(&tenant_id)?;
    let k = users
        .revoke_api_key(call(&id, pb::RevokeApiKeyRequest { tenant_id, key_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(k.into_inner().into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScimToken {
    id: String,
    /// The bearer token for the identity provider; shown only here.
    secret: String,
    /// Where to point the identity provider.
    scim_base_path: &'static str,
}

/// Create a SCIM bearer token for this tenant's identity provider (shown once).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/scim_tokens", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id")), responses((status = 201, body = ScimToken), BodyErrors), security(("bearer" = [])))]
async fn create_scim_token(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<(StatusCode, Json<ScimToken>)> {
    id.check_tenant(&tenant_id)?;
    let r = users
        .create_scim_token(call(&id, pb::CreateScimTokenRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(ScimToken {
            id: r.token_id,
            secret: r.secret,
            scim_base_path: "/scim/v2",
        }),
    ))
}

/// Revoke a SCIM token.
#[utoipa::path(delete, path = "/v1/tenants/{tenant_id}/scim_tokens/{token_id}", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id"), ("token_id" = String, Path, description = "SCIM token id, e.g. sct_…")), responses((status = 204, description = "revoked"), Errors), security(("bearer" = [])))]
async fn revoke_scim_token(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, token_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    id.check_tenant(&tenant_id)?;
    users
        .revoke_scim_token(call(
            &id,
            pb::RevokeScimTokenRequest {
                tenant_id,
                token_id,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(StatusCode::NO_CONTENT)
}
