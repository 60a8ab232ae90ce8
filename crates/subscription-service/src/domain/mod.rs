//! Pure rules: plan definitions, subscription states, usage record validation and the
//! entitlement decision. No I/O here.

pub mod entitlement;
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
pub fn is_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.".contains(c))
}
