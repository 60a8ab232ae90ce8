//! Settings only the user service reads, beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::config::{ConfigError, num_var};

/// Variables only the user service reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[(
    "TENANT_CACHE_SECS",
    "30",
    "longest a tenant read is served from memory; a write on any replica invalidates it at once (0: no cache)",
)];

#[derive(Debug, Clone)]
pub struct Settings {
    pub tenant_cache_ttl: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| lookup(k).filter(|v| !v.trim().is_empty());
        Ok(Settings {
            tenant_cache_ttl: Duration::from_secs(
                num_var(&get, "TENANT_CACHE_SECS", 30, 0, 3_600)?.into(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.tenant_cache_ttl, Duration::from_secs(30));
        let off =
            Settings::from_lookup(|k| (k == "TENANT_CACHE_SECS").then(|| "0".into())).unwrap();
        assert!(off.tenant_cache_ttl.is_zero());
        let e = Settings::from_lookup(|k| (k == "TENANT_CACHE_SECS").then(|| "soon".into()))
            .unwrap_err();
        assert!(e.to_string().contains("TENANT_CACHE_SECS"), "{e}");
    }
}
