//! `saas.user.v1.UserService`: transport only. Requests are validated into domain values,
//! stored through `store`, and converted back to wire messages here.

use platform::grpc::Caller;
use platform::paging;
use rpc::common::v1::{PageRequest, PageResponse};
use rpc::user::v1 as pb;
use rpc::user::v1::user_service_server::UserService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::domain::{UserStatus, grants, secrets, validate};
use crate::error::UserError;
use crate::store::tenant_cache::TenantCache;
use crate::store::{self, api_keys, scim_tokens};
use ids::{ApiKeyId, ScimTokenId, TenantId};

mod keys;
mod tenants;
mod users;

pub(crate) use keys::key_pb;
pub(crate) use tenants::tenant_pb;
pub(crate) use users::user_pb;

/// The gRPC API over the service's database.
#[derive(Debug, Clone)]
pub struct UserApi {
    pool: PgPool,
    tenants: TenantCache,
}

impl UserApi {
    pub fn new(pool: PgPool, tenants: TenantCache) -> Self {
        UserApi { pool, tenants }
    }
}

type Reply<T> = Result<Response<T>, Status>;
type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The caller's tenant as a parsed id, if the caller may act on it (`Caller::scope`); a
/// foreign or malformed id is NOT_FOUND.
fn scoped_tenant(c: &Caller, tenant_id: &str) -> Result<TenantId, UserError> {
    Ok(c.scope(tenant_id)?)
}

/// The page a list call asks for: the id to continue after, and the page size.
fn cursor(p: &Option<PageRequest>) -> Result<(Option<String>, i64), UserError> {
    let p = p.clone().unwrap_or_default();
    Ok((paging::after(&p.cursor)?, paging::limit(p.limit)))
}

fn page<T>(rows: Vec<T>, limit: i64, id: impl Fn(&T) -> &str) -> (Vec<T>, PageResponse) {
    let page = paging::page(rows, limit, |r| id(r).to_string());
    (
        page.rows,
        PageResponse {
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        },
    )
}

