//! `payment-service sandbox`: the sandbox PSP as a process of its own, for a stack whose
//! payment service reaches it as a PSP elsewhere (`SANDBOX_PSP=http://…`) — one that outlives
//! the payment service, as a real PSP does. The fault suite kills the payment service while
//! it charges, then asks the sandbox how often money moved (`GET /sandbox/charges`).
//!
//! It reads `SANDBOX_PSP_ADDR`, `SANDBOX_CALLBACK_URL` and `SANDBOX_WEBHOOK_SECRET` (which
//! the payment service must share to verify its callbacks).

use std::process::ExitCode;

use super::Sandbox;
use crate::settings::{SANDBOX_API_KEY, SandboxMode, Settings};

/// Serves the sandbox until SIGTERM or Ctrl-C.
pub async fn run() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payment-service sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let SandboxMode::Embedded(addr) = settings.sandbox else {
        eprintln!("payment-service sandbox: SANDBOX_PSP must be unset or `embedded`");
        return ExitCode::FAILURE;
    };
    let sandbox = match Sandbox::start(
        addr,
        SANDBOX_API_KEY,
        settings.sandbox_webhook_secret.expose(),
        Some(settings.sandbox_callback_url.clone()),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("payment-service sandbox: SANDBOX_PSP_ADDR {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "payment-service sandbox: the sandbox PSP on {}, callbacks to {}",
        sandbox.base_url(),
        settings.sandbox_callback_url
    );
    platform::shutdown_signal().cancelled().await;
    sandbox.stop();
    ExitCode::SUCCESS
}
