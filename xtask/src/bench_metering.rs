//! `cargo xtask bench metering`: usage ingestion and entitlement checks.
//!
//! One run, release builds, logs at `warn`:
//! 1. Postgres `COPY` of N usage records into `usage_records` (the ceiling), then the same
//!    number of records through the gateway (`POST /v1/usage`, batches of 1,000) and straight
//!    to the subscription service over gRPC — all into the same table, records/s —, then
//!    `COPY` again; the baseline is the mean of the two `COPY`s.
//! 2. Entitlement checks through the gateway and in-service (gRPC), requests/s and latency.
//!
//! Options: `--records N` (default 200000), `--connections C` for ingestion (default 4),
//! `--seconds S` for entitlement runs (default 10).

use std::io::Write;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_all::{Headline, cell, echoed, headline};
use crate::bench_gateway::{bench_env, build_release, gateway_command, http, psql, wait_http};
use crate::infra::{self, Infra};

fn opt(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.into())
}

const PLAN: &str = r#"{"id": "bench", "name": "Bench", "currency": "USD", "interval": "month",
  "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
              "model": {"type": "per_unit", "unit_amount": "0.01"}}],
  "features": [{"key": "calls", "type": "limit", "metric": "api_calls",
                "limit": "1000000000000", "limit_kind": "hard"}]}"#;

