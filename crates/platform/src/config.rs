//! Service configuration, read once from the environment (12-factor) and validated at start-up.
//!
//! Every service binary uses the same [`ServiceConfig`]; knobs a service does not need are simply
//! unused. A bad value fails start-up with an error that names the variable, so a typo in a
//! deployment manifest is caught before the service takes traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The seven services of the platform. Used for defaults (port, database name) and telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    Gateway,
    User,
    Subscription,
    Billing,
    Payment,
    Invoicing,
    Notification,
}

impl ServiceName {
    pub const ALL: [ServiceName; 7] = [
        ServiceName::Gateway,
        ServiceName::User,
        ServiceName::Subscription,
        ServiceName::Billing,
        ServiceName::Payment,
        ServiceName::Invoicing,
        ServiceName::Notification,
    ];

    /// Short name: `user`, `billing`, ... Used in database names and log fields.
    pub fn short(self) -> &'static str {
        match self {
            ServiceName::Gateway => "gateway",
            ServiceName::User => "user",
            ServiceName::Subscription => "subscription",
            ServiceName::Billing => "billing",
            ServiceName::Payment => "payment",
            ServiceName::Invoicing => "invoicing",
            ServiceName::Notification => "notification",
        }
    }

    /// The binary (and crate) name: `gateway`, `user-service`, ...
    pub fn binary(self) -> &'static str {
        match self {
            ServiceName::Gateway => "gateway",
            ServiceName::User => "user-service",
            ServiceName::Subscription => "subscription-service",
            ServiceName::Billing => "billing-service",
            ServiceName::Payment => "payment-service",
            ServiceName::Invoicing => "invoicing-service",
            ServiceName::Notification => "notification-service",
        }
    }

    /// Default port: the gateway on 8080, the internal services on 50051..=50056.
    pub fn default_port(self) -> u16 {
        match self {
            ServiceName::Gateway => 8080,
            ServiceName::User => 50051,
            ServiceName::Subscription => 50052,
            ServiceName::Billing => 50053,
            ServiceName::Payment => 50054,
            ServiceName::Invoicing => 50055,
            ServiceName::Notification => 50056,
        }
    }

    /// The environment variable through which other services find this one (`USER_SERVICE_ADDR`).
    pub fn addr_var(self) -> &'static str {
        match self {
            ServiceName::Gateway => "GATEWAY_ADDR",
            ServiceName::User => "USER_SERVICE_ADDR",
            ServiceName::Subscription => "SUBSCRIPTION_SERVICE_ADDR",
            ServiceName::Billing => "BILLING_SERVICE_ADDR",
            ServiceName::Payment => "PAYMENT_SERVICE_ADDR",
            ServiceName::Invoicing => "INVOICING_SERVICE_ADDR",
            ServiceName::Notification => "NOTIFICATION_SERVICE_ADDR",
        }
    }

    /// The internal (gRPC) services, i.e. everything but the gateway.
    pub fn internal() -> impl Iterator<Item = ServiceName> {
        Self::ALL.into_iter().filter(|s| *s != ServiceName::Gateway)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.binary())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// A configuration value that could not be used. Always names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &'static str, value: &str, reason: &str) -> ConfigError {
        ConfigError {
            var,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Every variable [`ServiceConfig`] reads, with its default and meaning. The README's
/// configuration table and the docker-compose test are checked against this list.
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "LISTEN_ADDR",
        "127.0.0.1:<service port>",
        "address this service binds; gRPC and HTTP share it",
    ),
    (
        "DATABASE_URL",
        "postgres://postgres@localhost:5432/saas_<service>",
        "the service's own Postgres database; created if missing, migrated at start-up",
    ),
    ("DB_MAX_CONNECTIONS", "16", "Postgres pool size"),
    (
        "DB_ACQUIRE_TIMEOUT_MS",
        "5000",
        "how long a query waits for a pooled connection",
    ),
    (
        "REDIS_URL",
        "redis://localhost:6379",
        "Redis (rate limits, idempotency records, caches)",
    ),
    (
        "NATS_URL",
        "nats://localhost:4222",
        "NATS server with JetStream; a cluster's servers comma-separated (any that answers will do)",
    ),
    (
        "EVENT_PREFIX",
        "(empty)",
        "prefix for JetStream stream names and subjects and for Redis keys; isolates stacks sharing one NATS and Redis",
    ),
    (
        "EVENT_STREAM_REPLICAS",
        "1",
        "copies JetStream keeps of each stream: 1 on a single NATS server, 3 on a three-node cluster (one node may fail without losing an event)",
    ),
    (
        "MAX_WORKERS",
        "8",
        "concurrent worker tasks per service (Limiter::spawn)",
    ),
    (
        "MAX_DB_JOBS",
        "8",
        "concurrent database sections per service (Limiter::run)",
    ),
    ("LOG_FORMAT", "pretty", "pretty or json"),
    ("RUST_LOG", "info", "tracing filter directives"),
    (
        "SHUTDOWN_GRACE_SECS",
        "20",
        "how long in-flight requests may drain after SIGTERM",
    ),
    (
        "REQUEST_TIMEOUT_MS",
        "30000",
        "per-request timeout on the HTTP side",
    ),
    (
        "HEADER_READ_TIMEOUT_MS",
        "75000",
        "how long a client may take to send a request's head, a new connection its first bytes; also how long an idle HTTP/1 keep-alive connection stays open (keep it above a load balancer's idle timeout)",
    ),
    (
        "HTTP2_IDLE_TIMEOUT_SECS",
        "300",
        "an HTTP/2 connection with no call for this long is closed (GOAWAY); clients reconnect",
    ),
    (
        "MAX_CONNECTIONS",
        "10000",
        "open connections this process serves at once; beyond it, new ones wait in the listen backlog",
    ),
    (
        "GRPC_TIMEOUT_MS",
        "5000",
        "deadline on every east-west gRPC call",
    ),
    (
        "OUTBOX_POLL_MS",
        "500",
        "how often the outbox relay looks for unsent events",
    ),
    (
        "GATEWAY_ADDR",
        "http://127.0.0.1:8080",
        "where the gateway listens (for tools)",
    ),
    (
        "USER_SERVICE_ADDR",
        "http://127.0.0.1:50051",
        "user service gRPC endpoint; its replicas comma-separated, taken in turn, or `dns://host:port`: every address the name resolves to (a headless Service), looked up every 5 s",
    ),
    (
        "SUBSCRIPTION_SERVICE_ADDR",
        "http://127.0.0.1:50052",
        "subscription service gRPC endpoint; its replicas comma-separated, taken in turn, or `dns://host:port`: every address the name resolves to (a headless Service), looked up every 5 s",
    ),
    (
        "BILLING_SERVICE_ADDR",
        "http://127.0.0.1:50053",
        "billing service gRPC endpoint; its replicas comma-separated, taken in turn, or `dns://host:port`: every address the name resolves to (a headless Service), looked up every 5 s",
    ),
    (
        "PAYMENT_SERVICE_ADDR",
        "http://127.0.0.1:50054",
        "payment service gRPC endpoint; its replicas comma-separated, taken in turn, or `dns://host:port`: every address the name resolves to (a headless Service), looked up every 5 s",
    ),
    (
        "INVOICING_SERVICE_ADDR",
        "http://127.0.0.1:50055",
        "invoicing service gRPC endpoint; its replicas comma-separated, taken in turn, or `dns://host:port`: every address the name resolves to (a headless Service), looked up every 5 s",
    ),
    (
        "NOTIFICATION_SERVICE_ADDR",
        "http://127.0.0.1:50056",
        "notification service gRPC endpoint; its replicas comma-separated, taken in turn, or `dns://host:port`: every address the name resolves to (a headless Service), looked up every 5 s",
    ),
];

