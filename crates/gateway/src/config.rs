//! Gateway-only settings, read once from the environment beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::Secret;
use platform::config::ConfigError;

use crate::http::ratelimit::Quota;

/// The HS256 secret of the README, the compose file and `cargo xtask up`: public, so the
/// gateway refuses it unless `DEV_MODE` is set.
pub const DEV_HS256_SECRET: &str = "dev-secret-change-me-0123456789abcdef";

/// Default of `PLATFORM_OPERATOR_TENANT`. Tenant ids the user service issues are
/// `ten_<uuid>`, so no tenant can be created with this id.
pub const DEFAULT_OPERATOR_TENANT: &str = "ten_platform";

/// Variables only the gateway reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "JWT_HS256_SECRET",
        "(unset)",
        "shared secret for HS256 tokens (local development); at least 32 bytes; the public development secret is refused unless DEV_MODE=true",
    ),
    (
        "DEV_MODE",
        "false",
        "true for local development only: accepts the public development HS256 secret",
    ),
    (
        "JWT_ALLOW_HS256",
        "false",
        "true to accept HS256 tokens alongside a JWKS (JWT_JWKS_FILE/URL); without it, setting both is refused",
    ),
    (
        "PUBLIC_URL",
        "(unset)",
        "the gateway's public base URL (https://api.example.com): links it hands out, such as SCIM's meta.location, are built on it; unset: http:// and the request's Host (development)",
    ),
    (
        "PLATFORM_OPERATOR_TENANT",
        DEFAULT_OPERATOR_TENANT,
        "the tenant id (`tid` claim) of the SaaS operator: a token's platform_admin role counts only with this tenant",
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
    (
        "JWT_JWKS_MIN_REFETCH_SECS",
        "30",
        "least time between two JWKS fetches, however many tokens name unknown key ids (failures back off further)",
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
    (
        "AUTH_FAILURE_BURST",
        "20",
        "failed authentications (401) a client address may have at once before it gets 429",
    ),
    (
        "AUTH_FAILURE_PER_SEC",
        "1",
        "failed authentications per second a client address is forgiven",
    ),
    (
        "METRICS_ALLOW",
        "127.0.0.0/8,::1",
        "addresses (CIDR, comma-separated) that may read /metrics on the gateway's public port; others get 404",
    ),
];

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub hs256_secret: Option<Secret>,
    pub dev_mode: bool,
    pub operator_tenant: String,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
    pub api_key_cache: Duration,
    pub max_body_bytes: usize,
    pub per_caller: Quota,
    pub per_tenant: Quota,
    pub auth_failures: Quota,
    pub metrics_allow: Vec<platform::health::Cidr>,
    /// (scheme, authority) of `PUBLIC_URL`.
    pub public_url: Option<(String, String)>,
}

