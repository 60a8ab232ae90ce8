//! The `subscription-service` binary: configuration from the environment, then serve until SIGTERM.
//!
//! It allocates with mimalloc (without transparent huge pages, see the workspace
//! `Cargo.toml`): with the system allocator its entitlement checks ran a quarter slower.
//! ARCHITECTURE.md "Decisions" has the figures.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_service(
        platform::ServiceName::Subscription,
        subscription_service::build,
    )
    .await
}
