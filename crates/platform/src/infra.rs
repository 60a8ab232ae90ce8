//! The infrastructure an internal service starts with: its own migrated Postgres database and
//! the JetStream bus with the platform's streams in place.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::config::ServiceConfig;
use crate::db::{self, DbError};
use crate::events::{EventBus, EventError};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Other(String),
}

/// A service's database pool and event bus.
#[derive(Debug, Clone)]
pub struct Backbone {
    pub pool: PgPool,
    pub bus: EventBus,
}

impl Backbone {
    /// Creates and migrates the service's database, connects to NATS, ensures the streams.
    pub async fn connect(cfg: &ServiceConfig, migrator: &Migrator) -> Result<Self, StartError> {
        let pool = db::connect_and_migrate(&cfg.database_url, cfg.into(), migrator).await?;
        let bus = EventBus::connect(&cfg.nats_url, &cfg.event_prefix).await?;
        bus.ensure_streams_replicated(cfg.event_stream_replicas)
            .await?;
        Ok(Backbone { pool, bus })
    }
}
