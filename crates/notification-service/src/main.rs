//! The `notification-service` binary: configuration from the environment, then serve until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_service(
        platform::ServiceName::Notification,
        notification_service::build,
    )
    .await
}
