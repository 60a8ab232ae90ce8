//! Tenants: create (with their owner), suspend and reactivate.

use platform::events::enqueue;
use platform::grpc::{Caller, timestamp};
use rpc::user::v1 as pb;

use crate::domain::{TenantStatus, validate};
use crate::error::UserError;
use crate::events::user_event;
use crate::store::{self, tenants, users};
use ids::{TenantId, UserId};

use super::UserApi;

pub(crate) fn tenant_pb(t: &tenants::TenantRow) -> pb::Tenant {
    pb::Tenant {
        status: match t.status {
            TenantStatus::Active => pb::TenantStatus::Active,
            TenantStatus::Suspended => pb::TenantStatus::Suspended,
        } as i32,
        id: t.id.to_string(),
        name: t.name.clone(),
        slug: t.slug.clone(),
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
    }
}

impl UserApi {
    pub(super) async fn create_tenant_inner(
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
        let tenant = tenants::insert(&mut tx, &id, &name, &slug)
            .await
            .map_err(|e| {
                if store::is_unique_violation(&e) {
                    UserError::Conflict(format!("slug {slug:?} is taken"))
                } else {
                    e.into()
                }
            })?;
        enqueue(&mut tx, &crate::events::tenant_created(&tenant)).await?;
        if let Some(email) = owner_email {
            let uid = UserId::generate();
            users::insert(
                &mut tx,
                users::NewUser {
                    id: &uid,
                    tenant_id: &tenant.id,
                    email: &email,
                    display_name: "",
                    roles: &["owner".to_string()],
                },
            )
            .await?;
            let row = users::get(&mut tx, &tenant.id, &uid)
                .await?
                .ok_or(UserError::NotFound("user"))?;
            enqueue(&mut tx, &user_event("user.created", &row)).await?;
        }
        tx.commit().await?;
        Ok(tenant_pb(&tenant))
    }

    pub(super) async fn set_tenant_status_inner(
        &self,
        c: &Caller,
        r: pb::SetTenantStatusRequest,
    ) -> Result<pb::Tenant, UserError> {
        c.require(authz::Role::PlatformAdmin)?;
        let id = TenantId::parse(&r.tenant_id).map_err(|_| UserError::NotFound("tenant"))?;
        let status = match pb::TenantStatus::try_from(r.status) {
            Ok(pb::TenantStatus::Active) => TenantStatus::Active,
            Ok(pb::TenantStatus::Suspended) => TenantStatus::Suspended,
            _ => {
                return Err(UserError::Invalid {
                    field: "status",
                    reason: "must be active or suspended".into(),
                });
            }
        };
        let mut tx = self.pool.begin().await?;
        let t = tenants::set_status(&mut tx, &id, status)
            .await?
            .ok_or(UserError::NotFound("tenant"))?;
        let kind = if status == TenantStatus::Active {
            "tenant.reactivated"
        } else {
            "tenant.suspended"
        };
        enqueue(&mut tx, &crate::events::tenant_status(kind, &t)).await?;
        tx.commit().await?;
        self.tenants.forget(t.id.as_str());
        Ok(tenant_pb(&t))
    }
}
