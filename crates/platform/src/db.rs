//! Postgres: create the service's database if it is missing, open a pool, run migrations.
//!
//! Every service owns one database (DESIGN.md §2). The platform's own tables (outbox, inbox)
//! are migrated first and tracked in `_platform_migrations`, so a service's migration history
//! in `_sqlx_migrations` stays its own.

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::ServiceConfig;

/// Migrations every service database gets (outbox and inbox).
pub static PLATFORM_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/platform");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid Postgres URL: {0}")]
    BadUrl(#[source] sqlx::Error),
    #[error("DATABASE_URL names no database")]
    NoDatabase,
    #[error("cannot create database {name:?}: {source}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Pool settings taken from [`ServiceConfig`].
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
}

impl From<&ServiceConfig> for PoolSettings {
    fn from(cfg: &ServiceConfig) -> Self {
        PoolSettings {
            max_connections: cfg.db_max_connections,
            acquire_timeout: cfg.db_acquire_timeout,
        }
    }
}

/// Creates the database named in `url` unless it exists (connecting to `postgres` to do so).
pub async fn ensure_database(url: &str) -> Result<(), DbError> {
    let opts = PgConnectOptions::from_str(url).map_err(DbError::BadUrl)?;
    let name = opts
        .get_database()
        .map(str::to_string)
        .ok_or(DbError::NoDatabase)?;
    let mut admin = opts
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(DbError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(DbError::Connect)?;
    if !exists {
        // Identifiers cannot be bound as parameters; quote it (doubling embedded quotes).
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // 42P04 duplicate_database: another replica won the race, which is fine.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            // 23505: concurrent CREATE DATABASE can also surface as a unique violation.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
            Err(source) => return Err(DbError::Create { name, source }),
        }
    }
    Ok(())
}

/// Ensures the database exists, opens a pool and runs the platform's and the service's
/// migrations.
pub async fn connect_and_migrate(
    url: &str,
    settings: PoolSettings,
    migrator: &Migrator,
) -> Result<PgPool, DbError> {
    ensure_database(url).await?;
    let opts = PgConnectOptions::from_str(url).map_err(DbError::BadUrl)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(opts)
        .await
        .map_err(DbError::Connect)?;
    let mut platform = Migrator {
        migrations: PLATFORM_MIGRATOR.migrations.clone(),
        ..Migrator::DEFAULT
    };
    platform.dangerous_set_table_name("_platform_migrations");
    platform.run(&pool).await?;
    migrator.run(&pool).await?;
    Ok(pool)
}
