//! The body of every service's `main`: config, telemetry, build, bind, serve until a signal.

use std::future::Future;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::app::{App, shutdown_signal};
use crate::config::{ServiceConfig, ServiceName};
use crate::infra::StartError;

/// Runs `build` as the process' service until SIGTERM/Ctrl-C, then drains. A start-up failure
/// is printed (naming the bad variable or unreachable dependency) and exits non-zero.
pub async fn run_service<F, Fut>(service: ServiceName, build: F) -> ExitCode
where
    F: FnOnce(ServiceConfig) -> Fut,
    Fut: Future<Output = Result<App, StartError>>,
{
    match try_run_service(service, build).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{service} failed");
            eprintln!("{service}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn try_run_service<F, Fut>(service: ServiceName, build: F) -> Result<(), StartError>
where
    F: FnOnce(ServiceConfig) -> Fut,
    Fut: Future<Output = Result<App, StartError>>,
{
    let cfg = ServiceConfig::from_env(service)?;
    crate::telemetry::init(&cfg);
    let addr = cfg.listen_addr;
    let app = build(cfg).await?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Other(format!("cannot bind LISTEN_ADDR={addr}: {e}")))?;
    app.serve(listener, shutdown_signal())
        .await
        .map_err(|e| StartError::Other(format!("server error: {e}")))
}
