//! Tenants, users and roles: `/v1/tenants/...`, forwarded to the user service (API keys and
//! SCIM tokens: `credentials.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::common::v1::PageRequest;
use rpc::user::v1 as pb;
use rpc::user::v1::user_service_client::UserServiceClient;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, time};
use crate::auth::Identity;

pub(super) type Users = UserServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

pub fn router(users: Users) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(reactivate_tenant))
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, update_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(set_roles))
        .routes(routes!(list_roles))
        .with_state(users)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    id: String,
    name: String,
    slug: String,
    status: &'static str,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<pb::Tenant> for Tenant {
    fn from(t: pb::Tenant) -> Self {
        Tenant {
            status: match t.status() {
                pb::TenantStatus::Suspended => "suspended",
                _ => "active",
            },
            id: t.id,
            name: t.name,
            slug: t.slug,
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    id: String,
    tenant_id: String,
    email: String,
    display_name: String,
    status: &'static str,
    roles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<pb::User> for User {
    fn from(u: pb::User) -> Self {
        User {
            status: match u.status() {
                pb::UserStatus::Deactivated => "deactivated",
                _ => "active",
            },
            id: u.id,
            tenant_id: u.tenant_id,
            email: u.email,
            display_name: u.display_name,
            roles: u.roles,
            external_id: (!u.external_id.is_empty()).then_some(u.external_id),
            created_at: time(u.created_at),
            updated_at: time(u.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    email: Option<String>,
    status: Option<String>,
}

impl PageQuery {
    pub(super) fn page(&self) -> Result<Option<PageRequest>> {
        let limit = self.limit.unwrap_or(0);
        if limit > 100 {
            return Err(Problem::bad_request("limit must be from 1 to 100")
                .with_field("limit", "at most 100"));
        }
        Ok(Some(PageRequest {
            limit,
            cursor: self.cursor.clone().unwrap_or_default(),
        }))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    name: String,
    slug: String,
    #[serde(default)]
    owner_email: Option<String>,
}

/// Create a tenant (platform_admin), optionally with its first owner.
#[utoipa::path(post, path = "/v1/tenants", tag = "identity", request_body = CreateTenant, responses((status = 201, body = Tenant), BodyErrors), security(("bearer" = [])))]
async fn create_tenant(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>)> {
    let t = users
        .create_tenant(call(
            &id,
            pb::CreateTenantRequest {
                name: body.name,
                slug: body.slug,
                owner_email: body.owner_email.unwrap_or_default(),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok((StatusCode::CREATED, Json(t.into_inner().into())))
}

/// List tenants (platform_admin).
#[utoipa::path(get, path = "/v1/tenants", tag = "identity", params(PageQuery), responses((status = 200, body = List<Tenant>), Errors), security(("bearer" = [])))]
async fn list_tenants(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<List<Tenant>>> {
    let r = users
        .list_tenants(call(&id, pb::ListTenantsRequest { page: q.page()? }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.tenants.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

/// Get a tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), responses((status = 200, body = Tenant), Errors), security(("bearer" = [])))]
async fn get_tenant(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<Tenant>> {
    id.check_tenant(&tenant_id)?;
    let t = users
        .get_tenant(call(&id, pb::GetTenantRequest { tenant_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(t.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    name: Option<String>,
}

/// Rename a tenant.
#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), request_body = UpdateTenant, responses((status = 200, body = Tenant), BodyErrors), security(("bearer" = [])))]
async fn update_tenant(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<Json<Tenant>> {
    id.check_tenant(&tenant_id)?;
    let t = users
        .update_tenant(call(
            &id,
            pb::UpdateTenantRequest {
                tenant_id,
                name: body.name,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(t.into_inner().into()))
}

async fn set_tenant_status(
    users: &mut Users,
    id: &Identity,
    tenant_id: String,
    status: pb::TenantStatus,
) -> Result<Json<Tenant>> {
    id.check_tenant(&tenant_id)?;
    let t = users
        .set_tenant_status(call(
            id,
            pb::SetTenantStatusRequest {
                tenant_id,
                status: status as i32,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(t.into_inner().into()))
}

/// Suspend a tenant: its API keys stop working.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/suspend", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), responses((status = 200, body = Tenant), BodyErrors), security(("bearer" = [])))]
async fn suspend_tenant(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<Tenant>> {
    set_tenant_status(&mut users, &id, tenant_id, pb::TenantStatus::Suspended).await
}

/// Reactivate a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/reactivate", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), responses((status = 200, body = Tenant), BodyErrors), security(("bearer" = [])))]
async fn reactivate_tenant(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<Tenant>> {
    set_tenant_status(&mut users, &id, tenant_id, pb::TenantStatus::Active).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Create an org user (e-mail unique per tenant, case-insensitive).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/users", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), request_body = CreateUser, responses((status = 201, body = User), BodyErrors), security(("bearer" = [])))]
async fn create_user(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>)> {
    id.check_tenant(&tenant_id)?;
    let u = users
        .create_user(call(
            &id,
            pb::CreateUserRequest {
                tenant_id,
                email: body.email,
                display_name: body.display_name,
                roles: body.roles,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok((StatusCode::CREATED, Json(u.into_inner().into())))
}

/// List users, filtered by e-mail or status.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/users", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), PageQuery), responses((status = 200, body = List<User>), Errors), security(("bearer" = [])))]
async fn list_users(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<List<User>>> {
    id.check_tenant(&tenant_id)?;
    let status = match q.status.as_deref() {
        None => pb::UserStatus::Unspecified,
        Some("active") => pb::UserStatus::Active,
        Some("deactivated") => pb::UserStatus::Deactivated,
        Some(_) => {
            return Err(Problem::bad_request("status must be active or deactivated")
                .with_field("status", "must be active or deactivated"));
        }
    };
    let r = users
        .list_users(call(
            &id,
            pb::ListUsersRequest {
                tenant_id,
                page: q.page()?,
                email: q.email.clone(),
                status: status as i32,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.users.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

/// Get a user.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/users/{user_id}", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("user_id" = String, Path, description = "user id, e.g. usr_…")), responses((status = 200, body = User), Errors), security(("bearer" = [])))]
async fn get_user(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, user_id)): Path<(String, String)>,
) -> Result<Json<User>> {
    id.check_tenant(&tenant_id)?;
    let u = users
        .get_user(call(&id, pb::GetUserRequest { tenant_id, user_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(u.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    email: Option<String>,
    display_name: Option<String>,
}

/// Change a user's e-mail or display name.
#[utoipa::path(patch, path = "/v1/tenants/{tenant_id}/users/{user_id}", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("user_id" = String, Path, description = "user id, e.g. usr_…")), request_body = UpdateUser, responses((status = 200, body = User), BodyErrors), security(("bearer" = [])))]
async fn update_user(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<User>> {
    id.check_tenant(&tenant_id)?;
    let u = users
        .update_user(call(
            &id,
            pb::UpdateUserRequest {
                tenant_id,
                user_id,
                email: body.email,
                display_name: body.display_name,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(u.into_inner().into()))
}

/// Deactivate a user (idempotent).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/users/{user_id}/deactivate", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("user_id" = String, Path, description = "user id, e.g. usr_…")), responses((status = 200, body = User), BodyErrors), security(("bearer" = [])))]
async fn deactivate_user(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, user_id)): Path<(String, String)>,
) -> Result<Json<User>> {
    id.check_tenant(&tenant_id)?;
    let u = users
        .deactivate_user(call(&id, pb::GetUserRequest { tenant_id, user_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(u.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoles {
    roles: Vec<String>,
}

/// Replace a user's roles.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/users/{user_id}/roles", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("user_id" = String, Path, description = "user id, e.g. usr_…")), request_body = SetRoles, responses((status = 200, body = User), BodyErrors), security(("bearer" = [])))]
async fn set_roles(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetRoles>,
) -> Result<Json<User>> {
    id.check_tenant(&tenant_id)?;
    let u = users
        .set_user_roles(call(
            &id,
            pb::SetUserRolesRequest {
                tenant_id,
                user_id,
                roles: body.roles,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(u.into_inner().into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Role {
    name: String,
    permissions: Vec<String>,
}

/// The roles and the permissions each grants.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/roles", tag = "identity", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), responses((status = 200, body = List<Role>), Errors), security(("bearer" = [])))]
async fn list_roles(
    State(mut users): State<Users>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<List<Role>>> {
    id.check_tenant(&tenant_id)?;
    let r = users
        .list_roles(call(&id, pb::ListRolesRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    let data = r
        .roles
        .into_iter()
        .map(|r| Role {
            name: r.name,
            permissions: r.permissions,
        })
        .collect();
    Ok(Json(List::new(data, None)))
}