/// `https://api.example.com[:port][/]` → ("https", "api.example.com[:port]").
fn public_url(u: &str) -> Option<(String, String)> {
    let (scheme, rest) = u.trim().split_once("://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let ok = matches!(scheme, "https" | "http")
        && !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then(|| (scheme.to_string(), authority.to_string()))
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
        let flag = |var: &'static str| -> Result<bool, ConfigError> {
            match get(var).as_deref().map(str::trim) {
                None | Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") => Ok(true),
                Some(other) => Err(ConfigError {
                    var,
                    value: other.into(),
                    reason: "expected true or false".into(),
                }),
            }
        };
        let dev_mode = flag("DEV_MODE")?;
        let hs256_secret = get("JWT_HS256_SECRET").map(Secret::new);
        if let Some(s) = &hs256_secret {
            let hidden = |reason: &str| ConfigError {
                var: "JWT_HS256_SECRET",
                value: "(hidden)".into(),
                reason: reason.into(),
            };
            if s.expose().len() < 32 {
                return Err(hidden("must be at least 32 bytes"));
            }
            if s.expose() == DEV_HS256_SECRET && !dev_mode {
                return Err(hidden(
                    "this is the public development secret: anyone can sign tokens with it; set a secret of your own, or DEV_MODE=true on a development machine",
                ));
            }
        }
        let jwks_file = get("JWT_JWKS_FILE");
        let jwks_url = get("JWT_JWKS_URL");
        if hs256_secret.is_some()
            && (jwks_file.is_some() || jwks_url.is_some())
            && !flag("JWT_ALLOW_HS256")?
        {
            return Err(ConfigError {
                var: "JWT_HS256_SECRET",
                value: "(hidden)".into(),
                reason:
                    "a JWKS is configured too: HS256 tokens alongside it need JWT_ALLOW_HS256=true"
                        .into(),
            });
        }
        let operator_tenant =
            get("PLATFORM_OPERATOR_TENANT").unwrap_or_else(|| DEFAULT_OPERATOR_TENANT.into());
        if ids::TenantId::parse(&operator_tenant).is_err() {
            return Err(ConfigError {
                var: "PLATFORM_OPERATOR_TENANT",
                value: operator_tenant,
                reason: "expected a tenant id (1 to 64 printable ASCII characters, no comma)"
                    .into(),
            });
        }
        let metrics_allow_text = get("METRICS_ALLOW").unwrap_or_else(|| "127.0.0.0/8,::1".into());
        let metrics_allow = metrics_allow_text
            .split(',')
            .filter(|c| !c.trim().is_empty())
            .map(|c| platform::health::Cidr::parse(c).ok_or(()))
            .collect::<Result<Vec<_>, ()>>()
            .map_err(|()| ConfigError {
                var: "METRICS_ALLOW",
                value: metrics_allow_text.clone(),
                reason: "expected comma-separated addresses or CIDR ranges (10.0.0.0/8, ::1)"
                    .into(),
            })?;
        let public_url = match get("PUBLIC_URL") {
            None => None,
            Some(u) => Some(public_url(&u).ok_or_else(|| ConfigError {
                var: "PUBLIC_URL",
                value: u.clone(),
                reason: "expected https://host[:port] (or http:// for development), no path".into(),
            })?),
        };
        Ok(GatewaySettings {
            public_url,
            metrics_allow,
            hs256_secret,
            dev_mode,
            operator_tenant,
            jwks_file,
            jwks_url: match jwks_url {
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
            jwks_min_refetch: Duration::from_secs(
                num("JWT_JWKS_MIN_REFETCH_SECS", 30, 86_400)?.max(1),
            ),
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
            auth_failures: Quota {
                per_sec: num("AUTH_FAILURE_PER_SEC", 1, 1_000_000)?.max(1) as u32,
                burst: num("AUTH_FAILURE_BURST", 20, 1_000_000)?.max(1) as u32,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<GatewaySettings, ConfigError> {
        GatewaySettings::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_public_development_secret_needs_dev_mode() {
        let err = settings(&[("JWT_HS256_SECRET", DEV_HS256_SECRET)]).unwrap_err();
        assert_eq!(err.var, "JWT_HS256_SECRET");
        assert!(err.reason.contains("DEV_MODE"), "{err}");
        assert!(!err.to_string().contains(DEV_HS256_SECRET));
        let ok = settings(&[("JWT_HS256_SECRET", DEV_HS256_SECRET), ("DEV_MODE", "true")]).unwrap();
        assert!(ok.dev_mode);
        let own =
            settings(&[("JWT_HS256_SECRET", "a-secret-of-our-own-0123456789abcdef")]).unwrap();
        assert!(!own.dev_mode);
        assert_eq!(
            settings(&[("DEV_MODE", "yes")]).unwrap_err().var,
            "DEV_MODE"
        );
    }

    #[test]
    fn hs256_beside_a_jwks_must_be_asked_for() {
        let both = [
            ("JWT_HS256_SECRET", "a-secret-of-our-own-0123456789abcdef"),
            ("JWT_JWKS_URL", "https://idp.example/jwks.json"),
        ];
        let err = settings(&both).unwrap_err();
        assert!(err.reason.contains("JWT_ALLOW_HS256"), "{err}");
        let mut allowed = both.to_vec();
        allowed.push(("JWT_ALLOW_HS256", "true"));
        assert!(settings(&allowed).is_ok());
        assert!(settings(&[("JWT_JWKS_URL", "https://idp.example/jwks.json")]).is_ok());
    }

    #[test]
    fn secrets_do_not_print_and_the_operator_tenant_has_a_default() {
        let s = settings(&[("JWT_HS256_SECRET", "a-secret-of-our-own-0123456789abcdef")]).unwrap();
        assert!(!format!("{s:?}").contains("a-secret-of-our-own"));
        assert_eq!(s.operator_tenant, DEFAULT_OPERATOR_TENANT);
        assert_eq!(
            settings(&[("PLATFORM_OPERATOR_TENANT", "a\u{0}b")])
                .unwrap_err()
                .var,
            "PLATFORM_OPERATOR_TENANT"
        );
    }
}
