//! The `gateway` binary: configuration from the environment, then serve until SIGTERM.
//!
//! It allocates with the system allocator, as do user, payment, invoicing and notification:
//! under soaks the live heap stayed small (heaptrack) while mimalloc's resident memory crept
//! or moved in 2 MB huge-page steps. Only subscription and billing, whose throughput the
//! allocator decides, keep mimalloc. ARCHITECTURE.md "Decisions" has the reasons and runs.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_service(platform::ServiceName::Gateway, gateway::build).await
}
