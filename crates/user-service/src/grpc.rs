//! `saas.user.v1.UserService`: transport only. Requests are validated into domain values,
//! stored through `store`, and converted back to wire messages here.

use platform::events::{CloudEvent, enqueue};
use platform::grpc::{Caller, timestamp};
use platform::paging;
use rpc::common::v1::{PageRequest, PageResponse};
use rpc::user::v1 as pb;
use rpc::user::v1::user_service_server::UserService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::domain::ids::{ApiKeyId, ScimTokenId, TenantId, UserId};
use crate::domain::{grants, secrets, validate};
use crate::error::UserError;
use crate::store::tenant_cache::TenantCache;
use crate::store::{self, api_keys, scim_tokens, tenants, users};

const SOURCE: &str = "/services/user";

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
    TenantId::parse(c.scope(tenant_id)?).ok_or(UserError::NotFound("tenant"))
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

fn tenant_pb(t: &tenants::TenantRow) -> pb::Tenant {
    pb::Tenant {
        status: match t.status.as_str() {
            "active" => pb::TenantStatus::Active,
            _ => pb::TenantStatus::Suspended,
        } as i32,
        id: t.id.clone(),
        name: t.name.clone(),
        slug: t.slug.clone(),
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
    }
}

fn user_pb(u: users::UserRow) -> pb::User {
    pb::User {
        status: match u.status.as_str() {
            "active" => pb::UserStatus::Active,
            _ => pb::UserStatus::Deactivated,
        } as i32,
        id: u.id,
        tenant_id: u.tenant_id,
        email: u.email,
        display_name: u.display_name,
        roles: u.roles,
        external_id: u.external_id.unwrap_or_default(),
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

fn key_pb(k: api_keys::ApiKeyRow) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id,
        tenant_id: k.tenant_id,
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes,
        created_at: Some(timestamp(k.created_at)),
        revoked_at: k.revoked_at.map(timestamp),
        last_used_at: k.last_used_at.map(timestamp),
    }
}

/// A `user.*` event for the outbox.
pub(crate) fn user_event(kind: &str, u: &users::UserRow) -> CloudEvent {
    CloudEvent::new(
        SOURCE,
        kind,
        serde_json::json!({
            "tenant_id": u.tenant_id,
            "user_id": u.id,
            "email": u.email,
            "status": u.status,
            "roles": u.roles,
        }),
    )
    .with_tenant(&u.tenant_id)
    .with_subject(&u.id)
}

fn email_taken(e: sqlx::Error) -> UserError {
    if store::is_unique_violation(&e) {
        UserError::Conflict("a user with this email already exists in the tenant".into())
    } else {
        e.into()
    }
}

impl UserApi {
    async fn create_tenant_inner(
        &self,
        c: &Caller,
        r: pb::CreateTenantRequest,
    ) -> Result<pb::Tenant, UserError> {
        c.require(authz::Role::PlatformAdmin)?;
        let name = validate::name("name", &r.name)?;
        let slug = validate::slug(&r.slug)?;
        let owner_email = if r.owner_email.trim().is_empty() {
            None
        } else {
            Some(validate::email(&r.owner_email)?)
        };
        let id = TenantId::generate();
        let mut tx = self.pool.begin().await?;
        let tenant = tenants::insert(&mut tx, id.as_str(), &name, &slug)
            .await
            .map_err(|e| {
                if store::is_unique_violation(&e) {
                    UserError::Conflict(format!("slug {slug:?} is taken"))
                } else {
                    e.into()
                }
            })?;
        enqueue(
            &mut tx,
            &CloudEvent::new(SOURCE, "tenant.created", serde_json::json!({"tenant_id": tenant.id, "name": tenant.name, "slug": tenant.slug}))
                .with_tenant(&tenant.id)
                .with_subject(&tenant.id),
        )
        .await?;
        if let Some(email) = owner_email {
            let uid = UserId::generate();
            users::insert(
                &mut tx,
                users::NewUser {
                    id: uid.as_str(),
                    tenant_id: &tenant.id,
                    email: &email,
                    display_name: "",
                    roles: &["owner".to_string()],
                },
            )
            .await?;
            let row = users::get(&mut tx, &tenant.id, uid.as_str())
                .await?
                .ok_or(UserError::NotFound("user"))?;
            enqueue(&mut tx, &user_event("user.created", &row)).await?;
        }
        tx.commit().await?;
        Ok(tenant_pb(&tenant))
    }

