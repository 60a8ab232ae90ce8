//! Pure rules: plan definitions, plan phases, subscription states, usage record validation and
//! the entitlement decision. No I/O here.

pub mod entitlement;
pub mod phases;
pub mod plan;
pub mod status;
pub mod usage;

/// A rule a request broke, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Invalid {
        Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<pricing::PricingError> for Invalid {
    fn from(e: pricing::PricingError) -> Self {
        match e {
            pricing::PricingError::Invalid { field, message } => Invalid::new(field, message),
            other => Invalid::new("prices", other.to_string()),
        }
    }
}

/// Ids of the things clients name (plan ids, metrics, feature keys): lower-case ASCII
/// letters, digits, `_`, `-`, `.`, starting with a letter or digit, at most 64 bytes.
pub use ids::is_key;

/// `value` as a key (see [`is_key`]), or the error naming `field`.
pub fn key(field: &'static str, value: &str) -> Result<(), Invalid> {
    if is_key(value) {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("{value:?}: lower-case letters, digits, _ - . (1 to 64)"),
        ))
    }
}

/// An optional user id: absent or empty is none; otherwise 1 to 64 printable ASCII bytes.
pub fn optional_user(user_id: Option<&str>) -> Result<Option<&str>, Invalid> {
    match user_id {
        None | Some("") => Ok(None),
        Some(u) if u.len() <= 64 && u.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(u)),
        Some(_) => Err(Invalid::new(
            "user_id",
            "up to 64 printable ASCII characters",
        )),
    }
}
