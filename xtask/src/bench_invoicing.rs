//! `cargo xtask bench invoicing`, two parts:
//!
//! 1. **One invoice**: the 20-line sample rendered in-process (a fresh process rendering it
//!    once: wall time and peak RSS by GNU `time`; and warm renders, median of 200) beside
//!    Chromium printing the same invoice from HTML (`chromium --headless --print-to-pdf`, same
//!    `time` measurement; skipped with a note when Chromium is not installed).
//! 2. **A billing run's invoices**: a completed run with 3 charges for each of `--tenants N`
//!    (default 10000) tenants seeded into the billing service's database; from the moment the
//!    run is handed to invoicing (the row the `billing.run.completed` consumer writes) until
//!    every invoice is finalized with its PDF stored — beside Postgres `COPY`ing the same
//!    invoice and line rows into empty copies of the tables.

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_billing::opt;
use crate::bench_gateway::{bench_env, build_release, psql, wait_http};
use crate::infra::{self, Infra};

/// `cmd` under GNU time: (wall seconds, peak RSS MiB, stdout).
fn timed(cmd: &str, args: &[&str]) -> Result<(f64, f64, String)> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M", cmd])
        .args(args)
        .output()
        .context("/usr/bin/time (GNU time) is needed for the render benchmark")?;
    if !out.status.success() {
        bail!("{cmd} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("TIME "))
        .context("no timing from GNU time")?;
    let mut it = line.split_whitespace().skip(1);
    let secs: f64 = it.next().unwrap_or("0").parse()?;
    let kb: f64 = it.next().unwrap_or("0").parse()?;
    Ok((
        secs,
        kb / 1024.0,
        String::from_utf8_lossy(&out.stdout).into(),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A value `key=` in `text`.
pub(crate) fn field(text: &str, key: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or("-")
        .to_string()
}

fn render_part(release: &std::path::Path) -> Result<()> {
    let bench = release.join("examples").join("render_bench");
    let bench = bench.to_str().context("path")?;
    let mut once = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let (secs, mib, _) = timed(bench, &["--once"])?;
        once.push(secs * 1000.0);
        rss.push(mib);
    }
    let (_, _, warm) = timed(bench, &["--renders", "200"])?;
    let (ours_ms, ours_mib) = (median(once), median(rss));
    println!(
        "printpdf, one render in a fresh process: {ours_ms:.1} ms wall, {ours_mib:.1} MiB peak RSS (median of 5)"
    );
    println!(
        "printpdf, warm: {} ms per render (median of 200; best {} ms)",
        field(&warm, "median_ms"),
        field(&warm, "best_ms")
    );
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new("which")
                .arg(c)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    else {
        println!("chromium: not installed (apt-get install chromium): baseline skipped");
        return Ok(());
    };
    let dir = infra::workspace_root().join("target").join("xtask");
    std::fs::create_dir_all(&dir)?;
    let html = dir.join("invoice.html");
    let out = dir.join("invoice-chromium.pdf");
    Command::new(bench)
        .args(["--html", html.to_str().context("path")?])
        .status()?;
    let profile = dir.join("chromium-profile");
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let (secs, mib, _) = timed(
            chromium,
            &[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-pdf-header-footer",
                &format!("--user-data-dir={}", profile.display()),
                &format!("--print-to-pdf={}", out.display()),
                &format!("file://{}", html.display()),
            ],
        )?;
        times.push(secs * 1000.0);
        rss.push(mib);
    }
    let (c_ms, c_mib) = (median(times), median(rss));
    println!(
        "chromium --headless --print-to-pdf: {c_ms:.0} ms wall, {c_mib:.0} MiB peak RSS of its largest process (median of 5)"
    );
    let warm_ms: f64 = field(&warm, "median_ms").parse().unwrap_or(f64::NAN);
    println!(
        "ratio: {:.0}× faster warm, {:.0}× faster one-off; {:.1}× less memory",
        c_ms / warm_ms,
        c_ms / ours_ms,
        c_mib / ours_mib
    );
    crate::bench_all::headline(crate::bench_all::Headline {
        bench: "invoicing",
        what: "one invoice PDF (20 lines), warm render; peak RSS of a one-off render",
        value: format!(
            "{warm_ms:.1} ms ({:.0}× faster), {ours_mib:.1} MiB",
            c_ms / warm_ms
        ),
        baseline: format!("Chromium --print-to-pdf {c_ms:.0} ms, {c_mib:.0} MiB"),
        target: Some("≥ 200× faster, < 30 MiB"),
        met: c_ms / warm_ms >= 200.0 && ours_mib < 30.0,
    });
    Ok(())
}

/// One value from `sql` (psql -tA).
pub(crate) fn scalar(infra: &Infra, db: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args(["-tA", "-h", "127.0.0.1", "-p"])
        .arg(infra.pg_port.to_string())
        .args(["-U", "postgres", "-d", db, "-c", sql])
        .output()
        .context("psql")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn batch_part(release: &std::path::Path, tenants: u64) -> Result<()> {
    let infra = Infra::ensure()?;
    let tag = std::process::id();
    let (bill_db, inv_db) = (format!("bench_bill_{tag}"), format!("bench_inv_{tag}"));
    let blobs = std::env::temp_dir().join(format!("bench-blobs-{tag}"));
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> Result<()> {
        let bill_port = infra::free_port()?;
        let mut b = Command::new(release.join("billing-service"));
        bench_env(&mut b, &infra, tag);
        b.env("LISTEN_ADDR", format!("127.0.0.1:{bill_port}"))
            .env("DATABASE_URL", infra.database_url(&bill_db))
            .env("BILLING_CLOCK_SECS", "0");
        children.push(b.spawn().context("billing-service")?);
        wait_http(&format!("127.0.0.1:{bill_port}"), "/readyz")?;
        let run = format!("run_{:032x}", u128::from(tag) << 64 | 1);
        let seed = format!(
            "INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, tenant_key, \
               status, deadline_seconds, finished_at) \
             VALUES ('{run}', '2026-11-01', '2026-12-01', '{{}}', 'bench', 'completed', 60, now()); \
             INSERT INTO charges (run_id, tenant_id, kind, price_id, quantity, amount_minor, \
               currency, plan_id, plan_version, subscription_id, period_start, period_end, part) \
             SELECT '{run}', 'ten_' || lpad(t::text, 6, '0'), k.kind, k.price, k.q, k.amount, \
               'EUR', 'pro', 1, 'sub_' || t, '2026-11-01', '2026-12-01', k.part \
             FROM generate_series(1, {tenants}) t, (VALUES \
               ('flat', 'base', 1, 4900, 'advance'), ('seat', 'seats', 5, 7500, 'advance'), \
               ('usage', 'calls', 12345, 6173, 'arrears')) AS k(kind, price, q, amount, part)"
        );
        if !psql(&infra, &bill_db, &seed)? {
            bail!("seeding the billing run failed");
        }
        let inv_port = infra::free_port()?;
        let mut i = Command::new(release.join("invoicing-service"));
        bench_env(&mut i, &infra, tag);
        i.env("LISTEN_ADDR", format!("127.0.0.1:{inv_port}"))
            .env("DATABASE_URL", infra.database_url(&inv_db))
            .env(
                "BILLING_SERVICE_ADDR",
                format!("http://127.0.0.1:{bill_port}"),
            )
            .env("INVOICE_GRACE_SECS", "0")
            .env("SELLER_NAME", "Example SaaS GmbH")
            .env("SELLER_COUNTRY", "DE")
            .env("BLOB_STORE", &blobs);
        let invoicing = i.spawn().context("invoicing-service")?;
        let pid = invoicing.id();
        children.push(invoicing);
        wait_http(&format!("127.0.0.1:{inv_port}"), "/readyz")?;

        let started = Instant::now();
        if !psql(
            &infra,
            &inv_db,
            &format!("INSERT INTO invoicing_runs (run_id) VALUES ('{run}')"),
        )? {
            bail!("handing the run to invoicing failed");
        }
        let deadline = started + Duration::from_secs(1800);
        loop {
            let done: u64 = scalar(
                &infra,
                &inv_db,
                "SELECT count(*) FROM invoices WHERE pdf_key IS NOT NULL",
            )?
            .parse()
            .unwrap_or(0);
            if done >= tenants {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {done} of {tenants} invoices published after 30 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let secs = started.elapsed().as_secs_f64();
        let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1024.0;
        let numbers = scalar(
            &infra,
            &inv_db,
            "SELECT count(DISTINCT number) || ' numbers, last ' || max(number) FROM invoices",
        )?;
        println!(
            "invoicing {tenants} tenants' period invoices (3 lines each), handed over → all \
             finalized with PDFs stored: {secs:.1} s, {:.0} invoices/s; {numbers}; peak RSS {peak:.0} MiB",
            tenants as f64 / secs
        );
        // The baseline: the same rows COPYed into empty copies of the tables.
        let dir = infra::workspace_root().join("target").join("xtask");
        std::fs::create_dir_all(&dir)?;
        let (inv_csv, line_csv) = (dir.join("invoices.copy"), dir.join("lines.copy"));
        let export = format!(
            "\\copy invoices TO '{}'\n\\copy invoice_lines TO '{}'\n\
             CREATE TABLE copy_invoices (LIKE invoices INCLUDING ALL);\n\
             CREATE TABLE copy_lines (LIKE invoice_lines INCLUDING ALL);",
            inv_csv.display(),
            line_csv.display()
        );
        run_psql_script(&infra, &inv_db, &export)?;
        let import = format!(
            "\\copy copy_invoices FROM '{}'\n\\copy copy_lines FROM '{}'",
            inv_csv.display(),
            line_csv.display()
        );
        let copy_started = Instant::now();
        run_psql_script(&infra, &inv_db, &import)?;
        let copy_secs = copy_started.elapsed().as_secs_f64();
        println!(
            "baseline, Postgres COPY of the same {tenants} invoices and {} lines: {copy_secs:.2} s \
             ({:.0} invoices/s); invoicing takes {:.1}× as long",
            tenants * 3,
            tenants as f64 / copy_secs,
            secs / copy_secs
        );
        crate::bench_all::headline(crate::bench_all::Headline {
            bench: "invoicing",
            what: &format!("a run's {tenants} invoices finalized with PDFs stored"),
            value: format!("{:.0} invoices/s", tenants as f64 / secs),
            baseline: format!(
                "Postgres COPY of the rows {:.0} invoices/s",
                tenants as f64 / copy_secs
            ),
            target: None,
            met: true,
        });
        let _ = std::fs::remove_file(inv_csv);
        let _ = std::fs::remove_file(line_csv);
        Ok(())
    })();
    for c in &mut children {
        infra::terminate(c, Duration::from_secs(10));
    }
    for db in [&bill_db, &inv_db] {
        let _ = psql(
            &infra,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
    }
    let _ = std::fs::remove_dir_all(&blobs);
    drop(infra);
    result
}

fn run_psql_script(infra: &Infra, db: &str, script: &str) -> Result<()> {
    let mut child = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(infra.pg_port.to_string())
        .args(["-U", "postgres", "-d", db])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("psql")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("psql stdin")?
        .write_all(script.as_bytes())?;
    if !child.wait()?.success() {
        bail!("psql script failed");
    }
    Ok(())
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let tenants = opt(args, "--tenants", 10_000).max(1);
    let release = build_release(&["billing-service", "invoicing-service"])?;
    let status = crate::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "invoicing-service",
            "--example",
            "render_bench",
        ])
        .status()
        .context("building the render benchmark")?;
    if !status.success() {
        bail!("building the render benchmark failed");
    }
    render_part(&release)?;
    batch_part(&release, tenants)?;
    Ok(ExitCode::SUCCESS)
}
