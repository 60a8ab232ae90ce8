//! The service toolbox every binary of the platform is built from.
//!
//! Small, independent pieces rather than a framework: [`config`] reads and validates the
//! environment once; [`telemetry`] sets up logs and the Prometheus recorder; [`db`], [`cache`]
//! and [`events`] connect to the infrastructure (with the outbox/inbox guarantees of
//! DESIGN.md §5); [`app`] serves gRPC and HTTP on one port with probes, request ids and
//! graceful shutdown; [`problem`] is the RFC 9457 error body; [`grpc`] holds east-west client
//! helpers.

pub mod app;
mod batched;
pub mod cache;
pub mod config;
mod conn;
pub mod db;
mod dispatch;
pub mod events;
pub mod grpc;
pub mod health;
pub mod infra;
mod observe;
pub mod paging;
pub mod problem;
pub mod run;
pub mod secret;
pub mod telemetry;
mod unread;

pub use app::{App, AppBuilder, shutdown_signal};
pub use config::{ServiceConfig, ServiceName};
pub use infra::{Backbone, StartError};
pub use problem::Problem;
pub use run::run_service;
pub use secret::Secret;

/// Re-exported so services need not depend on tokio-util directly.
pub use tokio_util::sync::CancellationToken;
