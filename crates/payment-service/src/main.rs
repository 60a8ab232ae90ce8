//! The `payment-service` binary: configuration from the environment, then serve until SIGTERM.
//! `payment-service sandbox` serves only the sandbox PSP (see `sandbox::standalone`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("sandbox") {
        return payment_service::sandbox::standalone::run().await;
    }
    platform::run_service(platform::ServiceName::Payment, payment_service::build).await
}
