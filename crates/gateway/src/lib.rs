//! The gateway: the platform's only public door (DESIGN.md §6, §7).
//!
//! It owns no database. It holds a lazily connected gRPC channel to every internal service
//! ([`upstream`]), reports their health on `/readyz` and `GET /v1/status`, and authenticates,
//! authorises ([`auth`]), checks input, rate-limits, de-duplicates and forwards `/v1/...`
//! requests ([`http`]); ARCHITECTURE.md, "Security model", has the rules.

pub mod auth;
pub mod config;
pub mod expiring;
pub mod http;
pub mod upstream;

use platform::{App, AppBuilder, ServiceConfig, ServiceName, StartError};

/// Assembles the gateway from the environment.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    build_with(cfg, config::GatewaySettings::from_env()?).await
}

/// Assembles the gateway. Redis is optional at start-up: the gateway keeps serving without it.
pub async fn build_with(
    cfg: ServiceConfig,
    settings: config::GatewaySettings,
) -> Result<App, StartError> {
    let upstreams = upstream::Upstreams::new(&cfg)?;
    let mut builder = AppBuilder::new(cfg.clone());
    let redis = match platform::cache::connect(&cfg.redis_url).await {
        Ok(conn) => {
            builder = builder.redis(conn.clone());
            Some(conn)
        }
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable at start-up; continuing without it");
            None
        }
    };
    // reqwest (JWKS over HTTPS) and any later TLS client use rustls with the ring provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (auth, refresher) = auth_from(&settings, &upstreams)?;
    if let Some(refresher) = refresher {
        // A JWKS file must be readable at start-up (a typo should stop the deploy); a JWKS
        // URL may be briefly unreachable, so the refresher keeps trying in the background.
        let loaded = refresher.load().await;
        let last = match (&loaded, &settings.jwks_file) {
            (Err(e), Some(_)) => return Err(StartError::Other(e.clone())),
            (Err(e), None) => {
                tracing::warn!(error = %e, "JWKS not loaded yet; retrying in the background");
                None
            }
            (Ok(n), _) => {
                tracing::info!(keys = n, "JWKS loaded");
                Some(std::time::Instant::now())
            }
        };
        builder = builder.task("jwks-refresh", move |stop| refresher.run(stop, last));
    }
    let upstream_health = upstreams.health_checks();
    Ok(builder
        .cors()
        // Large list responses are compressed when the client accepts it.
        .compression()
        .body_limit(settings.max_body_bytes)
        // The gateway's port faces the internet: metrics only for the operator's scrapers.
        .metrics_allow(settings.metrics_allow.clone())
        .readiness(upstream_health.clone())
        .http(http::router(http::Deps {
            upstream_health,
            upstreams,
            auth,
            redis,
            per_caller: settings.per_caller,
            per_tenant: settings.per_tenant,
            auth_failures: settings.auth_failures,
            max_body_bytes: settings.max_body_bytes,
            public_url: settings.public_url.clone(),
            redis_namespace: cfg.event_prefix.clone(),
        }))
        .build())
}

/// The JWT verifier (HS256 secret and/or JWKS from a file or URL) and API-key path, plus the
/// refresher that keeps the JWKS current.
fn auth_from(
    settings: &config::GatewaySettings,
    upstreams: &upstream::Upstreams,
) -> Result<(auth::Authenticator, Option<auth::jwks::Refresher>), StartError> {
    let verifier = auth::jwt::JwtVerifier::new(
        auth::jwt::JwtSettings {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway_secs,
        },
        settings
            .hs256_secret
            .as_ref()
            .map(|s| s.expose().as_bytes()),
    );
    if settings.dev_mode {
        tracing::warn!(
            "DEV_MODE is on: the public development HS256 secret is accepted; never run this in production"
        );
    }
    let source = match (&settings.jwks_file, &settings.jwks_url) {
        (Some(f), _) => Some((
            auth::jwks::Source::File(f.clone()),
            std::time::Duration::from_secs(60),
        )),
        (None, Some(u)) => Some((auth::jwks::Source::Url(u.clone()), settings.jwks_refresh)),
        (None, None) => None,
    };
    if settings.hs256_secret.is_none() && source.is_none() {
        tracing::warn!(
            "none of JWT_HS256_SECRET, JWT_JWKS_FILE, JWT_JWKS_URL is set: only API keys can authenticate"
        );
    }
    let refresher = source.map(|(src, every)| {
        auth::jwks::Refresher::new(verifier.clone(), src, every, settings.jwks_min_refetch)
    });
    let users = upstreams.channel(ServiceName::User).clone();
    let mut authenticator = auth::Authenticator::new(verifier, users, settings.api_key_cache)
        .with_operator_tenant(&settings.operator_tenant);
    if let Some(r) = &refresher {
        authenticator = authenticator.with_jwks_kicker(r.kicker());
    }
    Ok((authenticator, refresher))
}
