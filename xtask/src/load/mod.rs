//! `cargo xtask load <scenario…|all|soak> [--smoke] [--debug] [KEY=VALUE…]`: the k6 scripts
//! of `tests/load/` against a whole stack started for the purpose (release binaries;
//! `--debug`: the debug ones the tests built), on private Postgres/Redis/NATS. k6 prints its
//! summary; then one verdict line per scenario, and the exit code says whether every
//! threshold held. `--smoke` runs each scenario for 15 s at a low rate (CI). `KEY=VALUE`
//! goes to the scripts as environment (`RATE=40`, `DURATION=5m`, …). `soak` is in `soak.rs`.
//! Logs and k6's JSON summaries: `target/xtask/load/<run>/`.

mod soak;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::{self, Cluster};
use crate::infra::Infra;

/// (name, script, what it measures)
pub const SCENARIOS: &[(&str, &str, &str)] = &[
    (
        "ingest",
        "ingest.js",
        "usage ingestion, 1,000-record batches",
    ),
    ("entitlements", "entitlements.js", "entitlement checks"),
    (
        "mixed",
        "mixed.js",
        "a mixed API session (users CRUD, plan, subscription, usage, entitlement)",
    ),
    (
        "order-to-cash",
        "order_to_cash.js",
        "subscribe, use, cancel, bill, invoice, charge, PDF",
    ),
    (
        "psp-callbacks",
        "psp_callbacks.js",
        "signed PSP callbacks, one in ten a re-send",
    ),
];

/// What the stack runs with under load: limits meant for abuse would only measure themselves.
const LOAD_ENV: &[(&str, &str, &str)] = &[
    ("gateway", "RATE_LIMIT_CALLER_PER_SEC", "1000000"),
    ("gateway", "RATE_LIMIT_CALLER_BURST", "1000000"),
    ("gateway", "RATE_LIMIT_TENANT_PER_SEC", "1000000"),
    ("gateway", "RATE_LIMIT_TENANT_BURST", "1000000"),
];

/// A stack to load, and what k6 needs to reach it.
pub struct Target {
    pub k6: PathBuf,
    pub cluster: Cluster,
    pub dir: PathBuf,
    pub token: String,
    /// `KEY=VALUE` for every script (the run id, the p99 scale of debug builds, the user's).
    pub env: Vec<String>,
}

impl Target {
    /// Runs `script` with `env` on top of the target's; k6's exit status and its summary.
    pub fn k6(&self, name: &str, script: &str, env: &[String]) -> Result<(bool, Value)> {
        let summary = self.dir.join(format!("{name}.json"));
        let mut cmd = Command::new(&self.k6);
        cmd.arg("run")
            .args(["--summary-trend-stats", "avg,p(50),p(95),p(99),max"])
            .arg("--summary-export")
            .arg(&summary)
            .args([
                "-e",
                &format!("BASE_URL=http://{}", self.cluster.addr("gateway")),
            ])
            .args(["-e", &format!("TOKEN={}", self.token)]);
        for kv in self.env.iter().chain(env) {
            cmd.args(["-e", kv]);
        }
        cmd.arg(scripts_dir().join(script))
            .env("K6_NO_USAGE_REPORT", "true");
        let ok = cmd.status().context("running k6")?.success();
        let json = std::fs::read_to_string(&summary)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        Ok((ok, json))
    }
}

