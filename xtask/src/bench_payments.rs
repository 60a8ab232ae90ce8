//! `cargo xtask bench payments`, two parts, against release builds of the gateway and the
//! payment service (its sandbox PSP embedded):
//!
//! 1. **Verified callbacks/s**: `--callbacks N` (default 20000) distinct signed Stripe-shaped
//!    callbacks posted to the gateway's `/v1/webhooks/psp/stripe` by 32 clients (each one
//!    forwarded, verified, recorded once and applied) beside the same HMAC verification in a
//!    plain loop.
//! 2. **Intents confirmed/s**: `--intents N` (default 2000) invoice intents seeded ready to
//!    confirm; the payment service's clock confirms them off-session against the sandbox —
//!    from the first attempt opened to the last answer settled — beside the same number of
//!    create-and-confirm calls sent straight to the sandbox by 32 clients (the PSP's ceiling).

use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench_billing::opt;
use crate::bench_gateway::{bench_env, build_release, gateway_command, psql, wait_http};
use crate::bench_invoicing::{self, scalar};
use crate::infra::{self, Infra};

const SECRET: &str = "whsec_bench_sandbox";
const CLIENTS: &str = "32";

/// Runs the example client with `args`; its `key=value` output.
fn client(release: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = Command::new(release.join("examples").join("callback_bench"))
        .args(args)
        .output()
        .context("callback_bench")?;
    if !out.status.success() {
        bail!(
            "callback_bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into())
}

fn field(text: &str, key: &str) -> f64 {
    bench_invoicing::field(text, key)
        .parse()
        .unwrap_or(f64::NAN)
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let callbacks = opt(args, "--callbacks", 20_000).max(1);
    let intents = opt(args, "--intents", 2_000).max(1);
    let release = build_release(&["payment-service", "gateway"])?;
    let built = crate::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "payment-service",
            "--example",
            "callback_bench",
        ])
        .status()
        .context("building the benchmark client")?;
    if !built.success() {
        bail!("building the benchmark client failed");
    }
    let infra = Infra::ensure()?;
    let tag = std::process::id();
    let db = format!("bench_pay_{tag}");
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> Result<()> {
        let (pay_port, sandbox_port, gw_port) = (
            infra::free_port()?,
            infra::free_port()?,
            infra::free_port()?,
        );
        let mut p = Command::new(release.join("payment-service"));
        bench_env(&mut p, &infra, tag);
        p.env("LISTEN_ADDR", format!("127.0.0.1:{pay_port}"))
            .env("DATABASE_URL", infra.database_url(&db))
            .env("SANDBOX_PSP_ADDR", format!("127.0.0.1:{sandbox_port}"))
            .env("SANDBOX_WEBHOOK_SECRET", SECRET)
            .env(
                "SANDBOX_CALLBACK_URL",
                format!("http://127.0.0.1:{gw_port}/v1/webhooks/psp/stripe"),
            )
            .env("PAYMENT_CLOCK_SECS", "1");
        children.push(p.spawn().context("payment-service")?);
        wait_http(&format!("127.0.0.1:{pay_port}"), "/readyz")?;
        let mut gw = gateway_command(&release, gw_port);
        bench_env(&mut gw, &infra, tag);
        gw.env(
            "PAYMENT_SERVICE_ADDR",
            format!("http://127.0.0.1:{pay_port}"),
        );
        children.push(gw.spawn().context("gateway")?);
        wait_http(&format!("127.0.0.1:{gw_port}"), "/healthz")?;

        // Part 1: callbacks.
        let n = callbacks.to_string();
        let plain = client(&release, &["loop", &(callbacks * 10).to_string()])?;
        let url = format!("http://127.0.0.1:{gw_port}/v1/webhooks/psp/stripe");
        let sent = client(&release, &["send", &url, &n, CLIENTS, SECRET])?;
        let (ok, per_sec, loop_per_sec) = (
            field(&sent, "ok"),
            field(&sent, "per_sec"),
            field(&plain, "per_sec"),
        );
        if ok < callbacks as f64 {
            bail!("only {ok} of {callbacks} callbacks were accepted");
        }
        let recorded = scalar(&infra, &db, "SELECT count(*) FROM psp_events")?;
        println!(
            "verified callbacks through the gateway: {callbacks} in {:.2} s = {per_sec:.0}/s \
             ({CLIENTS} clients; {recorded} events recorded)",
            field(&sent, "secs")
        );
        println!(
            "baseline, the same Stripe signature verified in a plain loop: {loop_per_sec:.0}/s; \
             the full path runs at 1/{:.0} of it",
            loop_per_sec / per_sec
        );
        crate::bench_all::headline(crate::bench_all::Headline {
            bench: "payments",
            what: "PSP callbacks through the gateway: verified, recorded once, applied",
            value: format!("{per_sec:.0}/s"),
            baseline: format!("the signature check alone {loop_per_sec:.0}/s"),
            target: None,
            met: true,
        });

        // Part 2: intents confirmed against the sandbox.
        let seed = format!(
            "INSERT INTO payment_methods (id, tenant_id, provider, psp_token, brand, last4, \
               exp_month, exp_year, is_default) \
             SELECT 'pmt_' || lpad(to_hex(t), 32, '0'), 'ten_' || t, 'sandbox', 'pm_card_visa', \
               'visa', '4242', 12, 2034, true FROM generate_series(1, {intents}) t; \
             INSERT INTO payment_intents (id, tenant_id, invoice_id, amount_minor, currency, \
               status, capture_method, off_session, payment_method_id, provider) \
             SELECT 'pay_' || lpad(to_hex(t), 32, '0'), 'ten_' || t, \
               'inv_' || lpad(to_hex(t), 32, '0'), 5831, 'EUR', 'requires_confirmation', \
               'automatic', true, 'pmt_' || lpad(to_hex(t), 32, '0'), 'sandbox' \
             FROM generate_series(1, {intents}) t"
        );
        if !psql(&infra, &db, &seed)? {
            bail!("seeding intents failed");
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done: u64 = scalar(
                &infra,
                &db,
                "SELECT count(*) FROM payment_intents WHERE status = 'succeeded'",
            )?
            .parse()
            .unwrap_or(0);
            if done >= intents {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {done} of {intents} intents succeeded after 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let secs: f64 = scalar(
            &infra,
            &db,
            "SELECT extract(epoch FROM max(completed_at) - min(created_at)) FROM payment_attempts",
        )?
        .parse()
        .unwrap_or(f64::NAN);
        let ours = intents as f64 / secs;
        println!(
            "intents confirmed off-session against the sandbox: {intents} in {secs:.2} s = {ours:.0}/s \
             (first attempt opened → last answer settled)"
        );
        let base = format!("http://127.0.0.1:{sandbox_port}");
        let direct = client(&release, &["charge", &base, &intents.to_string(), CLIENTS])?;
        let theirs = field(&direct, "per_sec");
        println!(
            "baseline, the same number of create-and-confirm calls straight to the sandbox \
             ({CLIENTS} clients): {theirs:.0}/s; the service reaches {:.0}% of it",
            100.0 * ours / theirs
        );
        crate::bench_all::headline(crate::bench_all::Headline {
            bench: "payments",
            what: "invoice intents confirmed off-session against the sandbox PSP",
            value: format!("{ours:.0}/s ({:.0} %)", 100.0 * ours / theirs),
            baseline: format!("create-and-confirm straight to the sandbox {theirs:.0}/s"),
            target: None,
            met: true,
        });
        Ok(())
    })();
    for c in &mut children {
        infra::terminate(c, Duration::from_secs(10));
    }
    let _ = psql(
        &infra,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    drop(infra);
    result.map(|()| ExitCode::SUCCESS)
}
