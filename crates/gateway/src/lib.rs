//! The gateway: the platform's only public door (DESIGN.md §6, §7).
//!
//! It owns no database. It holds a lazily connected gRPC channel to every internal service
//! ([`upstream`]), reports their health on `/readyz` and `GET /v1/status`, and (with the
//! gateway issue) authenticates, authorises, rate-limits and forwards `/v1/...` requests.

pub mod auth;
pub mod config;
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
    let (auth, jwks_reload) = auth_from(&settings, &upstreams)?;
    if let Some(reload) = jwks_reload {
        builder = builder.task("jwks-reload", reload);
    }
    let upstream_health = upstreams.health_checks();
    Ok(builder
        .cors()
        .readiness(upstream_health.clone())
        .http(http::router(http::Deps {
            upstream_health,
            upstreams,
            auth,
            redis,
            per_caller: settings.per_caller,
            per_tenant: settings.per_tenant,
            max_body_bytes: settings.max_body_bytes,
        }))
        .build())
}

type ReloadTask = Box<
    dyn FnOnce(
            platform::CancellationToken,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send,
>;

/// The JWT verifier (HS256 secret and/or JWKS file) and API-key path, plus the task that
/// reloads the JWKS file every minute (key rotation without a restart).
fn auth_from(
    settings: &config::GatewaySettings,
    upstreams: &upstream::Upstreams,
) -> Result<(auth::Authenticator, Option<ReloadTask>), StartError> {
    let mut reload: Option<ReloadTask> = None;
    let verifier = auth::jwt::JwtVerifier::new(
        auth::jwt::JwtSettings {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway_secs,
        },
        settings.hs256_secret.as_deref().map(str::as_bytes),
    );
    if let Some(path) = &settings.jwks_file {
        let load = |v: &auth::jwt::JwtVerifier| -> Result<usize, String> {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("JWT_JWKS_FILE={path}: {e}"))?;
            v.set_jwks(&text)
                .map_err(|e| format!("JWT_JWKS_FILE={path}: {e}"))
        };
        load(&verifier).map_err(StartError::Other)?;
        let v = verifier.clone();
        let path = path.clone();
        reload = Some(Box::new(move |stop: platform::CancellationToken| {
            Box::pin(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                    }
                    match std::fs::read_to_string(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|t| v.set_jwks(&t).map_err(|e| e.to_string()))
                    {
                        Ok(n) => tracing::debug!(keys = n, "JWKS reloaded"),
                        Err(e) => {
                            tracing::warn!(error = %e, "JWKS reload failed; keeping the previous keys")
                        }
                    }
                }
            })
        }));
    }
    if settings.hs256_secret.is_none() && settings.jwks_file.is_none() {
        tracing::warn!(
            "neither JWT_HS256_SECRET nor JWT_JWKS_FILE is set: only API keys can authenticate"
        );
    }
    let users = upstreams.channel(ServiceName::User).clone();
    Ok((
        auth::Authenticator::new(verifier, users, settings.api_key_cache),
        reload,
    ))
}
