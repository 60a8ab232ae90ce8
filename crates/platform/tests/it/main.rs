//! Integration tests of the platform against real Postgres and NATS JetStream.

mod app;
mod channel;
mod db_errors;
mod events;
mod metrics_upkeep;
