//! The `gateway` binary: configuration from the environment, then serve until SIGTERM.
//!
//! Unlike the other services it allocates with the system allocator: under a 10-minute soak
//! its resident memory crept with mimalloc (+10 % with transparent huge pages, +7 % and still
//! climbing without) while its live heap stayed flat at ~8.5 MB (heaptrack), and with glibc
//! it levelled off (+3 %). BENCHMARKS.md "Load" has the runs; ARCHITECTURE.md "Decisions" the
//! CPU this costs.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_service(platform::ServiceName::Gateway, gateway::build).await
}
