//! Pure rules of the identity domain: states, validation, grants, secrets. No I/O. Ids are
//! the shared `ids` crate's.

pub mod grants;
pub mod scim;
pub mod secrets;
pub mod validate;

ids::text_enum! {
    /// A tenant's state. A suspended tenant's callers may read and nothing else.
    pub enum TenantStatus { Active = "active", Suspended = "suspended" }
}

ids::text_enum! {
    /// A user's state. Deactivated users keep their record (and audit trail) but cannot act.
    pub enum UserStatus { Active = "active", Deactivated = "deactivated" }
}
