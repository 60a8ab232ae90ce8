//! Postgres access for the user service, one module per aggregate. Every tenant-scoped query
//! takes the tenant id and filters by it: isolation is in the SQL, not only in the callers.

pub mod api_keys;
pub mod groups;
pub mod scim_tokens;
pub mod tenant_cache;
pub mod tenants;
pub mod users;

use base64::Engine;

/// Opaque cursors: the last id of the previous page, base64url-encoded.
pub fn encode_cursor(last_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_id)
}

/// `None` for a cursor we did not issue.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() <= 64 && !s.chars().any(char::is_control))
}

/// Page size: 1..=100, default 20.
pub fn page_limit(limit: u32) -> i64 {
    match limit {
        0 => 20,
        n => i64::from(n.min(100)),
    }
}

/// Postgres unique_violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}