fn reply<T>(r: Result<T, UserError>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_tenant(&self, req: Request<pb::CreateTenantRequest>) -> Reply<pb::Tenant> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.create_tenant_inner(&c, req.into_inner()).await)
    }

    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Reply<pb::Tenant> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let id = scoped_tenant(&c, &req.get_ref().tenant_id)?;
        let t = self
            .tenants
            .get(&self.pool, &id)
            .await
            .map_err(UserError::from)?
            .ok_or(UserError::NotFound("tenant"))?;
        Ok(Response::new(tenant_pb(&t)))
    }

    async fn update_tenant(&self, req: Request<pb::UpdateTenantRequest>) -> Reply<pb::Tenant> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        c.require(authz::Role::PlatformAdmin)
            .map_err(UserError::from)?;
        let r = req.into_inner();
        let id = TenantId::parse(&r.tenant_id).map_err(|_| UserError::NotFound("tenant"))?;
        let t = match r.name {
            Some(n) => {
                let name = validate::name("name", &n).map_err(UserError::from)?;
                store::tenants::rename(&self.pool, &id, &name).await
            }
            None => store::tenants::get(&self.pool, &id).await,
        }
        .map_err(UserError::from)?
        .ok_or(UserError::NotFound("tenant"))?;
        self.tenants.forget(t.id.as_str());
        Ok(Response::new(tenant_pb(&t)))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Reply<pb::ListTenantsResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        c.require(authz::Role::PlatformAdmin)
            .map_err(UserError::from)?;
        let (after, limit) = cursor(&req.get_ref().page)?;
        let rows = store::tenants::list(&self.pool, after.as_deref(), limit)
            .await
            .map_err(UserError::from)?;
        let (rows, page) = page(rows, limit, |t| t.id.as_str());
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: rows.iter().map(tenant_pb).collect(),
            page: Some(page),
        }))
    }

    async fn set_tenant_status(
        &self,
        req: Request<pb::SetTenantStatusRequest>,
    ) -> Reply<pb::Tenant> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.set_tenant_status_inner(&c, req.into_inner()).await)
    }

    async fn create_user(&self, req: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.create_user_inner(&c, req.into_inner()).await)
    }

    async fn get_user(&self, req: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let r = req.get_ref();
        reply(
            self.get_user_row(&c, &r.tenant_id, &r.user_id)
                .await
                .map(user_pb),
        )
    }

    async fn update_user(&self, req: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.update_user_inner(&c, req.into_inner()).await)
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let r = req.into_inner();
        let tenant = scoped_tenant(&c, &r.tenant_id)?;
        let (after, limit) = cursor(&r.page)?;
        if let Some(email) = &r.email
            && (email.len() > 254 || email.chars().any(char::is_control))
        {
            return Err(UserError::Invalid {
                field: "email",
                reason: "not an e-mail address".into(),
            }
            .into());
        }
        let status = match pb::UserStatus::try_from(r.status) {
            Ok(pb::UserStatus::Active) => Some(UserStatus::Active),
            Ok(pb::UserStatus::Deactivated) => Some(UserStatus::Deactivated),
            _ => None,
        };
        let rows = store::users::list(
            &self.pool,
            &tenant,
            store::users::ListFilter {
                email: r.email.as_deref(),
                status,
            },
            after.as_deref(),
            limit,
        )
        .await
        .map_err(UserError::from)?;
        let (rows, page) = page(rows, limit, |u| u.id.as_str());
        Ok(Response::new(pb::ListUsersResponse {
            users: rows.into_iter().map(user_pb).collect(),
            page: Some(page),
        }))
    }

    async fn deactivate_user(&self, req: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.deactivate_user_inner(&c, req.into_inner()).await)
    }

    async fn list_roles(&self, req: Request<pb::ListRolesRequest>) -> Reply<pb::ListRolesResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        scoped_tenant(&c, &req.get_ref().tenant_id)?;
        let roles = authz::Role::ALL
            .into_iter()
            .filter(|r| *r != authz::Role::PlatformAdmin)
            .map(|r| pb::Role {
                name: r.as_str().to_string(),
                permissions: authz::Permission::ALL
                    .into_iter()
                    .filter(|p| r.grants(*p))
                    .map(|p| p.as_str().to_string())
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListRolesResponse { roles }))
    }

    async fn set_user_roles(&self, req: Request<pb::SetUserRolesRequest>) -> Reply<pb::User> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.set_roles_inner(&c, req.into_inner()).await)
    }

    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Reply<pb::CreateApiKeyResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        reply(self.create_api_key_inner(&c, req.into_inner()).await)
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Reply<pb::ListApiKeysResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let r = req.into_inner();
        let tenant = scoped_tenant(&c, &r.tenant_id)?;
        let (after, limit) = cursor(&r.page)?;
        let rows = api_keys::list(&self.pool, &tenant, after.as_deref(), limit)
            .await
            .map_err(UserError::from)?;
        let (rows, page) = page(rows, limit, |k| k.id.as_str());
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: rows.into_iter().map(key_pb).collect(),
            page: Some(page),
        }))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> Reply<pb::ApiKey> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let r = req.into_inner();
        let tenant = scoped_tenant(&c, &r.tenant_id)?;
        let id = ApiKeyId::parse(&r.key_id).map_err(|_| UserError::NotFound("api key"))?;
        let row = api_keys::revoke(&self.pool, &tenant, &id)
            .await
            .map_err(UserError::from)?
            .ok_or(UserError::NotFound("api key"))?;
        Ok(Response::new(key_pb(row)))
    }

    /// Called by the gateway before it knows who the caller is: no identity metadata needed.
    async fn verify_api_key(&self, req: Request<pb::VerifyApiKeyRequest>) -> Reply<pb::Principal> {
        let secret = &req.get_ref().secret;
        if !secret.starts_with("sk_") || secret.len() > 200 {
            return Err(UserError::NotFound("api key").into());
        }
        let row = api_keys::verify(&self.pool, &secrets::hash(secret))
            .await
            .map_err(UserError::from)?
            .ok_or(UserError::NotFound("api key"))?;
        Ok(Response::new(pb::Principal {
            tenant_id: row.tenant_id.into(),
            subject: format!("apikey:{}", row.id),
            roles: Vec::new(),
            scopes: row.scopes,
        }))
    }

    async fn create_scim_token(
        &self,
        req: Request<pb::CreateScimTokenRequest>,
    ) -> Reply<pb::CreateScimTokenResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let tenant = scoped_tenant(&c, &req.get_ref().tenant_id)?;
        grants::scim_token(c.permissions()).map_err(UserError::from)?;
        if store::tenants::get(&self.pool, &tenant)
            .await
            .map_err(UserError::from)?
            .is_none()
        {
            return Err(UserError::NotFound("tenant").into());
        }
        let secret = secrets::generate("scim_");
        let id = ScimTokenId::generate();
        scim_tokens::insert(&self.pool, &id, &tenant, &secrets::hash(&secret))
            .await
            .map_err(UserError::from)?;
        Ok(Response::new(pb::CreateScimTokenResponse {
            token_id: id.to_string(),
            secret,
        }))
    }

    async fn revoke_scim_token(
        &self,
        req: Request<pb::RevokeScimTokenRequest>,
    ) -> Reply<pb::RevokeScimTokenResponse> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let r = req.into_inner();
        let tenant = scoped_tenant(&c, &r.tenant_id)?;
        let id = ScimTokenId::parse(&r.token_id).map_err(|_| UserError::NotFound("SCIM token"))?;
        if !scim_tokens::revoke(&self.pool, &tenant, &id)
            .await
            .map_err(UserError::from)?
        {
            return Err(UserError::NotFound("SCIM token").into());
        }
        Ok(Response::new(pb::RevokeScimTokenResponse {}))
    }

    /// Authenticated by the SCIM token inside the request, not by gateway metadata.
    async fn scim(&self, req: Request<pb::ScimRequest>) -> Reply<pb::ScimResponse> {
        Ok(Response::new(
            crate::scim::handle(&self.pool, req.into_inner()).await,
        ))
    }
}
