//! `cargo xtask bench notifications`: the notification service's sender against a local
//! receiver, beside a plain reqwest loop posting the same bodies, and e-mail to an SMTP sink
//! (aiosmtpd's `Sink`, from the xtask virtualenv). The measuring is done by the release build
//! of `crates/notification-service/examples/delivery_bench.rs` (see there); options pass
//! through: `--messages N` (5000), `--endpoints E` (8), `--latency-messages N` (1000),
//! `--mails N` (2000).

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::infra::{self, Infra};

pub fn run(args: &[String]) -> Result<ExitCode> {
    let built = crate::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "notification-service",
            "--example",
            "delivery_bench",
        ])
        .status()
        .context("building the benchmark")?;
    if !built.success() {
        bail!("building the benchmark failed");
    }
    let tools = crate::pytools::ensure()?;
    let infra = Infra::ensure()?;
    let port = infra::free_port()?;
    let mut sink = Command::new(&tools.python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Sink"])
        .spawn()
        .context("starting aiosmtpd")?;
    let result = (|| -> Result<ExitCode> {
        for _ in 0..100 {
            if infra::answers(port) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let bench = crate::stack::target_dir()?
            .join("release")
            .join("examples")
            .join("delivery_bench");
        println!(
            "xtask: signed webhook deliveries vs a plain reqwest loop, event-to-delivery latency, e-mails to aiosmtpd on {port}"
        );
        let out = crate::bench_all::echoed(
            Command::new(bench)
                .args(args)
                .args(["--smtp", &format!("smtp://127.0.0.1:{port}")])
                .env("DATABASE_URL", infra.database_url("postgres"))
                .env("RUST_LOG", "warn"),
        )?;
        let figure = |key: &str| {
            out.lines()
                .flat_map(str::split_whitespace)
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        crate::bench_all::headline(crate::bench_all::Headline {
            bench: "notifications",
            what: "signed webhook deliveries, leased and recorded",
            value: format!("{:.0}/s", figure("webhook_per_sec")),
            baseline: format!("plain reqwest loop {:.0}/s", figure("baseline_per_sec")),
            target: None,
            met: true,
        });
        Ok(ExitCode::SUCCESS)
    })();
    infra::terminate(&mut sink, Duration::from_secs(2));
    drop(infra);
    result
}
