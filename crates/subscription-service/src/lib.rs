//! The subscription service: the plan catalog, each tenant's subscription and seats, usage
//! ingestion with hourly and per-period rollups, and entitlement checks.
//!
//! It owns the `saas_subscription` database (migrated at start-up) and serves
//! `saas.subscription.v1` from `proto/subscription/v1/`. Prices are computed by the `pricing`
//! crate; pure rules live in [`domain`], SQL in [`store`], what the service does in [`service`],
//! transport in [`grpc`], reactions to
//! other services' events and the clock in [`events`]. Entitlement answers are cached in Redis
//! ([`cache`]).

pub mod cache;
pub mod convert;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod service;
pub mod settings;
pub mod store;

use platform::events::ConsumerSpec;
use platform::{App, AppBuilder, Backbone, ServiceConfig, StartError};

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/subscription");

/// Connects to the infrastructure and assembles the service.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let settings = settings::Settings::from_env().map_err(|e| StartError::Other(e.to_string()))?;
    build_with(cfg, settings).await
}

/// [`build`] with explicit settings (tests).
pub async fn build_with(
    cfg: ServiceConfig,
    settings: settings::Settings,
) -> Result<App, StartError> {
    let backbone = Backbone::connect(&cfg, &MIGRATOR).await?;
    let redis = platform::cache::connect(&cfg.redis_url).await?;
    let limiter = cfg.limiter();
    let cache =
        cache::EntitlementCache::new(redis.clone(), settings.entitlement_ttl, &cfg.event_prefix);
    let tick_every = settings.tick;
    let service = std::sync::Arc::new(service::Service::new(
        backbone.pool.clone(),
        cache.clone(),
        settings,
    ));
    let api = grpc::SubscriptionApi::new(service);
    let members = events::MemberEvents {
        cache: cache.clone(),
    };
    let tenants = events::TenantEvents {
        cache: cache.clone(),
    };
    let payments = events::PaymentEvents {
        cache: cache.clone(),
    };
    let pool = backbone.pool.clone();
    Ok(AppBuilder::new(cfg)
        .backbone(&backbone)
        .redis(redis)
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .grpc(
            rpc::subscription::v1::subscription_service_server::SubscriptionServiceServer::new(api)
                // A usage batch the gateway accepts (up to 8 MiB of JSON) fits in one message.
                .max_decoding_message_size(16 << 20),
        )
        .consumer(
            ConsumerSpec::new("subscription-members", "USER", "user.>"),
            members,
        )
        .consumer(
            ConsumerSpec::new("subscription-tenants", "USER", "tenant.>"),
            tenants,
        )
        .consumer(
            ConsumerSpec::new("subscription-payments", "PAYMENT", "payment.>"),
            payments.clone(),
        )
        .consumer(
            ConsumerSpec::new("subscription-invoices-paid", "INVOICE", "invoice.paid"),
            payments,
        )
        .task("subscription-tick", move |stop| {
            events::run_ticker(
                pool,
                store::plans::PlanCache::default(),
                cache,
                tick_every,
                stop,
            )
        })
        .build())
}
