//! Settings only the payment service reads, beside the shared `ServiceConfig`.

use std::net::SocketAddr;
use std::time::Duration;

use platform::Secret;
use platform::config::{ConfigError, num_var};

use crate::domain::dunning::Schedule;

/// Variables only the payment service reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "SANDBOX_PSP",
        "embedded",
        "the built-in sandbox PSP: embedded (served by this service), off, or the base URL of one running elsewhere",
    ),
    (
        "SANDBOX_PSP_ADDR",
        "127.0.0.1:7070",
        "where the embedded sandbox listens (its 3-D Secure pages are here)",
    ),
    (
        "SANDBOX_CALLBACK_URL",
        "http://127.0.0.1:8080/v1/webhooks/psp/stripe",
        "where the embedded sandbox sends its signed callbacks (the gateway)",
    ),
    (
        "SANDBOX_WEBHOOK_SECRET",
        "(random per start)",
        "the secret sandbox callbacks are signed with; set it only for a sandbox running elsewhere",
    ),
    (
        "STRIPE_API_KEY",
        "(unset: Stripe off)",
        "Stripe secret key (sk_live_… or sk_test_…)",
    ),
    (
        "STRIPE_API_BASE",
        "https://api.stripe.com",
        "Stripe's API base URL",
    ),
    (
        "STRIPE_WEBHOOK_SECRETS",
        "(unset)",
        "Stripe endpoint secrets (whsec_…), comma-separated; more than one while rolling a secret",
    ),
    ("ADYEN_API_KEY", "(unset: Adyen off)", "Adyen API key"),
    (
        "ADYEN_API_BASE",
        "https://checkout-test.adyen.com/v71",
        "Adyen Checkout API base URL (with its version)",
    ),
    (
        "ADYEN_MERCHANT_ACCOUNT",
        "(unset)",
        "the Adyen merchant account payments are made to",
    ),
    (
        "ADYEN_HMAC_KEYS",
        "(unset)",
        "Adyen notification HMAC keys (hex), comma-separated",
    ),
    (
        "PSP_TIMEOUT_MS",
        "10000",
        "how long one PSP call may take before its answer counts as lost (and is asked again with the same key)",
    ),
    (
        "PSP_RETRIES",
        "2",
        "retries of a PSP call that failed in a way the idempotency key makes safe to retry",
    ),
    ("PSP_MAX_IN_FLIGHT", "32", "PSP calls in flight at once"),
    (
        "PSP_CALLBACK_TOLERANCE_SECS",
        "300",
        "how old (or early) a Stripe callback's signed timestamp may be",
    ),
    (
        "PAYMENT_RECONCILE_SECS",
        "60",
        "when an attempt whose answer was lost is asked again",
    ),
    (
        "DUNNING_SCHEDULE",
        "1d,3d,5d,7d",
        "retries after an automatic payment fails, as offsets from the failure (d, h, m, s)",
    ),
    (
        "PAYMENT_CLOCK_SECS",
        "5",
        "how often the service looks for payments to confirm, answers to re-ask and dunning retries due",
    ),
];

/// Where the sandbox PSP is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    Off,
    /// Served by this process on this address.
    Embedded(SocketAddr),
    /// Running elsewhere, at this base URL.
    External(String),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub sandbox: SandboxMode,
    pub sandbox_callback_url: String,
    pub sandbox_webhook_secret: Secret,
    pub stripe_api_key: Option<Secret>,
    pub stripe_api_base: String,
    pub stripe_webhook_secrets: Vec<Secret>,
    pub adyen_api_key: Option<Secret>,
    pub adyen_api_base: String,
    pub adyen_merchant_account: String,
    pub adyen_hmac_keys: Vec<Secret>,
    pub psp_timeout: Duration,
    pub psp_retries: u32,
    pub psp_max_in_flight: usize,
    pub callback_tolerance_secs: i64,
    pub reconcile_after: Duration,
    pub dunning: Schedule,
    pub clock: Duration,
}

