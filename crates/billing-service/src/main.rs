//! The `billing-service` binary: serve until SIGTERM, or `run --synthetic N` (see `cli`).
//!
//! It allocates with mimalloc (without transparent huge pages, see the workspace
//! `Cargo.toml`), like the subscription service: a run folds millions of records, and
//! BENCHMARKS.md's run figures were measured with it. ARCHITECTURE.md "Decisions" has why.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("run") {
        return billing_service::cli::synthetic(&args[1..]).await;
    }
    platform::run_service(platform::ServiceName::Billing, billing_service::build).await
}
