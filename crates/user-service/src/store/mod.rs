//! Postgres access for the user service, one module per aggregate. Every tenant-scoped query
//! takes the tenant id and filters by it: isolation is in the SQL, not only in the callers.

pub mod api_keys;
pub mod groups;
pub mod scim_filter;
pub mod scim_tokens;
pub mod tenant_cache;
pub mod tenants;
pub mod users;

/// Postgres unique_violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}
