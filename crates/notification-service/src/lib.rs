//! The notification service: tells tenants what happened to them — e-mail (lettre: a local
//! maildir or SMTP) and SMS (a Twilio-style API or a file) to the tenant's recipients, and
//! webhooks signed per Standard Webhooks to the tenant's endpoints, at least once.
//!
//! It owns the `saas_notification` database (migrated at start-up) and serves
//! `saas.notification.v1` from `proto/notification/v1/` beside health, readiness and metrics
//! on one port. Events arrive in [`events`] (one message per tenant and event, with a delivery
//! per target); the [`sender`] leases due deliveries and makes each attempt through a channel
//! in [`send`]. Pure rules (signatures, the retry schedule, SSRF rules, event filters,
//! templates, addresses) are in [`domain`], SQL in [`store`], transport in [`grpc`] (errors
//! mapped once in [`error`]).

pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod send;
pub mod sender;
pub mod settings;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use platform::events::ConsumerSpec;
use platform::{App, AppBuilder, Backbone, ServiceConfig, ServiceName, StartError};
use tokio::sync::Notify;

use crate::settings::Settings;

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/notification");

/// The streams whose tenant-scoped events tenants hear of.
const CONSUMED: &[(&str, &str, &str)] = &[
    ("notification-user", "USER", "user.>"),
    ("notification-tenant", "USER", "tenant.>"),
    (
        "notification-subscription",
        "SUBSCRIPTION",
        "subscription.>",
    ),
    ("notification-invoice", "INVOICE", "invoice.>"),
    ("notification-credit-note", "INVOICE", "credit_note.>"),
    ("notification-payment", "PAYMENT", "payment.>"),
];

/// Connects to the infrastructure and assembles the service.
pub async fn build(cfg: ServiceConfig) -> Result<App, StartError> {
    let settings = Settings::from_env().map_err(|e| StartError::Other(e.to_string()))?;
    build_with(cfg, settings).await
}

/// The sender with its channels as `settings` configure them; `invoicing` is where invoice
/// PDFs come from.
pub fn sender(
    pool: sqlx::PgPool,
    settings: Arc<Settings>,
    invoicing: platform::grpc::Channel,
    wake: Arc<Notify>,
) -> Result<sender::Sender, StartError> {
    let webhooks = send::webhook::Webhooks::new(settings.timeout, settings.allow_private)
        .map_err(|e| StartError::Other(format!("webhook client: {e}")))?;
    let mailer = send::email::Mailer::new(&settings.email, &settings.email_from)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let texter = send::sms::Texter::new(&settings)
        .map_err(|e| StartError::Other(format!("SMS client: {e}")))?;
    let limiter = concurrency::Limiter::new(concurrency::LimiterConfig {
        max_workers: settings.max_in_flight,
        max_db_jobs: settings.max_in_flight,
    })
    .map_err(|e| StartError::Other(format!("NOTIFY_MAX_IN_FLIGHT: {e}")))?;
    let (records, recorder) = tokio::sync::mpsc::channel(4096);
    Ok(sender::Sender {
        pool,
        settings,
        webhooks,
        mailer,
        texter,
        invoicing: rpc::invoicing::v1::invoicing_service_client::InvoicingServiceClient::new(
            invoicing,
        ),
        limiter,
        wake,
        in_flight: Arc::new(Mutex::new(HashMap::new())),
        records,
        recorder: Arc::new(Mutex::new(Some(recorder))),
    })
}

/// [`build`] with explicit settings (tests).
pub async fn build_with(cfg: ServiceConfig, settings: Settings) -> Result<App, StartError> {
    let backbone = Backbone::connect(&cfg, &MIGRATOR).await?;
    let limiter = cfg.limiter();
    let invoicing =
        platform::grpc::lazy_channel(cfg.upstream(ServiceName::Invoicing), cfg.grpc_timeout)
            .map_err(|e| StartError::Other(format!("INVOICING_SERVICE_ADDR: {e}")))?;
    let settings = Arc::new(settings);
    let wake = Arc::new(Notify::new());
    let api = grpc::NotificationApi {
        pool: backbone.pool.clone(),
        settings: settings.clone(),
        wake: wake.clone(),
    };
    let sender = sender(backbone.pool.clone(), settings, invoicing, wake.clone())?;
    let mut app = AppBuilder::new(cfg)
        .backbone(&backbone)
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .grpc(
            rpc::notification::v1::notification_service_server::NotificationServiceServer::new(api),
        );
    for (name, stream, filter) in CONSUMED {
        app = app.consumer(
            ConsumerSpec::new(name, stream, filter),
            events::Fanout { wake: wake.clone() },
        );
    }
    Ok(app
        .task("notification-sender", move |stop| sender.serve(stop))
        .build())
}
