//! The `billing-service` binary: serve until SIGTERM, or `run --synthetic N` (see `cli`).

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
