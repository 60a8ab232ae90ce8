//! Settings only the subscription service reads, beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::config::{ConfigError, num_var};

/// Variables only the subscription service reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "USAGE_GRACE_HOURS",
        "72",
        "usage records older than this are rejected (`too_old`)",
    ),
    (
        "ENTITLEMENT_CACHE_SECS",
        "60",
        "how long an entitlement answer is cached in Redis (changes invalidate it at once)",
    ),
    (
        "SUBSCRIPTION_TICK_SECS",
        "30",
        "how often trials, scheduled cancellations and period roll-overs are applied",
    ),
    (
        "USAGE_READ_PARTS",
        "2",
        "a billing run's read of the whole usage table: parallel scans (one Postgres connection and core each)",
    ),
    (
        "USAGE_WRITERS",
        "2",
        "usage ingestion: writers, taking batches in turn, that each store the batches queued meanwhile as one transaction (group commit)",
    ),
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub usage_grace: chrono::Duration,
    pub entitlement_ttl: Duration,
    pub tick: Duration,
    pub usage_read_parts: usize,
    pub usage_writers: usize,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| lookup(k).filter(|v| !v.trim().is_empty());
        Ok(Settings {
            usage_grace: chrono::Duration::hours(
                num_var(&get, "USAGE_GRACE_HOURS", 72, 1, 24 * 366)?.into(),
            ),
            entitlement_ttl: Duration::from_secs(
                num_var(&get, "ENTITLEMENT_CACHE_SECS", 60, 1, 86_400)?.into(),
            ),
            tick: Duration::from_secs(
                num_var(&get, "SUBSCRIPTION_TICK_SECS", 30, 1, 3_600)?.into(),
            ),
            usage_read_parts: num_var(&get, "USAGE_READ_PARTS", 2, 1, 64)? as usize,
            usage_writers: num_var(&get, "USAGE_WRITERS", 2, 1, 64)? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.usage_grace, chrono::Duration::hours(72));
        assert_eq!(s.entitlement_ttl, Duration::from_secs(60));
        let e =
            Settings::from_lookup(|k| (k == "USAGE_GRACE_HOURS").then(|| "0".into())).unwrap_err();
        assert_eq!(e.var, "USAGE_GRACE_HOURS");
        let e = Settings::from_lookup(|k| (k == "ENTITLEMENT_CACHE_SECS").then(|| "x".into()))
            .unwrap_err();
        assert_eq!(e.var, "ENTITLEMENT_CACHE_SECS");
    }
}
