//! The invoicing service: one invoice per (tenant, subscription period) from the charges
//! billing runs produce, finalized after a grace into numbered, immutable documents — with
//! tax for the buyer, gapless numbers per series and year — and credit notes or
//! supplementary invoices for what is billed of a period afterwards.
//!
//! It owns the `saas_invoicing` database (migrated at start-up) and serves `saas.invoicing.v1`
//! from `proto/invoicing/v1/` beside health, readiness and metrics on one port. Transport is in
//! [`grpc`] (errors mapped once in [`error`]); the flow is [`events`] (a completed run is
//! recorded) → [`assembler`] (its charges become drafts) → [`finalize`] (drafts become
//! numbered documents) → [`publish`] (their PDFs, rendered by [`pdf`], stored in [`blobs`]).
//! Pure rules (grouping, tax, numbers, the lifecycle) are in [`domain`], SQL in [`store`].
//! `invoice.*` and `credit_note.created` leave through the outbox.

pub mod assembler;
pub mod blobs;
pub mod domain;
pub mod error;
pub mod events;
pub mod finalize;
pub mod grpc;
pub mod pdf;
pub mod publish;
pub mod settings;
pub mod store;

use std::sync::Arc;

use platform::events::ConsumerSpec;
use platform::{App, AppBuilder, Backbone, ServiceConfig, ServiceName, StartError};
use rpc::billing::v1::billing_service_client::BillingServiceClient;
use tokio::sync::Notify;

/// This service's schema migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/invoicing");

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
    let limiter = cfg.limiter();
    let billing =
        platform::grpc::lazy_channel(cfg.upstream(ServiceName::Billing), cfg.grpc_timeout)
            .map_err(|e| StartError::Other(format!("BILLING_SERVICE_ADDR: {e}")))?;
    let fonts = match &settings.font_path {
        Some(path) => pdf::Fonts::from_file(path)
            .map_err(|e| StartError::Other(format!("INVOICE_FONT_PATH: {e}")))?,
        None => pdf::Fonts::embedded(),
    };
    let aws: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    let blobs = blobs::Blobs::open(&settings.blob_store, &aws)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let settings = Arc::new(settings);
    let (runs_wake, drafts_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let finalizer = finalize::Finalizer {
        pool: backbone.pool.clone(),
        settings: settings.clone(),
        fonts: Arc::new(fonts),
        blobs,
        wake: drafts_wake.clone(),
    };
    let assembler = assembler::Assembler {
        pool: backbone.pool.clone(),
        billing: BillingServiceClient::new(billing),
        settings,
        wake: runs_wake.clone(),
        finalizer: drafts_wake,
    };
    let api = grpc::InvoicingApi {
        pool: backbone.pool.clone(),
        finalizer: finalizer.clone(),
    };
    Ok(AppBuilder::new(cfg)
        .backbone(&backbone)
        .limiter(limiter)
        .reflection(rpc::FILE_DESCRIPTOR_SET)
        .grpc(rpc::invoicing::v1::invoicing_service_server::InvoicingServiceServer::new(api))
        .consumer(
            ConsumerSpec::new("invoicing-runs", "BILLING", "billing.run.completed"),
            events::RunsCompleted { wake: runs_wake },
        )
        .consumer(
            ConsumerSpec::new("invoicing-payments", "PAYMENT", "payment.intent.succeeded"),
            events::PaymentsSucceeded,
        )
        .task("assembler", move |stop| assembler.serve(stop))
        .task("finalizer", move |stop| finalizer.serve(stop))
        .build())
}
