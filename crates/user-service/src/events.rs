//! The user service's events: `user.*` and `tenant.*` payloads for the outbox, shared by the
//! gRPC API and SCIM (neither imports the other).

use platform::events::CloudEvent;

use crate::store::users;

pub(crate) const SOURCE: &str = "/services/user";

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