pub fn run(args: &[String]) -> Result<ExitCode> {
    let records: usize = opt(args, "--records", "200000")
        .parse()
        .context("--records")?;
    let connections = opt(args, "--connections", "4");
    let seconds = opt(args, "--seconds", "10");
    let release = build_release(&["gateway", "subscription-service"])?;
    let infra = Infra::ensure()?;
    let tag = std::process::id();
    let db = format!("bench_sub_{tag}");
    let sub_port = infra::free_port()?;
    let gw_port = infra::free_port()?;
    let operator = crate::token::mint("ten_platform", "bench", &["platform_admin"], 3600)?;
    let tenant = "ten_bench";
    let member = crate::token::mint(tenant, "bench", &["member"], 3600)?;
    let csv = infra::workspace_root()
        .join("target")
        .join("xtask")
        .join(format!("usage-{tag}.csv"));
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> Result<()> {
        let common = |c: &mut Command| bench_env(c, &infra, tag);
        let mut svc = Command::new(release.join("subscription-service"));
        common(&mut svc);
        svc.env("LISTEN_ADDR", format!("127.0.0.1:{sub_port}"))
            .env("DATABASE_URL", infra.database_url(&db));
        children.push(svc.spawn().context("subscription-service")?);
        let mut gw = gateway_command(&release, gw_port);
        common(&mut gw);
        gw.env(
            "SUBSCRIPTION_SERVICE_ADDR",
            format!("http://127.0.0.1:{sub_port}"),
        )
        .env("GRPC_TIMEOUT_MS", "60000");
        children.push(gw.spawn().context("gateway")?);
        let gw_addr = format!("127.0.0.1:{gw_port}");
        wait_http(&format!("127.0.0.1:{sub_port}"), "/readyz")?;
        wait_http(&gw_addr, "/healthz")?;
        for (path, body) in [
            ("/v1/plans".to_string(), PLAN.to_string()),
            (
                format!("/v1/tenants/{tenant}/subscription"),
                r#"{"plan_id": "bench"}"#.into(),
            ),
            (
                "/v1/tenants/ten_copy/subscription".into(),
                r#"{"plan_id": "bench"}"#.into(),
            ),
        ] {
            let (status, reply) = http(&gw_addr, "POST", &path, &operator, &body)?;
            if status != 201 {
                bail!("POST {path} answered {status}: {reply}");
            }
        }

        // The ceiling: COPY of the same number of rows into the same table, before the
        // ingestion runs and again after them (the mean is the baseline: on a shared machine
        // one short COPY moves by half between runs, and the two bracket any drift).
        let loadgen = release.join("examples").join("loadgen");
        Command::new(&loadgen)
            .args(["header", "records/s"])
            .status()?;
        let copy = |round: &str| -> Result<f64> {
            if let Some(dir) = csv.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
            let now = chrono::Utc::now().to_rfc3339();
            for i in 0..records {
                writeln!(
                    f,
                    "ten_copy,{round}-{i},usr_{},api_calls,1,{now},{now}",
                    i % 100
                )?;
            }
            f.flush()?;
            drop(f);
            let cpu = || -> Result<f64> {
                let out = Command::new(&loadgen).arg("cpu").output()?;
                Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
            };
            let cpu_before = cpu()?;
            let started = Instant::now();
            let copy = format!(
                "\\copy usage_records (tenant_id, id, user_id, metric, quantity, ts, period_start) FROM '{}' WITH (FORMAT csv)",
                csv.display()
            );
            if !psql(&infra, &db, &copy)? {
                bail!("COPY failed");
            }
            let rate = records as f64 / started.elapsed().as_secs_f64();
            let micros = (cpu()? - cpu_before) * 1e6 / records as f64;
            println!(
                "| Postgres COPY into usage_records (ceiling; psql, one stream), {round} | 1 | {rate:.0} | - | - | - | 0 | {micros:.1} |"
            );
            Ok(rate)
        };
        let copy_before = copy("before")?;
        let n = records.to_string();
        let mut rates = Vec::new();
        for (label, mode, url, extra) in [
            (
                "gateway: POST /v1/usage, 1,000-record batches (JWT, RBAC, JSON, gRPC, dedup, rollups)",
                "ingest",
                format!("http://{gw_addr}/v1/usage"),
                vec![
                    "--header".to_string(),
                    format!("Authorization: Bearer {operator}"),
                ],
            ),
            (
                "subscription service directly: gRPC IngestUsage, 1,000-record batches",
                "grpc-ingest",
                format!("http://127.0.0.1:{sub_port}"),
                vec![],
            ),
        ] {
            let out = echoed(
                Command::new(&loadgen)
                    .args([mode, &url, tenant])
                    .args(&extra)
                    .args([
                        "--records",
                        &n,
                        "--batch",
                        "1000",
                        "--connections",
                        &connections,
                        "--label",
                        label,
                    ]),
            )?;
            rates.push(cell(&out, label, 2).unwrap_or(0.0));
        }
        let copy_rate = (copy_before + copy("after")?) / 2.0;
        println!(
            "| Postgres COPY, mean of before and after (the baseline) | 1 | {copy_rate:.0} | - | - | - | 0 | - |"
        );
        for (what, rate) in [
            (
                "usage ingestion through the gateway (POST /v1/usage, 1,000-record batches)",
                rates[0],
            ),
            ("usage ingestion straight to the service (gRPC)", rates[1]),
        ] {
            headline(Headline {
                bench: "metering",
                what,
                value: format!("{rate:.0} records/s ({:.0} %)", rate / copy_rate * 100.0),
                baseline: format!("Postgres COPY {copy_rate:.0} rows/s"),
                target: Some("≥ 50 % of COPY"),
                met: rate >= copy_rate / 2.0,
            });
        }

        println!();
        Command::new(&loadgen)
            .args(["header", "checks/s"])
            .status()?;
        let mut p99 = Vec::new();
        for conns in ["1", "64"] {
            for (label, args) in [
                (
                    "gateway: GET /v1/tenants/{id}/entitlements/calls",
                    vec![
                        "http".to_string(),
                        format!("http://{gw_addr}/v1/tenants/{tenant}/entitlements/calls"),
                        "--header".into(),
                        format!("Authorization: Bearer {member}"),
                    ],
                ),
                (
                    "in-service: gRPC CheckEntitlement (Redis-cached)",
                    vec![
                        "grpc-entitlement".into(),
                        format!("http://127.0.0.1:{sub_port}"),
                        tenant.into(),
                        "calls".into(),
                    ],
                ),
            ] {
                let out = echoed(Command::new(&loadgen).args(&args).args([
                    "--connections",
                    conns,
                    "--seconds",
                    &seconds,
                    "--label",
                    label,
                ]))?;
                p99.push(cell(&out, label, 4).unwrap_or(f64::NAN));
            }
        }
        // p99 = [gateway 1, in-service 1, gateway 64, in-service 64]
        headline(Headline {
            bench: "metering",
            what: "entitlement check in-service (gRPC, cached), one worker: p99",
            value: format!("{:.2} ms", p99[1]),
            baseline: format!("through the gateway {:.2} ms", p99[0]),
            target: Some("p99 < 2 ms"),
            met: p99[1] < 2.0,
        });
        Ok(())
    })();
    for c in children.iter_mut().rev() {
        infra::terminate(c, Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(&csv);
    let _ = psql(
        &infra,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    drop(infra);
    result.map(|_| ExitCode::SUCCESS)
}
