//! The `user-service` binary: configuration from the environment, then serve until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_service(platform::ServiceName::User, user_service::build).await
}