/// The sandbox's API key: it guards nothing real, but the connector sends one like Stripe's.
pub const SANDBOX_API_KEY: &str = "sk_test_sandbox";

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let bad = ConfigError::new;
        let secrets = |var: &'static str| -> Vec<Secret> {
            get(var)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(Secret::new)
                        .collect()
                })
                .unwrap_or_default()
        };
        let sandbox = match get("SANDBOX_PSP").as_deref() {
            None | Some("embedded") => {
                let addr = get("SANDBOX_PSP_ADDR").unwrap_or_else(|| "127.0.0.1:7070".into());
                SandboxMode::Embedded(
                    addr.parse()
                        .map_err(|_| bad("SANDBOX_PSP_ADDR", &addr, "host:port"))?,
                )
            }
            Some("off") => SandboxMode::Off,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                SandboxMode::External(url.to_string())
            }
            Some(other) => {
                return Err(bad(
                    "SANDBOX_PSP",
                    other,
                    "embedded, off, or an http(s) URL",
                ));
            }
        };
        let adyen_hmac_keys = secrets("ADYEN_HMAC_KEYS");
        if let Some(k) = adyen_hmac_keys
            .iter()
            .find(|k| hex::decode(k.expose()).is_err())
        {
            return Err(bad("ADYEN_HMAC_KEYS", &k.to_string(), "hex-encoded keys"));
        }
        let schedule = get("DUNNING_SCHEDULE").unwrap_or_else(|| "1d,3d,5d,7d".into());
        let dunning =
            Schedule::parse(&schedule).map_err(|e| bad("DUNNING_SCHEDULE", &schedule, &e))?;
        let adyen_api_key = get("ADYEN_API_KEY").map(Secret::new);
        let adyen_merchant_account = get("ADYEN_MERCHANT_ACCOUNT").unwrap_or_default();
        if adyen_api_key.is_some() && adyen_merchant_account.is_empty() {
            return Err(bad(
                "ADYEN_MERCHANT_ACCOUNT",
                "",
                "required when ADYEN_API_KEY is set",
            ));
        }
        Ok(Settings {
            sandbox,
            sandbox_callback_url: get("SANDBOX_CALLBACK_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8080/v1/webhooks/psp/stripe".into()),
            sandbox_webhook_secret: Secret::new(
                get("SANDBOX_WEBHOOK_SECRET")
                    .unwrap_or_else(|| format!("whsec_sandbox_{}", uuid::Uuid::new_v4().simple())),
            ),
            stripe_api_key: get("STRIPE_API_KEY").map(Secret::new),
            stripe_api_base: get("STRIPE_API_BASE")
                .unwrap_or_else(|| "https://api.stripe.com".into()),
            stripe_webhook_secrets: secrets("STRIPE_WEBHOOK_SECRETS"),
            adyen_api_key,
            adyen_api_base: get("ADYEN_API_BASE")
                .unwrap_or_else(|| "https://checkout-test.adyen.com/v71".into()),
            adyen_merchant_account,
            adyen_hmac_keys,
            psp_timeout: Duration::from_millis(
                num_var(&get, "PSP_TIMEOUT_MS", 10_000, 50, 120_000)?.into(),
            ),
            psp_retries: num_var(&get, "PSP_RETRIES", 2, 0, 10)?,
            psp_max_in_flight: num_var(&get, "PSP_MAX_IN_FLIGHT", 32, 1, 4096)? as usize,
            callback_tolerance_secs: num_var(&get, "PSP_CALLBACK_TOLERANCE_SECS", 300, 1, 86_400)?
                .into(),
            reconcile_after: Duration::from_secs(
                num_var(&get, "PAYMENT_RECONCILE_SECS", 60, 1, 86_400)?.into(),
            ),
            dunning,
            clock: Duration::from_secs(num_var(&get, "PAYMENT_CLOCK_SECS", 5, 1, 3600)?.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(
            s.sandbox,
            SandboxMode::Embedded("127.0.0.1:7070".parse().unwrap())
        );
        assert_eq!(s.dunning.retries(), 4);
        assert!(s.stripe_api_key.is_none());
        // Each start signs sandbox callbacks with a secret of its own.
        let other = Settings::from_lookup(|_| None).unwrap();
        assert_ne!(s.sandbox_webhook_secret, other.sandbox_webhook_secret);
        for (var, value) in [
            ("SANDBOX_PSP", "sometimes"),
            ("DUNNING_SCHEDULE", "3d,1d"),
            ("ADYEN_HMAC_KEYS", "not-hex"),
            ("PSP_TIMEOUT_MS", "fast"),
            ("ADYEN_MERCHANT_ACCOUNT", ""),
        ] {
            let e = Settings::from_lookup(|k| {
                if k == var {
                    Some(value.into())
                } else if var == "ADYEN_MERCHANT_ACCOUNT" && k == "ADYEN_API_KEY" {
                    Some("key".into())
                } else {
                    None
                }
            })
            .unwrap_err();
            assert_eq!(e.var, var, "{e}");
        }
    }
}
