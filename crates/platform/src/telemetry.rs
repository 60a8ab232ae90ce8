//! Logging and metrics set-up: `tracing` to stdout (pretty or JSON) and one process-wide
//! Prometheus recorder.
//!
//! Both are process-global, yet tests start several services in one process; so both are
//! installed at most once and later calls are no-ops.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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

/// How often histogram samples are folded into their buckets without a scrape.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Buckets of every histogram named `*_seconds`: half a millisecond (an entitlement check)
/// to five minutes (a billing run over millions of records).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Buckets of any other histogram, which counts things (batches in a group commit).
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// The process-wide Prometheus recorder; `/metrics` renders it.
///
/// Histogram samples pile up in the recorder until something drains them: a scrape does,
/// and so does upkeep, which a thread of its own runs every second — memory stays bounded
/// whether or not anyone scrapes `/metrics` (without it, a gateway under load nobody
/// scraped grew ~25 bytes per request).
///
/// Histograms have fixed buckets rather than the exporter's default summaries: a summary
/// keeps a sketch whose size follows the range of values seen (~90 KB per series for
/// durations), rebuilt every 20 s, and that churn crept the services' resident memory
/// under a soak; a bucket is a counter. Buckets also add up across replicas, quantiles
/// do not.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(COUNT_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            })
            .expect("bucket lists are not empty")
            .build_recorder();
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