    async fn create_user_inner(
        &self,
        c: &Caller,
        r: pb::CreateUserRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let email = validate::email(&r.email)?;
        let display_name = if r.display_name.trim().is_empty() {
            String::new()
        } else {
            validate::name("display_name", &r.display_name)?
        };
        let roles = if r.roles.is_empty() {
            vec!["member".to_string()]
        } else {
            validate::roles(&r.roles)?
        };
        grants::roles(c.permissions(), &roles)?;
        let mut tx = self.pool.begin().await?;
        let t =
            sqlx::query_scalar::<_, String>("SELECT status FROM tenants WHERE id = $1 FOR SHARE")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(UserError::NotFound("tenant"))?;
        if t != "active" {
            return Err(UserError::Conflict("the tenant is suspended".into()));
        }
        let id = UserId::generate();
        users::insert(
            &mut tx,
            users::NewUser {
                id: id.as_str(),
                tenant_id: tenant.as_str(),
                email: &email,
                display_name: &display_name,
                roles: &roles,
            },
        )
        .await
        .map_err(email_taken)?;
        self.commit_user(tx, &tenant, &id, Some("user.created"))
            .await
    }

    async fn get_user_row(
        &self,
        c: &Caller,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<users::UserRow, UserError> {
        let tenant = scoped_tenant(c, tenant_id)?;
        let id = UserId::parse(user_id).ok_or(UserError::NotFound("user"))?;
        let mut conn = self.pool.acquire().await?;
        users::get(&mut conn, tenant.as_str(), id.as_str())
            .await?
            .ok_or(UserError::NotFound("user"))
    }

    /// Begins a transaction holding the user's row lock; NOT_FOUND if the tenant has no such
    /// user, PERMISSION_DENIED if the user holds roles the caller could not have granted.
    async fn lock_user(&self, c: &Caller, tenant: &TenantId, id: &UserId) -> Result<Tx, UserError> {
        let mut tx = self.pool.begin().await?;
        if !users::lock(&mut tx, tenant.as_str(), id.as_str()).await? {
            return Err(UserError::NotFound("user"));
        }
        let current = users::get(&mut tx, tenant.as_str(), id.as_str())
            .await?
            .ok_or(UserError::NotFound("user"))?;
        grants::manage(c.permissions(), &current.roles)?;
        Ok(tx)
    }

    /// Reads the user back, emits `event` (if any) through the outbox in the same
    /// transaction, commits and answers the user.
    async fn commit_user(
        &self,
        mut tx: Tx,
        tenant: &TenantId,
        id: &UserId,
        event: Option<&str>,
    ) -> Result<pb::User, UserError> {
        let row = users::get(&mut tx, tenant.as_str(), id.as_str())
            .await?
            .ok_or(UserError::NotFound("user"))?;
        if let Some(kind) = event {
            enqueue(&mut tx, &user_event(kind, &row)).await?;
        }
        tx.commit().await?;
        Ok(user_pb(row))
    }

    async fn update_user_inner(
        &self,
        c: &Caller,
        r: pb::UpdateUserRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let id = UserId::parse(&r.user_id).ok_or(UserError::NotFound("user"))?;
        let email = r.email.as_deref().map(validate::email).transpose()?;
        let display_name = r
            .display_name
            .as_deref()
            .map(|n| validate::name("display_name", n))
            .transpose()?;
        let mut tx = self.lock_user(c, &tenant, &id).await?;
        users::update(
            &mut tx,
            tenant.as_str(),
            id.as_str(),
            email.as_deref(),
            display_name.as_deref(),
        )
        .await
        .map_err(email_taken)?;
        self.commit_user(tx, &tenant, &id, Some("user.updated"))
            .await
    }

    async fn deactivate_user_inner(
        &self,
        c: &Caller,
        r: pb::GetUserRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let id = UserId::parse(&r.user_id).ok_or(UserError::NotFound("user"))?;
        let mut tx = self.lock_user(c, &tenant, &id).await?;
        let changed = users::deactivate(&mut tx, tenant.as_str(), id.as_str()).await?;
        // Deactivating twice is fine, and reported once.
        let event = changed.then_some("user.deactivated");
        self.commit_user(tx, &tenant, &id, event).await
    }

    async fn set_roles_inner(
        &self,
        c: &Caller,
        r: pb::SetUserRolesRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let id = UserId::parse(&r.user_id).ok_or(UserError::NotFound("user"))?;
        let roles = validate::roles(&r.roles)?;
        grants::roles(c.permissions(), &roles)?;
        let mut tx = self.lock_user(c, &tenant, &id).await?;
        users::set_roles(&mut tx, tenant.as_str(), id.as_str(), &roles).await?;
        self.commit_user(tx, &tenant, &id, Some("user.updated"))
            .await
    }

    async fn set_tenant_status_inner(
        &self,
        c: &Caller,
        r: pb::SetTenantStatusRequest,
    ) -> Result<pb::Tenant, UserError> {
        c.require(authz::Role::PlatformAdmin)?;
        let id = TenantId::parse(&r.tenant_id).ok_or(UserError::NotFound("tenant"))?;
        let status = match pb::TenantStatus::try_from(r.status) {
            Ok(pb::TenantStatus::Active) => "active",
            Ok(pb::TenantStatus::Suspended) => "suspended",
            _ => {
                return Err(UserError::Invalid {
                    field: "status",
                    reason: "must be active or suspended".into(),
                });
            }
        };
        let mut tx = self.pool.begin().await?;
        let t = tenants::set_status(&mut tx, id.as_str(), status)
            .await?
            .ok_or(UserError::NotFound("tenant"))?;
        let kind = if status == "active" {
            "tenant.reactivated"
        } else {
            "tenant.suspended"
        };
        enqueue(
            &mut tx,
            &CloudEvent::new(SOURCE, kind, serde_json::json!({"tenant_id": t.id}))
                .with_tenant(&t.id),
        )
        .await?;
        tx.commit().await?;
        self.tenants.forget(&t.id);
        Ok(tenant_pb(&t))
    }

    async fn create_api_key_inner(
        &self,
        c: &Caller,
        r: pb::CreateApiKeyRequest,
    ) -> Result<pb::CreateApiKeyResponse, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let name = validate::name("name", &r.name)?;
        let scopes = validate::scopes(&r.scopes)?;
        grants::scopes(c.permissions(), &scopes)?;
        if tenants::get(&self.pool, tenant.as_str()).await?.is_none() {
            return Err(UserError::NotFound("tenant"));
        }
        let secret = secrets::generate("sk_");
        let id = ApiKeyId::generate();
        let row = api_keys::insert(
            &self.pool,
            api_keys::NewKey {
                id: id.as_str(),
                tenant_id: tenant.as_str(),
                name: &name,
                prefix: &secrets::display_prefix(&secret),
                secret_hash: &secrets::hash(&secret),
                scopes: &scopes,
                created_by: &c.subject,
            },
        )
        .await?;
        Ok(pb::CreateApiKeyResponse {
            key: Some(key_pb(row)),
            secret,
        })
    }
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
            .get(&self.pool, id.as_str())
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
        let id = TenantId::parse(&r.tenant_id).ok_or(UserError::NotFound("tenant"))?;
        let t = match r.name {
            Some(n) => {
                let name = validate::name("name", &n).map_err(UserError::from)?;
                tenants::rename(&self.pool, id.as_str(), &name).await
            }
            None => tenants::get(&self.pool, id.as_str()).await,
        }
        .map_err(UserError::from)?
        .ok_or(UserError::NotFound("tenant"))?;
        self.tenants.forget(&t.id);
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
        let rows = tenants::list(&self.pool, after.as_deref(), limit)
            .await
            .map_err(UserError::from)?;
        let (rows, page) = page(rows, limit, |t| &t.id);
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
            Ok(pb::UserStatus::Active) => Some("active"),
            Ok(pb::UserStatus::Deactivated) => Some("deactivated"),
            _ => None,
        };
        let rows = users::list(
            &self.pool,
            tenant.as_str(),
            users::ListFilter {
                email: r.email.as_deref(),
                status,
            },
            after.as_deref(),
            limit,
        )
        .await
        .map_err(UserError::from)?;
        let (rows, page) = page(rows, limit, |u| &u.id);
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
        let rows = api_keys::list(&self.pool, tenant.as_str(), after.as_deref(), limit)
            .await
            .map_err(UserError::from)?;
        let (rows, page) = page(rows, limit, |k| &k.id);
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: rows.into_iter().map(key_pb).collect(),
            page: Some(page),
        }))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> Reply<pb::ApiKey> {
        let c = Caller::of(&req).map_err(UserError::from)?;
        let r = req.into_inner();
        let tenant = scoped_tenant(&c, &r.tenant_id)?;
        let id = ApiKeyId::parse(&r.key_id).ok_or(UserError::NotFound("api key"))?;
        let row = api_keys::revoke(&self.pool, tenant.as_str(), id.as_str())
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
            tenant_id: row.tenant_id,
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
        if tenants::get(&self.pool, tenant.as_str())
            .await
            .map_err(UserError::from)?
            .is_none()
        {
            return Err(UserError::NotFound("tenant").into());
        }
        let secret = secrets::generate("scim_");
        let id = ScimTokenId::generate();
        scim_tokens::insert(
            &self.pool,
            id.as_str(),
            tenant.as_str(),
            &secrets::hash(&secret),
        )
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
        let id = ScimTokenId::parse(&r.token_id).ok_or(UserError::NotFound("SCIM token"))?;
        if !scim_tokens::revoke(&self.pool, tenant.as_str(), id.as_str())
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
