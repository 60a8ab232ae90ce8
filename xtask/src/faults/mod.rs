//! `cargo xtask faults [scenario…] [--short] [--debug]`: the fault suite. Each scenario gets a
//! fresh stack (release binaries; `--debug`: the debug ones the tests built) against private
//! Postgres, Redis and NATS, drives a workload through the gateway, injects its fault from
//! the outside (SIGKILL, then a restart), waits for quiescence and reconciles what the
//! workload sent with what the stack holds. One line per scenario, then `N passed, N failed`;
//! exit 1 on any failure. `--short` runs small workloads (CI). Logs: `target/xtask/faults/`.

mod scenarios;

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::{self, Cluster};
use crate::infra::Infra;

/// What a scenario found.
pub struct Report {
    pub workload: String,
    /// From the fault to quiescence.
    pub recovery: Duration,
    pub lost: u64,
    pub duplicated: u64,
    pub detail: String,
    /// False when the stack did not settle in time.
    pub ok: bool,
}

pub struct Ctx<'a> {
    pub cluster: Cluster,
    pub infra: &'a mut Infra,
    pub tag: u32,
    pub short: bool,
}

impl Ctx<'_> {
    /// The database of service `short` in this scenario's stack.
    pub fn db(&self, short: &str) -> String {
        format!("f{}_{short}", self.tag)
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new("psql")
            .args(["-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.infra.pg_port.to_string())
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .context("psql")?;
        if !out.status.success() {
            bail!("psql {db}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn count(&self, db: &str, sql: &str) -> Result<i64> {
        self.psql(db, sql)?
            .parse()
            .with_context(|| format!("{sql}: not a count"))
    }

    pub fn rows(&self, db: &str, sql: &str) -> Result<Vec<String>> {
        Ok(self.psql(db, sql)?.lines().map(str::to_string).collect())
    }
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let short = args.iter().any(|a| a == "--short");
    let debug = args.iter().any(|a| a == "--debug");
    let named: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for name in &named {
        if !scenarios::ALL.iter().any(|(n, _, _)| n == name) {
            let all: Vec<&str> = scenarios::ALL.iter().map(|(n, _, _)| *n).collect();
            bail!("unknown scenario {name:?}; one of: {}", all.join(", "));
        }
    }
    let bins = cluster::binaries(debug)?;
    let mut infra = Infra::private()?;
    let base = crate::stack::target_dir()?.join("xtask").join("faults");
    let (mut passed, mut failed) = (0, 0);
    for (i, (name, what, scenario)) in scenarios::ALL
        .iter()
        .filter(|(n, _, _)| named.is_empty() || named.contains(n))
        .enumerate()
    {
        let tag = std::process::id() * 10 + i as u32;
        let dir = base.join(format!("{tag}-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        infra.use_nats_cluster(scenarios::ON_NATS_CLUSTER.contains(name))?;
        let replicas = if scenarios::replicated(name) {
            scenarios::REPLICAS
        } else {
            1
        };
        let extra = scenarios::extra_env(name);
        let outcome =
            Cluster::start_replicated(&infra, &bins, &dir, &format!("f{tag}"), extra, replicas)
                .and_then(|cluster| {
                    let mut ctx = Ctx {
                        cluster,
                        infra: &mut infra,
                        tag,
                        short,
                    };
                    let r = scenario(&mut ctx);
                    ctx.cluster.stop();
                    r
                });
        infra.restart_crashed()?;
        match outcome {
            Ok(r) if r.ok && r.lost == 0 && r.duplicated == 0 => {
                passed += 1;
                println!(
                    "PASS {name}: {what} — {}; recovered in {:.1} s; lost 0, duplicated 0; {}",
                    r.workload,
                    r.recovery.as_secs_f64(),
                    r.detail
                );
            }
            Ok(r) => {
                failed += 1;
                println!(
                    "FAIL {name}: {what} — {}; after {:.1} s: lost {}, duplicated {}; {} (logs: {})",
                    r.workload,
                    r.recovery.as_secs_f64(),
                    r.lost,
                    r.duplicated,
                    r.detail,
                    dir.display()
                );
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name}: {what} — {e:#} (logs: {})", dir.display());
            }
        }
    }
    drop(infra);
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
