//! Kills in the order-to-cash flow: a billing run over a million usage records killed while it
//! runs, then the invoices that follow from it.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::super::client::request;
use super::super::{Ctx, Report};
use super::{create_plan, json_of, operator, subscribe, tenant, wait_until};

/// The billed tenants: each record counts one call at one cent (prices are in minor units),
/// so a tenant owes as many cents as it has records.
struct Billed {
    tenants: Vec<String>,
    /// `period_start` and `period_end` of the run that bills the periods.
    window: (String, String),
}

/// `tenants` tenants on a metered plan whose first period ended an hour ago, with `records`
/// usage records counted in it (loaded straight into the subscription service's table: the
/// records are the run's input, not its workload).
fn billed_tenants(c: &Ctx, tenants: usize, records: u64) -> Result<Billed> {
    let plan = json!({
        "id": "faults-run", "name": "Run", "currency": "EUR", "interval": "month",
        "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                    "model": {"type": "per_unit", "unit_amount": "1"}}],
    });
    create_plan(c, &plan)?;
    let mut ids = Vec::new();
    for i in 0..tenants {
        let (t, _) = tenant(c, &format!("billed{i}"))?;
        subscribe(c, &t, "faults-run")?;
        ids.push(t);
    }
    let now = chrono::Utc::now();
    let (p0, p1) = (
        now - chrono::Duration::days(30),
        now - chrono::Duration::hours(1),
    );
    let (p0s, p1s) = (p0.to_rfc3339(), p1.to_rfc3339());
    let db = c.db("subscription");
    c.rows(
        &db,
        &format!(
            "UPDATE subscriptions SET created_at = '{p0s}'; \
             UPDATE subscription_periods SET period_start = '{p0s}', period_end = '{p1s}', \
             ended_at = '{p1s}'"
        ),
    )?;
    let csv = c.cluster.dir.join("usage.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        for i in 0..records {
            let ts = p0 + chrono::Duration::seconds((i % 86_400) as i64);
            writeln!(
                f,
                "{},r{i},usr_{:03},api_calls,1,{},{p0s}",
                ids[i as usize % tenants],
                (i / tenants as u64) % 200,
                ts.to_rfc3339()
            )?;
        }
    }
    c.rows(
        &db,
        &format!(
            "\\copy usage_records (tenant_id, id, user_id, metric, quantity, ts, period_start) \
             FROM '{}' WITH (FORMAT csv)",
            csv.display()
        ),
    )?;
    Ok(Billed {
        tenants: ids,
        window: (
            (p1 - chrono::Duration::hours(1)).to_rfc3339(),
            now.to_rfc3339(),
        ),
    })
}

pub fn billing_kill(c: &mut Ctx) -> Result<Report> {
    let (tenants, records) = if c.short {
        (4, 200_000)
    } else {
        (20, 1_000_000)
    };
    let billed = billed_tenants(c, tenants, records)?;
    let gw = c.cluster.addr("gateway");
    let operator = operator()?;
    let body = json!({"period_start": billed.window.0, "period_end": billed.window.1,
                      "deadline_seconds": 600})
    .to_string();
    let (s, b) = request(&gw, "POST", "/v1/billing/runs", &operator, &[], &body)?;
    if s != 202 {
        bail!("starting the run: {s} {b}");
    }
    let run = json_of(&b)["id"].as_str().context("run id")?.to_string();
    let path = format!("/v1/billing/runs/{run}");
    // The kill comes as soon as the run is claimed: mid-run, its summaries partly written.
    let started = Instant::now();
    let status = loop {
        let (_, b) = request(&gw, "GET", &path, &operator, &[], "")?;
        let status = json_of(&b)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !matches!(status.as_str(), "queued" | "") || started.elapsed() > Duration::from_secs(60)
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if status != "running" {
        bail!("the run was {status:?} when it should have been killed");
    }
    c.cluster.kill("billing")?;
    let killed = Instant::now();
    let db = c.db("billing");
    let at_kill = c.rows(
        &db,
        &format!("SELECT status, records_processed FROM billing_runs WHERE id = '{run}'"),
    )?;
    if at_kill.first().is_some_and(|r| !r.starts_with("running")) {
        bail!("the run ended before the kill: {at_kill:?}");
    }
    c.cluster.restart("billing")?;
    let mut status = String::new();
    let settled = wait_until(Duration::from_secs(120), || {
        let (_, b) = request(&gw, "GET", &path, &operator, &[], "")?;
        status = json_of(&b)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(status == "completed")
    })?;
    let recovery = killed.elapsed();
    // From the outside: every tenant's run total is its records in cents, once.
    let (_, b) = request(&gw, "GET", &path, &operator, &[], "")?;
    let totals = json_of(&b)["totals"].clone();
    let billed_cents: i64 = totals
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["amount_minor"].as_i64()).sum())
        .unwrap_or(0);
    let summarized = c.count(
        &db,
        &format!("SELECT coalesce(sum(records), 0) FROM tenant_summaries WHERE run_id = '{run}'"),
    )?;
    let charged = c.count(
        &db,
        &format!("SELECT coalesce(sum(amount_minor), 0) FROM charges WHERE run_id = '{run}'"),
    )?;
    let runs = c.count(&db, "SELECT count(*) FROM billing_runs")?;
    // Invoicing follows the completed run: one invoice per tenant, numbered without gaps,
    // together worth the charges.
    let inv = c.db("invoicing");
    let invoiced = wait_until(Duration::from_secs(60), || {
        Ok(c.count(&inv, "SELECT count(number) FROM invoices")? >= tenants as i64)
    })?;
    let invoices = c.count(&inv, "SELECT count(*) FROM invoices")?;
    let invoiced_cents = c.count(&inv, "SELECT coalesce(sum(net_minor), 0) FROM invoices")?;
    let gaps = c.count(
        &inv,
        "SELECT coalesce(max(substring(number FROM '[0-9]+$')::bigint), 0) - count(number) \
         FROM invoices",
    )?;
    // Each of these counts every record once (in cents, for the money).
    let per_record = [summarized, charged, billed_cents, invoiced_cents];
    let expected = records as i64;
    let lost = per_record
        .iter()
        .map(|got| expected - got)
        .max()
        .unwrap_or(0);
    let doubled = per_record
        .iter()
        .map(|got| got - expected)
        .max()
        .unwrap_or(0);
    Ok(Report {
        workload: format!(
            "one run over {records} records of {} tenants, killed at {}",
            billed.tenants.len(),
            at_kill.first().map(String::as_str).unwrap_or("?")
        ),
        recovery,
        lost: lost.max(0) as u64 + (tenants as i64 - invoices).max(0) as u64,
        duplicated: doubled.max(0) as u64
            + (runs - 1).max(0) as u64
            + (invoices - tenants as i64).max(0) as u64,
        detail: format!(
            "run {status}; {summarized} records summarized, {charged} cents charged \
             ({billed_cents} in the run's totals), {invoices} invoices worth {invoiced_cents}, \
             {gaps} gaps in their numbers{}",
            if settled && invoiced {
                ""
            } else {
                "; NOT settled in 120 s"
            }
        ),
        ok: settled && invoiced && gaps == 0,
    })
}
