//! Development tokens: HS256 JWTs with the claims the gateway checks — `iss`
//! (`saas-platform-dev`), `aud` (`saas-platform`), `sub`, `tid` (tenant), `roles`, `iat`, `nbf`,
//! `exp`. The secret is `JWT_HS256_SECRET`, or the development default the gateway also uses
//! when `cargo xtask up` starts it.

use anyhow::{Context, Result, bail};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

/// The development secret `cargo xtask up` configures (with `DEV_MODE=true`, without which the
/// gateway refuses it); never for production. `gateway::config::DEV_HS256_SECRET` is the same.
pub const DEV_SECRET: &str = "dev-secret-change-me-0123456789abcdef";

/// The gateway's default `PLATFORM_OPERATOR_TENANT`: `platform_admin` counts only here.
pub const OPERATOR_TENANT: &str = "ten_platform";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    tid: &'a str,
    roles: Vec<&'a str>,
    iat: u64,
    nbf: u64,
    exp: u64,
}

pub fn mint(tenant: &str, subject: &str, roles: &[&str], ttl_secs: u64) -> Result<String> {
    let secret = std::env::var("JWT_HS256_SECRET").unwrap_or_else(|_| DEV_SECRET.to_string());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        iss: "saas-platform-dev",
        aud: "saas-platform",
        sub: subject,
        tid: tenant,
        roles: roles.to_vec(),
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
    };
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("signing the token")
}

pub fn from_args(args: &[String]) -> Result<String> {
    let mut tenant = None;
    let mut subject = "dev-user".to_string();
    let mut roles = "platform_admin".to_string();
    let mut ttl: u64 = 24 * 3600;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--tenant" => tenant = Some(value()?.clone()),
            "--subject" => subject = value()?.clone(),
            "--roles" => roles = value()?.clone(),
            "--ttl-secs" => ttl = value()?.parse().context("--ttl-secs takes seconds")?,
            other => bail!("unknown option {other:?}"),
        }
    }
    let tenant = tenant.context("--tenant is required")?;
    let roles: Vec<&str> = roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    mint(&tenant, &subject, &roles, ttl)
}
