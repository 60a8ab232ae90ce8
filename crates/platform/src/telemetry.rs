//! Logging and metrics set-up: `tracing` to stdout (pretty or JSON) and one process-wide
//! Prometheus recorder.
//!
//! Both are process-global, yet tests start several services in one process; so both are
//! installed at most once and later calls are no-ops.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServiceConfig};

/// Installs the tracing subscriber for this process (first call wins).
pub fn init(cfg: &ServiceConfig) {
    init_logging(cfg.log_format);
    let _ = metrics_handle();
}

/// Installs the tracing subscriber with the given format, honouring `RUST_LOG`.
pub fn init_logging(format: LogFormat) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,sqlx=warn,async_nats=warn,h2=warn,tower=warn")
        });
        // Colours only on a terminal: piped logs (xtask up, log shippers) stay plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi);
        // try_init: a test harness may have installed a subscriber already.
        let _ = match format {
            LogFormat::Pretty => builder.compact().try_init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .try_init(),
        };
    });
}

/// How often histogram samples are folded into their summaries without a scrape.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// The process-wide Prometheus recorder; `/metrics` renders it.
///
/// Histogram samples pile up in the recorder until something drains them: a scrape does,
/// and so does upkeep, which a thread of its own runs every second — memory stays bounded
/// whether or not anyone scrapes `/metrics` (without it, a gateway under load nobody
/// scraped grew ~25 bytes per request).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours still renders its
        // own (empty) registry, which is the best we can do without owning the global.
        let _ = metrics::set_global_recorder(recorder);
        let upkept = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkept.run_upkeep();
                    UPKEEPS.fetch_add(1, Ordering::Relaxed);
                }
            });
        handle
    })
}

/// How many upkeeps the recorder has had (tests wait on it).
pub fn metrics_upkeeps() -> u64 {
    UPKEEPS.load(Ordering::Relaxed)
}
