//! SCIM 2.0 (RFC 7643/7644) domain logic: filters, the User resource, PATCH, errors. No I/O.

pub mod filter;
pub mod group;
pub mod projection;
pub mod user;

use serde_json::{Value, json};

/// A SCIM error response (RFC 7644 §3.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    pub fn invalid_syntax(d: impl Into<String>) -> Self {
        Self::new(400, Some("invalidSyntax"), d)
    }
    pub fn invalid_value(d: impl Into<String>) -> Self {
        Self::new(400, Some("invalidValue"), d)
    }
    pub fn invalid_filter(d: impl Into<String>) -> Self {
        Self::new(400, Some("invalidFilter"), d)
    }
    pub fn invalid_path(d: impl Into<String>) -> Self {
        Self::new(400, Some("invalidPath"), d)
    }
    pub fn no_target(d: impl Into<String>) -> Self {
        Self::new(400, Some("noTarget"), d)
    }
    pub fn mutability(d: impl Into<String>) -> Self {
        Self::new(400, Some("mutability"), d)
    }
    pub fn uniqueness(d: impl Into<String>) -> Self {
        Self::new(409, Some("uniqueness"), d)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, None, "a valid SCIM bearer token is required")
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(404, None, format!("{what} not found"))
    }
    pub fn precondition() -> Self {
        Self::new(412, None, "the resource changed since the ETag in If-Match")
    }
    pub fn not_implemented(d: impl Into<String>) -> Self {
        Self::new(501, None, d)
    }
    pub fn method(d: impl Into<String>) -> Self {
        Self::new(405, None, d)
    }
    pub fn internal() -> Self {
        Self::new(500, None, "internal error")
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}
