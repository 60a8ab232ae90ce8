//! `cargo xtask bench billing-run`: N usage records in Postgres, billed by one run end to end
//! (`POST /v1/billing/runs` → `StreamUsage` → pipeline → summaries), side by side with
//! Postgres' own `GROUP BY tenant_id, user_id, metric` over the same rows; the billing
//! service's peak RSS and the CPU each service spends per run; then the run again for
//! MAX_WORKERS × MAX_DB_JOBS. The two sides of the comparison take five turns each; medians
//! and bests are reported.
//!
//! Options: `--records N` (default 1000000), `--tenants T` (default 100), `--grid 0` to skip
//! the MAX_WORKERS × MAX_DB_JOBS runs.

use std::io::Write;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_gateway::{
    bench_env, build_release, cpu_secs, gateway_command, http, psql, wait_http,
};
use crate::infra::{self, Infra};

/// The number after `name` in `args`, or `default`.
pub(crate) fn opt(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set of a process, in MiB (Linux `VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The mean of each phase of the runs so far, from the billing service's
/// `billing_run_phase_seconds` summary.
fn phases(metrics: &str) -> String {
    let value = |suffix: &str, phase: &str| -> Option<f64> {
        let key = format!("billing_run_phase_seconds_{suffix}{{phase=\"{phase}\"}}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
    };
    let parts: Vec<String> = ["queue", "read_fold", "write", "price", "finish"]
        .iter()
        .filter_map(|p| {
            let (sum, count) = (value("sum", p)?, value("count", p)?);
            (count > 0.0).then(|| format!("{p} {:.3} s", sum / count))
        })
        .collect();
    format!("phases per run (mean): {}", parts.join(", "))
}

/// How many times each side of the comparison runs.
const TRIES: u32 = 5;

/// The smallest and the middle value (`times` is sorted in place).
fn best_and_median(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2])
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let records = opt(args, "--records", 1_000_000);
    let tenants = opt(args, "--tenants", 100).max(1);
    let grid = opt(args, "--grid", 1) != 0;
    let release = build_release(&["gateway", "subscription-service", "billing-service"])?;
    let infra = Infra::ensure()?;
    let tag = std::process::id();
    let (sub_db, bill_db) = (format!("bench_sub_{tag}"), format!("bench_bill_{tag}"));
    let (sub_port, gw_port) = (infra::free_port()?, infra::free_port()?);
    let operator = crate::token::mint("ten_platform", "bench", &["platform_admin"], 3600)?;
    let csv = infra::workspace_root()
        .join("target")
        .join("xtask")
        .join(format!("billing-{tag}.csv"));
    let mut children: Vec<Child> = Vec::new();
    let mut billing: Option<Child> = None;
    let result = (|| -> Result<()> {
        let common = |c: &mut Command| bench_env(c, &infra, tag);
        let mut svc = Command::new(release.join("subscription-service"));
        common(&mut svc);
        svc.env("LISTEN_ADDR", format!("127.0.0.1:{sub_port}"))
            .env("DATABASE_URL", infra.database_url(&sub_db));
        children.push(svc.spawn().context("subscription-service")?);
        wait_http(&format!("127.0.0.1:{sub_port}"), "/readyz")?;
        let start_billing = |workers: u64, db_jobs: u64, shards: u64| -> Result<(Child, String)> {
            let port = infra::free_port()?;
            let mut b = Command::new(release.join("billing-service"));
            common(&mut b);
            b.env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("DATABASE_URL", infra.database_url(&bill_db))
                .env(
                    "SUBSCRIPTION_SERVICE_ADDR",
                    format!("http://127.0.0.1:{sub_port}"),
                )
                .env("MAX_WORKERS", workers.to_string())
                .env("MAX_DB_JOBS", db_jobs.to_string())
                .env("BILLING_CLOCK_SECS", "0")
                .env("BILLING_RUN_SHARDS", shards.to_string());
            let child = b.spawn().context("billing-service")?;
            wait_http(&format!("127.0.0.1:{port}"), "/readyz")?;
            Ok((child, format!("http://127.0.0.1:{port}")))
        };
        // A gateway of its own in front of the billing service at `url`: its address.
        let gateway_to = |url: &str| -> Result<(Child, String)> {
            let port = infra::free_port()?;
            let mut g = gateway_command(&release, port);
            common(&mut g);
            g.env(
                "SUBSCRIPTION_SERVICE_ADDR",
                format!("http://127.0.0.1:{sub_port}"),
            )
            .env("BILLING_SERVICE_ADDR", url);
            Ok((g.spawn().context("gateway")?, format!("127.0.0.1:{port}")))
        };
        let (child, billing_url) = start_billing(4, 8, 1)?;
        billing = Some(child);
        let mut gw = gateway_command(&release, gw_port);
        common(&mut gw);
        gw.env(
            "SUBSCRIPTION_SERVICE_ADDR",
            format!("http://127.0.0.1:{sub_port}"),
        )
        .env("BILLING_SERVICE_ADDR", &billing_url);
        children.push(gw.spawn().context("gateway")?);
        let gw_addr = format!("127.0.0.1:{gw_port}");
        wait_http(&gw_addr, "/healthz")?;

        let plan = r#"{"id": "bench", "name": "Bench", "currency": "USD", "interval": "month",
            "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                        "model": {"type": "per_unit", "unit_amount": "0.01"}}]}"#;
        let (status, reply) = http(&gw_addr, "POST", "/v1/plans", &operator, plan)?;
        if status != 201 {
            bail!("creating the plan answered {status}: {reply}");
        }
        for t in 0..tenants {
            let path = format!("/v1/tenants/ten_{t:05}/subscription");
            let (status, reply) = http(
                &gw_addr,
                "POST",
                &path,
                &operator,
                r#"{"plan_id": "bench"}"#,
            )?;
            if status != 201 {
                bail!("POST {path} answered {status}: {reply}");
            }
        }
        // Every subscription's first period moved into the past and ended, so a run bills it
        // (setup, untimed): [p0, p1).
        let now = chrono::Utc::now();
        let p0 = now - chrono::Duration::days(30);
        let p1 = now - chrono::Duration::hours(1);
        let (p0s, p1s) = (p0.to_rfc3339(), p1.to_rfc3339());
        let backdate = format!(
            "UPDATE subscriptions SET created_at = '{p0s}'; \
             UPDATE subscription_periods SET period_start = '{p0s}', period_end = '{p1s}', \
                    ended_at = '{p1s}'"
        );
        if !psql(&infra, &sub_db, &backdate)? {
            bail!("moving the periods into the past failed");
        }
        // The records, counted in that period, loaded straight into the subscription
        // service's table.
        {
            if let Some(dir) = csv.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
            for i in 0..records {
                let ts = p0 + chrono::Duration::seconds((i % 86_400) as i64);
                writeln!(
                    f,
                    "ten_{:05},r{i},usr_{:03},api_calls,{},{},{p0s}",
                    i % tenants,
                    (i / tenants) % 200,
                    1 + i % 100,
                    ts.to_rfc3339(),
                )?;
            }
        }
        let copy = format!(
            "\\copy usage_records (tenant_id, id, user_id, metric, quantity, ts, period_start) FROM '{}' WITH (FORMAT csv)",
            csv.display()
        );
        if !psql(&infra, &sub_db, &copy)? || !psql(&infra, &sub_db, "VACUUM ANALYZE usage_records")?
        {
            bail!("loading the records failed");
        }
        let from = (p1 - chrono::Duration::hours(1)).to_rfc3339();

        // What a run reads: the records counted in the tenants' periods.
        let group_by = format!(
            "SELECT tenant_id, user_id, metric, sum(quantity), count(*) FROM usage_records \
             WHERE period_start = '{p0s}' GROUP BY 1, 2, 3"
        );
        let group = || -> Result<f64> {
            let started = Instant::now();
            if !psql(&infra, &sub_db, &group_by)? {
                bail!("GROUP BY failed");
            }
            Ok(started.elapsed().as_secs_f64())
        };

        // One run end to end; a different period end per run, so each is a new run.
        // Each turn bills the same period again: the parts billed by the previous turn are
        // forgotten first (untimed).
        let bill = |gw: &str, n: u32| -> Result<(f64, serde_json::Value)> {
            if !psql(&infra, &bill_db, "TRUNCATE billed_periods")? {
                bail!("clearing the billed periods failed");
            }
            let end = (p1 + chrono::Duration::hours(1) + chrono::Duration::seconds(i64::from(n)))
                .to_rfc3339();
            let body = format!(
                r#"{{"period_start": "{from}", "period_end": "{end}", "deadline_seconds": 600}}"#
            );
            let started = Instant::now();
            let (status, reply) = http(gw, "POST", "/v1/billing/runs", &operator, &body)?;
            if status != 202 {
                bail!("starting the run answered {status}: {reply}");
            }
            let run: serde_json::Value = serde_json::from_str(&reply)?;
            let id = run["id"].as_str().context("run id")?.to_string();
            loop {
                std::thread::sleep(Duration::from_millis(20));
                let (_, reply) = http(gw, "GET", &format!("/v1/billing/runs/{id}"), &operator, "")?;
                let r: serde_json::Value = serde_json::from_str(&reply)?;
                match r["status"].as_str() {
                    Some("completed") => return Ok((started.elapsed().as_secs_f64(), r)),
                    Some("queued") | Some("running") => {}
                    _ => bail!("the run ended {r}"),
                }
                if started.elapsed() > Duration::from_secs(900) {
                    bail!("the run did not finish in 15 minutes");
                }
            }
        };
        // CPU spent by the two services over the runs: where the time goes.
        let cpu = |c: &Child| cpu_secs(c.id()).unwrap_or(0.0);
        let billing_pid = billing.as_ref().context("billing service")?;
        let cpu_before = (cpu(billing_pid), cpu(&children[0]));
        // The two sides take turns, so a change in the machine's load hits both alike.
        let (mut groups, mut runs, mut run) = (Vec::new(), Vec::new(), serde_json::Value::Null);
        for n in 0..TRIES {
            groups.push(group()?);
            let (secs, r) = bill(&gw_addr, 100 + n)?;
            runs.push(secs);
            run = r;
        }
        let total_secs: f64 = runs.iter().sum();
        let (group_best, group_median) = best_and_median(&mut groups);
        let (run_best, run_median) = best_and_median(&mut runs);
        let billing_pid = billing.as_ref().context("billing service")?;
        let cpu_per_run = (
            (cpu(billing_pid) - cpu_before.0) / f64::from(TRIES),
            (cpu(&children[0]) - cpu_before.1) / f64::from(TRIES),
        );
        let rss = peak_rss_mib(billing_pid.id());
        let (_, metrics) = http(
            billing_url.trim_start_matches("http://"),
            "GET",
            "/metrics",
            "",
            "",
        )?;
        println!("| target | records | median s | best s | records/s (median) |");
        println!("| --- | --- | --- | --- | --- |");
        println!(
            "| Postgres: GROUP BY tenant_id, user_id, metric (psql) | {records} | {group_median:.2} | {group_best:.2} | {:.0} |",
            records as f64 / group_median
        );
        println!(
            "| billing run end to end (MAX_WORKERS=4, MAX_DB_JOBS=8) | {} | {run_median:.2} | {run_best:.2} | {:.0} |",
            run["records_processed"],
            records as f64 / run_median
        );
        println!(
            "\n{TRIES} turns each; run / GROUP BY: {:.2}x (medians), {:.2}x (bests); \
             billing-service peak RSS: {} MiB",
            run_median / group_median,
            run_best / group_best,
            rss.map_or("?".into(), |m| format!("{m:.0}"))
        );
        println!(
            "CPU per run (mean {:.2} s wall): billing service {:.2} s, subscription service \
             {:.2} s; the rest (Postgres, gateway, polling) shares what is left of 2 × wall",
            total_secs / f64::from(TRIES),
            cpu_per_run.0,
            cpu_per_run.1
        );
        println!("{}", phases(&metrics));
        crate::bench_all::headline(crate::bench_all::Headline {
            bench: "billing-run",
            what: &format!("a billing run over {records} usage records, end to end (median)"),
            value: format!("{run_median:.2} s ({:.2}×)", run_median / group_median),
            baseline: format!("Postgres GROUP BY {group_median:.2} s"),
            target: Some("≤ 2× the GROUP BY"),
            met: run_median <= 2.0 * group_median,
        });

        // The same run cut in two shards and shared by two billing replicas (the first
        // restarted with BILLING_RUN_SHARDS=2): the ratio to one replica is the
        // coordination's cost on this machine, where both share its two cores and Postgres.
        if let Some(mut old) = billing.take() {
            infra::terminate(&mut old, Duration::from_secs(10));
        }
        let (first, url) = start_billing(4, 8, 2)?;
        billing = Some(first);
        let (mut second, _) = start_billing(4, 8, 2)?;
        let (mut g, addr) = gateway_to(&url)?;
        let mut shared = Vec::new();
        let turns = wait_http(&addr, "/healthz").and_then(|_| {
            for n in 0..TRIES {
                shared.push(bill(&addr, 200 + n)?.0);
            }
            Ok(())
        });
        infra::terminate(&mut g, Duration::from_secs(10));
        infra::terminate(&mut second, Duration::from_secs(10));
        turns?;
        let (shared_best, shared_median) = best_and_median(&mut shared);
        println!(
            "\n| billing replicas | median s | best s | records/s (median) |\n| --- | --- | --- | --- |\n\
             | 1 | {run_median:.2} | {run_best:.2} | {:.0} |\n| 2 | {shared_median:.2} | {shared_best:.2} | {:.0} |\n\
             two replicas / one: {:.2}x (medians)",
            records as f64 / run_median,
            records as f64 / shared_median,
            shared_median / run_median
        );

        // The same run for each budget pair (a fresh billing service each time).
        if !grid {
            return Ok(());
        }
        println!("\n| MAX_WORKERS | MAX_DB_JOBS | seconds | records/s |");
        println!("| --- | --- | --- | --- |");
        let mut n = 1;
        for workers in [1u64, 2, 4, 8] {
            for db_jobs in [1u64, 4, 16] {
                if let Some(mut old) = billing.take() {
                    infra::terminate(&mut old, Duration::from_secs(10));
                }
                let (child, url) = start_billing(workers, db_jobs, 1)?;
                billing = Some(child);
                // Talk to this billing service through a gateway pointed at it.
                let (mut g, addr) = gateway_to(&url)?;
                let out = wait_http(&addr, "/healthz").and_then(|_| bill(&addr, n));
                infra::terminate(&mut g, Duration::from_secs(10));
                let (secs, _) = out?;
                n += 1;
                println!(
                    "| {workers} | {db_jobs} | {secs:.2} | {:.0} |",
                    records as f64 / secs
                );
            }
        }
        Ok(())
    })();
    if let Some(mut b) = billing.take() {
        infra::terminate(&mut b, Duration::from_secs(10));
    }
    for c in children.iter_mut().rev() {
        infra::terminate(c, Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(&csv);
    for db in [&sub_db, &bill_db] {
        let _ = psql(
            &infra,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
    }
    drop(infra);
    result.map(|_| ExitCode::SUCCESS)
}
