//! Gateway-only settings, read once from the environment beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::config::ConfigError;

use crate::http::ratelimit::Quota;

/// Variables only the gateway reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "JWT_HS256_SECRET",
        "(unset)",
        "shared secret for HS256 tokens (local development); at least 32 bytes",
    ),
    (
        "JWT_JWKS_FILE",
        "(unset)",
        "JWKS file with the RS256/ES256 keys tokens are verified against; reloaded every 60 s",
    ),
    (
        "JWT_JWKS_URL",
        "(unset)",
        "JWKS URL of the identity provider (used when JWT_JWKS_FILE is unset); refetched periodically and on unknown key ids",
    ),
    (
        "JWT_JWKS_REFRESH_SECS",
        "300",
        "how often the JWKS URL is refetched",
    ),
    ("JWT_ISSUER", "saas-platform-dev", "required `iss` claim"),
    ("JWT_AUDIENCE", "saas-platform", "required `aud` claim"),
    (
        "JWT_LEEWAY_SECS",
        "30",
        "clock skew allowed on `exp` and `nbf`",
    ),
    (
        "API_KEY_CACHE_SECS",
        "5",
        "how long a verified API key is cached (a revoked key stops working after at most this)",
    ),
    ("MAX_BODY_BYTES", "1048576", "largest request body accepted"),
    (
        "RATE_LIMIT_CALLER_PER_SEC",
        "50",
        "sustained requests per second per caller (token subject or API key), per replica",
    ),
    (
        "RATE_LIMIT_CALLER_BURST",
        "100",
        "requests a caller may send at once, per replica",
    ),
    (
        "RATE_LIMIT_TENANT_PER_SEC",
        "200",
        "sustained requests per second per tenant, shared by all replicas through Redis",
    ),
    (
        "RATE_LIMIT_TENANT_BURST",
        "400",
        "requests a tenant may send at once, across all replicas",
    ),
];

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub hs256_secret: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
    pub api_key_cache: Duration,
    pub max_body_bytes: usize,
    pub per_caller: Quota,
    pub per_tenant: Quota,
}

impl GatewaySettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let num = |var: &'static str, default: u64, max: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(ConfigError {
                        var,
                        value: v,
                        reason: format!("expected a whole number from 0 to {max}"),
                    }),
                },
            }
        };
        let hs256_secret = get("JWT_HS256_SECRET");
        if let Some(s) = &hs256_secret
            && s.len() < 32
        {
            return Err(ConfigError {
                var: "JWT_HS256_SECRET",
                value: "(hidden)".into(),
                reason: "must be at least 32 bytes".into(),
            });
        }
        Ok(GatewaySettings {
            hs256_secret,
            jwks_file: get("JWT_JWKS_FILE"),
            jwks_url: match get("JWT_JWKS_URL") {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
                Some(u) => {
                    return Err(ConfigError {
                        var: "JWT_JWKS_URL",
                        value: u,
                        reason: "expected an https:// (or, for development, http://) URL".into(),
                    });
                }
                None => None,
            },
            jwks_refresh: Duration::from_secs(num("JWT_JWKS_REFRESH_SECS", 300, 86_400)?.max(10)),
            issuer: get("JWT_ISSUER").unwrap_or_else(|| "saas-platform-dev".into()),
            audience: get("JWT_AUDIENCE").unwrap_or_else(|| "saas-platform".into()),
            leeway_secs: num("JWT_LEEWAY_SECS", 30, 600)?,
            api_key_cache: Duration::from_secs(num("API_KEY_CACHE_SECS", 5, 3600)?),
            max_body_bytes: num("MAX_BODY_BYTES", 1 << 20, 64 << 20)? as usize,
            per_caller: Quota {
                per_sec: num("RATE_LIMIT_CALLER_PER_SEC", 50, 1_000_000)?.max(1) as u32,
                burst: num("RATE_LIMIT_CALLER_BURST", 100, 1_000_000)?.max(1) as u32,
            },
            per_tenant: Quota {
                per_sec: num("RATE_LIMIT_TENANT_PER_SEC", 200, 1_000_000)?.max(1) as u32,
                burst: num("RATE_LIMIT_TENANT_BURST", 400, 1_000_000)?.max(1) as u32,
            },
        })
    }
}