fn scripts_dir() -> PathBuf {
    crate::infra::workspace_root().join("tests").join("load")
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let smoke = args.iter().any(|a| a == "--smoke");
    let debug = args.iter().any(|a| a == "--debug");
    let minutes: u64 = match args.iter().position(|a| a == "--minutes") {
        Some(i) => args
            .get(i + 1)
            .and_then(|m| m.parse().ok())
            .context("--minutes N")?,
        None => 10,
    };
    let user_env: Vec<String> = args.iter().filter(|a| a.contains('=')).cloned().collect();
    let mut named: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with("--") && !a.contains('=') && args[i.saturating_sub(1)] != "--minutes"
        })
        .map(|(_, a)| a.as_str())
        .collect();
    let names: Vec<&str> = SCENARIOS.iter().map(|(n, _, _)| *n).collect();
    if named.is_empty() {
        bail!("which scenario? one of: {}, all, soak", names.join(", "));
    }
    if named.contains(&"all") {
        named = names.clone();
    }
    for n in &named {
        if *n != "soak" && !names.contains(n) {
            bail!(
                "unknown scenario {n:?}; one of: {}, all, soak",
                names.join(", ")
            );
        }
    }

    let k6 = crate::pytools::ensure()?.k6;
    let bins = cluster::binaries(debug)?;
    let infra = Infra::isolated()?;
    let run_id = format!("l{}", std::process::id());
    let dir = crate::stack::target_dir()?
        .join("xtask")
        .join("load")
        .join(&run_id);
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = Cluster::start(&infra, &bins, &dir, &run_id, LOAD_ENV)?;
    let mut env = vec![
        format!("RUN_ID={run_id}"),
        format!("PSP_WEBHOOK_SECRET={}", cluster.psp_secret),
    ];
    if debug {
        // Unoptimized builds are several times slower: their bounds are ten times looser.
        env.push("P99_SCALE=10".into());
    }
    env.extend(user_env);
    let target = Target {
        k6,
        cluster,
        dir: dir.clone(),
        token: crate::token::mint(
            crate::token::OPERATOR_TENANT,
            "load",
            &["platform_admin"],
            24 * 3600,
        )?,
        env,
    };
    let mut verdicts = Vec::new();
    let result = (|| -> Result<()> {
        for name in &named {
            if *name == "soak" {
                verdicts.push(soak::run(&target, minutes)?);
                continue;
            }
            let (_, script, what) = SCENARIOS
                .iter()
                .find(|(n, _, _)| n == name)
                .expect("checked above");
            let mut env = Vec::new();
            if smoke {
                env.push("SMOKE=1".to_string());
            }
            let (ok, summary) = target.k6(name, script, &env)?;
            verdicts.push((ok, format!("{name}: {what} — {}", figures(name, &summary))));
        }
        Ok(())
    })();
    target.cluster.stop();
    drop(infra);
    result?;
    println!();
    for (ok, line) in &verdicts {
        println!("{} {line}", if *ok { "PASS" } else { "FAIL" });
    }
    println!("logs and summaries: {}", dir.display());
    Ok(if verdicts.iter().all(|(ok, _)| *ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The headline figures of a k6 summary export.
pub fn figures(scenario: &str, summary: &Value) -> String {
    let m = &summary["metrics"];
    let tag = scenario.replace('-', "_");
    let timed = &m[format!("http_req_duration{{scenario:{tag}}}")];
    let mut out = format!(
        "{:.0} iterations ({:.1}/s), {:.0} requests ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms, failed {:.2} %, dropped {}",
        m["iterations"]["count"].as_f64().unwrap_or(0.0),
        m["iterations"]["rate"].as_f64().unwrap_or(0.0),
        m["http_reqs"]["count"].as_f64().unwrap_or(0.0),
        m["http_reqs"]["rate"].as_f64().unwrap_or(0.0),
        timed["p(50)"].as_f64().unwrap_or(f64::NAN),
        timed["p(99)"].as_f64().unwrap_or(f64::NAN),
        m["http_req_failed"]["value"].as_f64().unwrap_or(0.0) * 100.0,
        m["dropped_iterations"]["count"].as_f64().unwrap_or(0.0),
    );
    if let Some(rate) = m["usage_records_accepted"]["rate"].as_f64() {
        out.push_str(&format!(", {rate:.0} records/s accepted"));
    }
    if let Some(p99) = m["order_to_cash_ms"]["p(99)"].as_f64() {
        out.push_str(&format!(", run → paid p99 {:.1} s", p99 / 1000.0));
    }
    out
}