/// Returns true when `var` is one [`ServiceConfig`] reads.
pub fn is_known_var(var: &str) -> bool {
    ENV_VARS.iter().any(|(name, _, _)| *name == var)
}

/// Configuration of one service process. Its `Debug` hides the passwords in connection URLs.
#[derive(Clone)]
pub struct ServiceConfig {
    pub service: ServiceName,
    pub listen_addr: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    pub redis_url: String,
    pub nats_url: String,
    pub event_prefix: String,
    /// JetStream replicas of every stream (R1 on one server, R3 on a cluster).
    pub event_stream_replicas: usize,
    pub max_workers: usize,
    pub max_db_jobs: usize,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub request_timeout: Duration,
    /// Slow clients (slowloris) are cut off after this long without a complete request head;
    /// hyper's timer runs from the end of the previous response, so it is also the HTTP/1
    /// keep-alive idle timeout (75 s as nginx's, above common load balancers' 60 s, so the
    /// balancer, not us, closes idle connections and never sends on one we just closed).
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no call for this long is closed.
    pub http2_idle_timeout: Duration,
    pub max_connections: usize,
    pub grpc_timeout: Duration,
    pub outbox_poll: Duration,
    /// gRPC endpoints of the other services (`http://host:port`, several comma-separated, or `dns://host:port`), keyed by service.
    pub upstreams: BTreeMap<ServiceName, String>,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::secret::redact_url;
        f.debug_struct("ServiceConfig")
            .field("service", &self.service)
            .field("listen_addr", &self.listen_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("redis_url", &redact_url(&self.redis_url))
            .field("nats_url", &redact_url(&self.nats_url))
            .field("event_prefix", &self.event_prefix)
            .field("max_workers", &self.max_workers)
            .field("max_db_jobs", &self.max_db_jobs)
            .field("upstreams", &self.upstreams)
            .finish_non_exhaustive()
    }
}

