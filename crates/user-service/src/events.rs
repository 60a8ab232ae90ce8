//! The user service's events for the outbox, shared by the gRPC API and SCIM (neither imports
//! the other); payloads are the `event-types` contracts.

use event_types::{TenantCreated, TenantStatusChanged, UserChanged, data};
use platform::events::CloudEvent;

use crate::store::{tenants, users};

pub(crate) const SOURCE: &str = "/services/user";

/// A `user.*` event.
pub(crate) fn user_event(kind: &str, u: &users::UserRow) -> CloudEvent {
    let payload = UserChanged {
        tenant_id: u.tenant_id.clone(),
        user_id: u.id.clone(),
        email: u.email.clone(),
        status: u.status.to_string(),
        roles: u.roles.clone(),
    };
    CloudEvent::new(SOURCE, kind, data(&payload))
        .with_tenant(u.tenant_id.as_str())
        .with_subject(u.id.as_str())
}

/// `tenant.created`.
pub(crate) fn tenant_created(t: &tenants::TenantRow) -> CloudEvent {
    let payload = TenantCreated {
        tenant_id: t.id.clone(),
        name: t.name.clone(),
        slug: t.slug.clone(),
    };
    CloudEvent::new(SOURCE, "tenant.created", data(&payload))
        .with_tenant(t.id.as_str())
        .with_subject(t.id.as_str())
}

/// `tenant.suspended` or `tenant.reactivated`.
pub(crate) fn tenant_status(kind: &str, t: &tenants::TenantRow) -> CloudEvent {
    let payload = TenantStatusChanged {
        tenant_id: t.id.clone(),
    };
    CloudEvent::new(SOURCE, kind, data(&payload)).with_tenant(t.id.as_str())
}
