//! The `invoicing-service` binary: configuration from the environment, then serve until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_service(platform::ServiceName::Invoicing, invoicing_service::build).await
}
