//! `cargo xtask`: the project's task runner.
//!
//! - `up`: the whole stack, using Postgres/Redis/NATS where they answer on their default
//!   ports, else private instances under `target/xtask/`; prints the gateway URL and a demo
//!   token; Ctrl-C or SIGTERM stops everything it started.
//! - `test [-- args]`: the test suite against the same infrastructure rules (installs the
//!   pinned schemathesis and scim2-tester first, for the fuzzing and SCIM conformance tests).
//! - `bench <name> [-- args]`: a benchmark (see BENCHMARKS.md).
//! - `faults`: the fault suite (`faults/`); `load`: the k6 load runs (`load/`, `tests/load/`).
//! - `token --tenant T [--subject S] [--roles a,b] [--ttl-secs N]`: a dev JWT.

mod bench_all;
mod bench_billing;
mod bench_gateway;
mod bench_invoicing;
mod bench_metering;
mod bench_notifications;
mod bench_payments;
mod client;
mod cluster;
mod faults;
mod infra;
mod load;
mod pytools;
mod stack;
mod token;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  up [--nats-cluster] [--replicas N]
                          run all seven services (Ctrl-C stops everything);
                          --nats-cluster: on three local NATS nodes, streams at R3;
                          --replicas N: N processes of every service (N gateways)
  test [-- ARGS]          run the test suite (nextest if installed) against real Postgres/Redis/NATS
  bench <name> [-- ARGS]  run a benchmark: pipeline, limiter, billing, billing-run, gateway, metering, invoicing, payments, notifications;
                          all: every one, then the summary table at the top of BENCHMARKS.md
  faults [SCENARIO…] [--short] [--debug]
                          kill and restart parts of a fresh stack under load; reconcile what was sent
  load <SCENARIO…|all|soak> [--smoke] [--debug] [--minutes N] [KEY=VALUE…]
                          k6 load runs (tests/load/) against a fresh stack: ingest, entitlements,
                          mixed, order-to-cash, psp-callbacks; soak = mixed for N minutes, memory sampled
  token --tenant T [--subject S] [--roles a,b] [--ttl-secs N]
                          mint a development JWT (HS256, JWT_HS256_SECRET or the dev default)
  infra                   only start the infrastructure and wait (for debugging)

XTASK_PRIVATE_INFRA=1 forces private Postgres/Redis/NATS even when the default ports answer.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    match cmd {
        "up" => stack::up(rest),
        "test" => test(passthrough(rest)),
        "bench" => bench(rest),
        "faults" => faults::run(passthrough(rest)),
        "load" => load::run(passthrough(rest)),
        "token" => {
            println!("{}", token::from_args(rest)?);
            Ok(ExitCode::SUCCESS)
        }
        "infra" => stack::infra_only(),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// Arguments after a leading `--`, or all of them.
fn passthrough(args: &[String]) -> &[String] {
    match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(extra: &[String]) -> Result<ExitCode> {
    let tools = pytools::ensure()?;
    let checkers = pytools::manifest_checkers()?;
    let infra = infra::Infra::ensure()?;
    let nextest = cargo()
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = cargo();
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(extra)
        .envs(infra.test_env())
        .env("SCHEMATHESIS", &tools.schemathesis)
        .env("SCIM_TESTER_PYTHON", &tools.python)
        .env("PYTOOLS_PYTHON", &tools.python)
        .env("MOTO_SERVER", &tools.moto_server)
        .env("KUBERNETES_VALIDATE", &checkers.kubernetes_validate)
        .env("CHECKOV", &checkers.checkov);
    println!("xtask: {cmd:?}");
    let status = cmd.status().context("running cargo")?;
    drop(infra);
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Benchmarks by name: what `cargo xtask bench <name>` runs.
const BENCHES: &[(&str, &[&str])] = &[
    (
        "pipeline",
        &[
            "run",
            "--release",
            "-p",
            "concurrency",
            "--example",
            "pipeline_bench",
            "--",
        ],
    ),
    (
        "limiter",
        &[
            "run",
            "--release",
            "-p",
            "gateway",
            "--example",
            "limiter_bench",
            "--",
        ],
    ),
    (
        "billing",
        &[
            "run",
            "--release",
            "-p",
            "billing-service",
            "--bin",
            "billing-service",
            "--",
            "run",
        ],
    ),
];

fn bench(args: &[String]) -> Result<ExitCode> {
    if args.first().map(String::as_str) == Some("all") {
        return bench_all::run();
    }
    if args.first().map(String::as_str) == Some("gateway") {
        return bench_gateway::run(passthrough(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("billing-run") {
        return bench_billing::run(passthrough(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("metering") {
        return bench_metering::run(passthrough(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("invoicing") {
        return bench_invoicing::run(passthrough(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("payments") {
        return bench_payments::run(passthrough(&args[1..]));
    }
    if args.first().map(String::as_str) == Some("notifications") {
        return bench_notifications::run(passthrough(&args[1..]));
    }
    let names: Vec<&str> = BENCHES
        .iter()
        .map(|(n, _)| *n)
        .chain([
            "billing-run",
            "gateway",
            "metering",
            "invoicing",
            "payments",
            "notifications",
        ])
        .collect();
    let Some((name, rest)) = args.split_first() else {
        bail!("which benchmark? one of: {}", names.join(", "));
    };
    let Some((_, cargo_args)) = BENCHES.iter().find(|(n, _)| n == name) else {
        bail!("unknown benchmark {name:?}; one of: {}", names.join(", "));
    };
    let status = cargo()
        .args(*cargo_args)
        .args(passthrough(rest))
        .status()
        .context("running cargo")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
