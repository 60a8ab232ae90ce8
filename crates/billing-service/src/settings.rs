//! Settings only the billing service reads, beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::config::{ConfigError, num_var};

/// Variables only the billing service reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "BILLING_CLOCK_SECS",
        "3600",
        "how often the billing clock starts a run for every period that began or ended since its last one (0: no clock; runs only by request)",
    ),
    (
        "BILLING_RUN_LEASE_SECS",
        "15",
        "how long a running run's (or shard's) heartbeat may be silent before any billing process takes it over and runs it again from scratch (its process died or stalled)",
    ),
    (
        "BILLING_RUN_SHARDS",
        "1",
        "into how many ranges of tenants a run is cut; billing replicas lease them, so up to this many share one run (each shard reads its usage apart: with one replica, 1 is fastest)",
    ),
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: the clock is off.
    pub clock: Option<Duration>,
    /// A run's lease: see `BILLING_RUN_LEASE_SECS`.
    pub lease: Duration,
    /// See `BILLING_RUN_SHARDS`.
    pub shards: usize,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| lookup(k).filter(|v| !v.trim().is_empty());
        let secs = num_var(&get, "BILLING_CLOCK_SECS", 3600, 0, 31 * 86_400)?;
        let lease = num_var(&get, "BILLING_RUN_LEASE_SECS", 15, 2, 3600)?;
        let shards = num_var(&get, "BILLING_RUN_SHARDS", 1, 1, 1024)?;
        Ok(Settings {
            clock: (secs > 0).then(|| Duration::from_secs(secs.into())),
            lease: Duration::from_secs(lease.into()),
            shards: shards as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_hourly_by_default_and_zero_turns_it_off() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.clock, Some(Duration::from_secs(3600)));
        let off =
            Settings::from_lookup(|k| (k == "BILLING_CLOCK_SECS").then(|| "0".into())).unwrap();
        assert_eq!(off.clock, None);
        let e = Settings::from_lookup(|k| (k == "BILLING_CLOCK_SECS").then(|| "soon".into()))
            .unwrap_err();
        assert!(e.to_string().contains("BILLING_CLOCK_SECS"), "{e}");
    }

    #[test]
    fn a_lease_shorter_than_its_heartbeats_is_refused() {
        assert_eq!(
            Settings::from_lookup(|_| None).unwrap().lease,
            Duration::from_secs(15)
        );
        let e = Settings::from_lookup(|k| (k == "BILLING_RUN_LEASE_SECS").then(|| "1".into()))
            .unwrap_err();
        assert!(e.to_string().contains("BILLING_RUN_LEASE_SECS"), "{e}");
    }
}