impl ServiceConfig {
    /// Reads the process environment.
    pub fn from_env(service: ServiceName) -> Result<Self, ConfigError> {
        Self::from_lookup(service, |var| std::env::var(var).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(
        service: ServiceName,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let listen_addr = match get("LISTEN_ADDR") {
            Some(v) => v.trim().parse().map_err(|e| ConfigError {
                var: "LISTEN_ADDR",
                value: v.clone(),
                reason: format!("expected host:port ({e})"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], service.default_port())),
        };
        let database_url = url_var(
            &get,
            "DATABASE_URL",
            &["postgres://", "postgresql://"],
            format!(
                "postgres://postgres@localhost:5432/saas_{}",
                service.short()
            ),
        )?;
        let redis_url = url_var(
            &get,
            "REDIS_URL",
            &["redis://", "rediss://"],
            "redis://localhost:6379".into(),
        )?;
        let nats_url = url_var(
            &get,
            "NATS_URL",
            &["nats://", "tls://"],
            "nats://localhost:4222".into(),
        )?;
        let event_prefix = get("EVENT_PREFIX").unwrap_or_default();
        if !event_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError {
                var: "EVENT_PREFIX",
                value: event_prefix,
                reason: "only ASCII letters, digits, '_' and '-' are allowed".into(),
            });
        }
        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    var: "LOG_FORMAT",
                    value: other.into(),
                    reason: "expected `pretty` or `json`".into(),
                });
            }
        };
        let mut upstreams = BTreeMap::new();
        for s in ServiceName::ALL {
            let default = format!("http://127.0.0.1:{}", s.default_port());
            upstreams.insert(
                s,
                url_var(
                    &get,
                    s.addr_var(),
                    &["http://", "https://", "dns://"],
                    default,
                )?,
            );
        }
        Ok(ServiceConfig {
            service,
            listen_addr,
            database_url,
            db_max_connections: num_var(&get, "DB_MAX_CONNECTIONS", 16, 1, 10_000)?,
            db_acquire_timeout: ms_var(&get, "DB_ACQUIRE_TIMEOUT_MS", 5_000)?,
            redis_url,
            nats_url,
            event_prefix,
            event_stream_replicas: num_var(&get, "EVENT_STREAM_REPLICAS", 1, 1, 5)? as usize,
            max_workers: num_var(&get, "MAX_WORKERS", 8, 1, 100_000)? as usize,
            max_db_jobs: num_var(&get, "MAX_DB_JOBS", 8, 1, 100_000)? as usize,
            log_format,
            shutdown_grace: Duration::from_secs(
                num_var(&get, "SHUTDOWN_GRACE_SECS", 20, 0, 3_600)?.into(),
            ),
            request_timeout: ms_var(&get, "REQUEST_TIMEOUT_MS", 30_000)?,
            header_read_timeout: ms_var(&get, "HEADER_READ_TIMEOUT_MS", 75_000)?,
            http2_idle_timeout: Duration::from_secs(
                num_var(&get, "HTTP2_IDLE_TIMEOUT_SECS", 300, 1, 86_400)?.into(),
            ),
            max_connections: num_var(&get, "MAX_CONNECTIONS", 10_000, 1, 1_000_000)? as usize,
            grpc_timeout: ms_var(&get, "GRPC_TIMEOUT_MS", 5_000)?,
            outbox_poll: ms_var(&get, "OUTBOX_POLL_MS", 500)?,
            upstreams,
        })
    }

    /// The gRPC endpoint of another service.
    pub fn upstream(&self, service: ServiceName) -> &str {
        // Every service is inserted in `from_lookup`, so the lookup cannot miss.
        self.upstreams
            .get(&service)
            .map(String::as_str)
            .expect("from_lookup fills an upstream for every ServiceName")
    }

    /// The concurrency budgets this service runs with.
    pub fn limiter(&self) -> concurrency::Limiter {
        concurrency::Limiter::new(concurrency::LimiterConfig {
            max_workers: self.max_workers,
            max_db_jobs: self.max_db_jobs,
        })
        .expect("from_lookup rejects zero budgets")
    }
}

fn url_var(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
    schemes: &[&str],
    default: String,
) -> Result<String, ConfigError> {
    let Some(value) = get(var) else {
        return Ok(default);
    };
    let value = value.trim().to_string();
    if schemes.iter().any(|s| value.starts_with(s))
        && value.len() > value.find("://").unwrap_or(0) + 3
    {
        Ok(value)
    } else {
        Err(ConfigError {
            var,
            value,
            reason: format!("expected a URL starting with {}", schemes.join(" or ")),
        })
    }
}

/// A whole-number variable in `min..=max` (a service's own settings read theirs with it).
pub fn num_var(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    let Some(value) = get(var) else {
        return Ok(default);
    };
    match value.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError {
            var,
            value,
            reason: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

/// A duration written as a whole number and a unit: `5s`, `30m`, `2h`, `7d` (schedules in
/// settings are lists of these).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and d, h, m or s"))?;
    let secs = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => return Err(format!("{text:?}: the unit is d, h, m or s")),
    };
    secs.filter(|s| *s <= 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: at most a year"))
}

fn ms_var(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
    default_ms: u32,
) -> Result<Duration, ConfigError> {
    num_var(get, var, default_ms, 1, 86_400_000).map(|ms| Duration::from_millis(ms.into()))
}

#[cfg(test)]
mod tests;
