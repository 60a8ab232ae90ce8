//! Org users: create, change, deactivate, roles — each bounded by the caller's own
//! permissions (`domain::grants`).

use platform::events::enqueue;
use platform::grpc::{Caller, timestamp};
use rpc::user::v1 as pb;

use crate::domain::UserStatus;
use crate::domain::{grants, validate};
use crate::error::UserError;
use crate::events::user_event;
use crate::store::{self, users};
use ids::{TenantId, UserId};

use super::{Tx, UserApi, scoped_tenant};

pub(crate) fn user_pb(u: users::UserRow) -> pb::User {
    pb::User {
        status: match u.status {
            UserStatus::Active => pb::UserStatus::Active,
            UserStatus::Deactivated => pb::UserStatus::Deactivated,
        } as i32,
        id: u.id.into(),
        tenant_id: u.tenant_id.into(),
        email: u.email,
        display_name: u.display_name,
        roles: u.roles,
        external_id: u.external_id.unwrap_or_default(),
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

fn email_taken(e: sqlx::Error) -> UserError {
    if store::is_unique_violation(&e) {
        UserError::Conflict("a user with this email already exists in the tenant".into())
    } else {
        e.into()
    }
}

impl UserApi {
    pub(super) async fn create_user_inner(
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
                .bind(&tenant)
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
                id: &id,
                tenant_id: &tenant,
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

    pub(super) async fn get_user_row(
        &self,
        c: &Caller,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<users::UserRow, UserError> {
        let tenant = scoped_tenant(c, tenant_id)?;
        let id = UserId::parse(user_id).map_err(|_| UserError::NotFound("user"))?;
        let mut conn = self.pool.acquire().await?;
        users::get(&mut conn, &tenant, &id)
            .await?
            .ok_or(UserError::NotFound("user"))
    }

    /// Begins a transaction holding the user's row lock; NOT_FOUND if the tenant has no such
    /// user, PERMISSION_DENIED if the user holds roles the caller could not have granted.
    pub(super) async fn lock_user(
        &self,
        c: &Caller,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<Tx, UserError> {
        let mut tx = self.pool.begin().await?;
        if !users::lock(&mut tx, tenant, id).await? {
            return Err(UserError::NotFound("user"));
        }
        let current = users::get(&mut tx, tenant, id)
            .await?
            .ok_or(UserError::NotFound("user"))?;
        grants::manage(c.permissions(), &current.roles)?;
        Ok(tx)
    }

    /// Reads the user back, emits `event` (if any) through the outbox in the same
    /// transaction, commits and answers the user.
    pub(super) async fn commit_user(
        &self,
        mut tx: Tx,
        tenant: &TenantId,
        id: &UserId,
        event: Option<&str>,
    ) -> Result<pb::User, UserError> {
        let row = users::get(&mut tx, tenant, id)
            .await?
            .ok_or(UserError::NotFound("user"))?;
        if let Some(kind) = event {
            enqueue(&mut tx, &user_event(kind, &row)).await?;
        }
        tx.commit().await?;
        Ok(user_pb(row))
    }

    pub(super) async fn update_user_inner(
        &self,
        c: &Caller,
        r: pb::UpdateUserRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let id = UserId::parse(&r.user_id).map_err(|_| UserError::NotFound("user"))?;
        let email = r.email.as_deref().map(validate::email).transpose()?;
        let display_name = r
            .display_name
            .as_deref()
            .map(|n| validate::name("display_name", n))
            .transpose()?;
        let mut tx = self.lock_user(c, &tenant, &id).await?;
        users::update(
            &mut tx,
            &tenant,
            &id,
            email.as_deref(),
            display_name.as_deref(),
        )
        .await
        .map_err(email_taken)?;
        self.commit_user(tx, &tenant, &id, Some("user.updated"))
            .await
    }

    pub(super) async fn deactivate_user_inner(
        &self,
        c: &Caller,
        r: pb::GetUserRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let id = UserId::parse(&r.user_id).map_err(|_| UserError::NotFound("user"))?;
        let mut tx = self.lock_user(c, &tenant, &id).await?;
        let changed = users::deactivate(&mut tx, &tenant, &id).await?;
        // Deactivating twice is fine, and reported once.
        let event = changed.then_some("user.deactivated");
        self.commit_user(tx, &tenant, &id, event).await
    }

    pub(super) async fn set_roles_inner(
        &self,
        c: &Caller,
        r: pb::SetUserRolesRequest,
    ) -> Result<pb::User, UserError> {
        let tenant = scoped_tenant(c, &r.tenant_id)?;
        let id = UserId::parse(&r.user_id).map_err(|_| UserError::NotFound("user"))?;
        let roles = validate::roles(&r.roles)?;
        grants::roles(c.permissions(), &roles)?;
        let mut tx = self.lock_user(c, &tenant, &id).await?;
        users::set_roles(&mut tx, &tenant, &id, &roles).await?;
        self.commit_user(tx, &tenant, &id, Some("user.updated"))
            .await
    }
}
