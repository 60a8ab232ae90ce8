//! Postgres access, one module per aggregate. Tenant-scoped queries take the tenant id and
//! filter by it.

pub mod copy_binary;
pub mod group_commit;
pub mod periods;
pub mod plans;
pub mod seats;
pub mod subscriptions;
pub mod usage;
pub mod usage_copy;

/// Postgres unique_violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}
