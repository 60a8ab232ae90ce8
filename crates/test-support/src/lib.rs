//! Test helpers shared by every crate's integration tests.
//!
//! Tests run in parallel against one real Postgres, Redis and NATS, so each test gets its own
//! database ([`TestDb`]) and its own event prefix ([`unique_prefix`]); [`spawn`] serves a
//! built service on an ephemeral port. Connection URLs come from `DATABASE_URL`, `REDIS_URL`
//! and `NATS_URL` (as `cargo xtask test` sets them), defaulting to the local default ports.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use platform::{App, CancellationToken, ServiceConfig, ServiceName};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::net::TcpListener;

/// Databases made by earlier runs are dropped once they are this old (seconds).
const STALE_AFTER_SECS: u64 = 2 * 3600;

/// The admin Postgres URL tests create their databases from.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@localhost:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://localhost:6379".into())
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://localhost:4222".into())
}

/// A short random token, unique per call: `t3f9a...`.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A fresh, empty database for one test. Dropped (forcibly) by [`TestDb::drop_db`], and in
/// any case by a later run once stale, so crashed tests do not pile up databases.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let name = format!(
            "test_{now}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        let mut admin = admin_conn().await;
        drop_stale(&mut admin, now).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE for a test");
        let url = url_with_db(&name);
        TestDb { name, url }
    }

    /// A pool on this database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Drops the database, closing any connections still open on it.
    pub async fn drop_db(self) {
        let mut admin = admin_conn().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await;
    }
}

/// `DATABASE_URL` with its database replaced by `name`.
pub fn url_with_db(name: &str) -> String {
    let opts = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL is a Postgres URL");
    opts.database(name).to_url_lossy().to_string()
}

async fn admin_conn() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&url_with_db("postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "tests need Postgres at DATABASE_URL ({}): {e}",
                database_url()
            )
        })
}

async fn drop_stale(admin: &mut sqlx::PgConnection, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let made: Option<u64> = name.split('_').nth(1).and_then(|t| t.parse().ok());
        if made.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER_SECS) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

/// A configuration for `service` pointing at `database_url`, the test's event `prefix`, the
/// test Redis/NATS, and port 0; `extra` overrides any variable.
pub fn config(
    service: ServiceName,
    database_url: &str,
    prefix: &str,
    extra: &[(&str, String)],
) -> ServiceConfig {
    let lookup = |var: &str| -> Option<String> {
        if let Some((_, v)) = extra.iter().find(|(k, _)| *k == var) {
            return Some(v.clone());
        }
        match var {
            "DATABASE_URL" => Some(database_url.to_string()),
            "REDIS_URL" => Some(redis_url()),
            "NATS_URL" => Some(nats_url()),
            "EVENT_PREFIX" => Some(prefix.to_string()),
            "LISTEN_ADDR" => Some("127.0.0.1:0".into()),
            "SHUTDOWN_GRACE_SECS" => Some("2".into()),
            "OUTBOX_POLL_MS" => Some("100".into()),
            "LOG_FORMAT" => Some("pretty".into()),
            _ => None,
        }
    };
    ServiceConfig::from_lookup(service, lookup).expect("test configuration is valid")
}

/// A service serving on an ephemeral port; stopped when dropped.
#[derive(Debug)]
pub struct RunningService {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningService {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves `app` on 127.0.0.1:0.
pub async fn spawn(app: App) -> RunningService {
    install_tls_provider();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("bound socket has an address");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.serve(listener, shutdown.clone()));
    RunningService {
        addr,
        shutdown,
        handle: Some(handle),
    }
}

/// reqwest is built with rustls but no default crypto provider (the gateway installs ring at
/// start-up); test clients may run before any gateway, so tests install it too.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs a test-friendly log subscriber (honours `RUST_LOG`) and the TLS provider.
pub fn init_logging() {
    install_tls_provider();
    platform::telemetry::init_logging(platform::config::LogFormat::Pretty);
}

/// The text of a PDF as poppler's `pdftotext -layout` reads it: an independent reader of what
/// we render (`poppler-utils` is installed by `.ci/run`).
pub fn pdftotext(pdf: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("pdftotext")
        .args(["-layout", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pdftotext (poppler-utils) is installed");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(pdf)
        .expect("pdftotext reads the PDF");
    let out = child.wait_with_output().expect("pdftotext finishes");
    assert!(out.status.success(), "pdftotext refused the PDF");
    String::from_utf8(out.stdout).expect("pdftotext writes UTF-8")
}
