//! Kills in the order-to-cash flow: a billing run over a million usage records killed while it
//! runs; the invoicing service killed while it turns a run into invoices.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::super::{Ctx, Report};
use super::{create_plan, json_of, operator, post_until, subscribe, tenant, wait_until};
use crate::client::request;

/// The billed tenants: each record counts one call at one cent (prices are in minor units),
/// so a tenant owes as many cents as it has records.
pub(super) struct Billed {
    tenants: Vec<String>,
    /// `period_start` and `period_end` of the run that bills the periods.
    window: (String, String),
}

/// `ids` on a metered plan whose first period ended an hour ago, with `records` usage records
/// counted in it (loaded straight into the subscription service's table: the records are
/// the run's input, not its workload).
pub(super) fn billed_tenants(c: &Ctx, ids: Vec<String>, records: u64) -> Result<Billed> {
    let plan = json!({
        "id": "faults-run", "name": "Run", "currency": "EUR", "interval": "month",
        "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                    "model": {"type": "per_unit", "unit_amount": "1"}}],
    });
    create_plan(c, &plan)?;
    for t in &ids {
        subscribe(c, t, "faults-run")?;
    }
    let tenants = ids.len();
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

/// Starts the run over `billed`'s window; its path.
pub(super) fn start_run(c: &Ctx, billed: &Billed) -> Result<String> {
    let body = json!({"period_start": billed.window.0, "period_end": billed.window.1,
                      "deadline_seconds": 600})
    .to_string();
    let (gw, operator) = (c.cluster.addr("gateway"), operator()?);
    let run = post_until(&gw, "/v1/billing/runs", &operator, &body, 202)?;
    let id = run["id"].as_str().context("run id")?;
    Ok(format!("/v1/billing/runs/{id}"))
}

/// The status of the run at `path` ("" when the gateway did not answer 200).
pub(super) fn run_status(c: &Ctx, path: &str) -> Result<String> {
    let (s, b) = request(
        &c.cluster.addr("gateway"),
        "GET",
        path,
        &operator()?,
        &[],
        "",
    )?;
    Ok(if s == 200 {
        json_of(&b)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    })
}

pub fn billing_kill(c: &mut Ctx) -> Result<Report> {
    run_fault(c, |c| {
        c.cluster.kill("billing")?;
        let killed = Instant::now();
        c.cluster.restart("billing")?;
        Ok(killed)
    })
}

/// Postgres crashes (immediate shutdown) while a run runs, and restarts: the run's failure
/// is transient, so it runs again once its lease lapses — with nobody asking.
/// Two billing replicas share the run's shards; the second is killed (and stays down) while
/// it folds one: its shard is requeued once its lease lapses and the first finishes it.
pub fn replicas_billing_kill(c: &mut Ctx) -> Result<Report> {
    // A run long enough for both replicas to hold a shard, on a fast machine too.
    let size = if c.short {
        (8, 1_000_000)
    } else {
        (20, 2_000_000)
    };
    run_fault_sized(c, size, |c| {
        let pid = c
            .cluster
            .pid("billing-2")
            .context("billing-2 is not running")?;
        let db = c.db("billing");
        let holding = format!(
            "SELECT count(*) FROM billing_run_shards WHERE status = 'running' \
             AND worker LIKE '%:{pid}/%'"
        );
        if !wait_until(Duration::from_secs(60), || Ok(c.count(&db, &holding)? > 0))? {
            let shards = c.rows(
                &db,
                "SELECT shard || ' ' || status || ' ' || worker FROM billing_run_shards",
            )?;
            bail!("billing-2 (pid {pid}) never held a shard: {shards:?}");
        }
        c.cluster.kill("billing-2")?;
        Ok(Instant::now())
    })
}

pub fn postgres_billing(c: &mut Ctx) -> Result<Report> {
    run_fault(c, |c| {
        c.infra.crash("postgres")?;
        let crashed = Instant::now();
        c.infra.restart("postgres")?;
        Ok(crashed)
    })
}

/// A run over a million records (short: 200,000) of a few tenants; `fault` hits as soon as
/// the run is claimed (returning when it began) and must leave the stack able to recover.
/// The run must complete once, with every record summarized, charged and invoiced once.
fn run_fault(c: &mut Ctx, fault: impl FnOnce(&mut Ctx) -> Result<Instant>) -> Result<Report> {
    let size = if c.short {
        (4, 200_000)
    } else {
        (20, 1_000_000)
    };
    run_fault_sized(c, size, fault)
}

/// [`run_fault`] over `records` usage records of `tenants` tenants.
fn run_fault_sized(
    c: &mut Ctx,
    (tenants, records): (usize, u64),
    fault: impl FnOnce(&mut Ctx) -> Result<Instant>,
) -> Result<Report> {
    let mut ids = Vec::new();
    for i in 0..tenants {
        ids.push(tenant(c, &format!("billed{i}"))?.0);
    }
    let billed = billed_tenants(c, ids, records)?;
    let gw = c.cluster.addr("gateway");
    let operator = operator()?;
    let path = start_run(c, &billed)?;
    let run = path.rsplit('/').next().unwrap_or_default().to_string();
    // The kill comes as soon as the run is claimed: mid-run, its summaries partly written.
    let started = Instant::now();
    let status = loop {
        let status = run_status(c, &path)?;
        if !matches!(status.as_str(), "queued" | "") || started.elapsed() > Duration::from_secs(60)
        {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if status != "running" {
        bail!("the run was {status:?} when the fault should have hit");
    }
    let killed = fault(c)?;
    let db = c.db("billing");
    let at_kill = c.rows(
        &db,
        &format!("SELECT status, records_processed FROM billing_runs WHERE id = '{run}'"),
    )?;
    if at_kill.first().is_some_and(|r| r.starts_with("completed")) {
        bail!("the run completed before the fault: {at_kill:?}");
    }
    let mut status = String::new();
    let settled = wait_until(Duration::from_secs(120), || {
        status = run_status(c, &path)?;
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
    let attempts = c.count(
        &db,
        &format!("SELECT attempt FROM billing_runs WHERE id = '{run}'"),
    )?;
    let shards = c.rows(
        &db,
        &format!(
            "SELECT count(*) || ' shards by ' || count(DISTINCT worker) || ' workers, ' \
             || coalesce(sum(attempt - 1), 0) || ' taken over' \
             FROM billing_run_shards WHERE run_id = '{run}'"
        ),
    )?;
    // Invoicing follows the completed run.
    let (inv, invoiced) = invoices(c, tenants)?;
    // Each of these counts every record once (in cents, for the money).
    let per_record = [summarized, charged, billed_cents, inv.cents];
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
            "one run over {records} records of {} tenants, hit at {}",
            billed.tenants.len(),
            at_kill.first().map(String::as_str).unwrap_or("?")
        ),
        recovery,
        lost: lost.max(0) as u64 + inv.lost(tenants),
        duplicated: doubled.max(0) as u64 + (runs - 1).max(0) as u64 + inv.duplicated(tenants),
        detail: format!(
            "run {status} (attempt {attempts}; {}); {summarized} records summarized, {charged} cents charged \
             ({billed_cents} in the run's totals); {}{}",
            shards.first().map(String::as_str).unwrap_or("no shards"),
            inv.describe(),
            if settled && invoiced {
                ""
            } else {
                "; NOT settled in 120 s"
            }
        ),
        ok: settled && invoiced && inv.gaps == 0,
    })
}

/// What the invoicing service made of a run, read from its database.
struct Invoices {
    count: i64,
    /// Tenants with an invoice.
    tenants: i64,
    /// Finalized and its PDF stored.
    published: i64,
    /// Their net total, in cents.
    cents: i64,
    /// Numbers skipped in the series (gapless: 0).
    gaps: i64,
    /// `invoice.ready` messages of the notification service beyond one per invoice.
    extra_ready: i64,
}

impl Invoices {
    fn lost(&self, tenants: usize) -> u64 {
        (tenants as i64 - self.tenants).max(0) as u64 + (self.count - self.published).max(0) as u64
    }

    fn duplicated(&self, tenants: usize) -> u64 {
        (self.count - tenants as i64).max(0) as u64 + self.extra_ready.max(0) as u64
    }

    fn describe(&self) -> String {
        format!(
            "{} invoices ({} published) worth {} cents, {} gaps in their numbers",
            self.count, self.published, self.cents, self.gaps
        )
    }
}

/// Waits (at most 120 s) until `tenants` invoices are published, then reads them; whether
/// they were.
fn invoices(c: &Ctx, tenants: usize) -> Result<(Invoices, bool)> {
    let db = c.db("invoicing");
    let published =
        "SELECT count(*) FROM invoices WHERE number IS NOT NULL AND pdf_key IS NOT NULL";
    let settled = wait_until(Duration::from_secs(120), || {
        Ok(c.count(&db, published)? >= tenants as i64)
    })?;
    let inv = Invoices {
        count: c.count(&db, "SELECT count(*) FROM invoices")?,
        tenants: c.count(&db, "SELECT count(DISTINCT tenant_id) FROM invoices")?,
        published: c.count(&db, published)?,
        cents: c.count(&db, "SELECT coalesce(sum(net_minor), 0) FROM invoices")?,
        gaps: c.count(
            &db,
            "SELECT coalesce(max(substring(number FROM '[0-9]+$')::bigint), 0) - count(number) \
             FROM invoices",
        )?,
        extra_ready: c.count(
            &c.db("notification"),
            "SELECT count(*) - count(DISTINCT tenant_id) FROM messages \
             WHERE event_type = 'invoice.ready'",
        )?,
    };
    Ok((inv, settled))
}

/// Bills `ids` (ten records each) in one run and waits until it completed.
pub(super) fn completed_run(c: &Ctx, ids: Vec<String>) -> Result<()> {
    let records = ids.len() as u64 * 10;
    let billed = billed_tenants(c, ids, records)?;
    let path = start_run(c, &billed)?;
    if !wait_until(Duration::from_secs(120), || {
        Ok(run_status(c, &path)? == "completed")
    })? {
        bail!("the run did not complete in 120 s");
    }
    Ok(())
}

/// Kills `service` once a tenth of `of` things are `done` (a count in database `db`),
/// restarts it; when the kill came, and how many were done by then (never all of them).
pub(super) fn kill_under_way(
    c: &mut Ctx,
    service: &str,
    db: &str,
    done: &str,
    of: usize,
) -> Result<(Instant, i64)> {
    if !wait_until(Duration::from_secs(120), || {
        Ok(c.count(db, done)? >= of as i64 / 10)
    })? {
        bail!("not a tenth done in 120 s: {done}");
    }
    c.cluster.kill(service)?;
    let killed = Instant::now();
    let at_kill = c.count(db, done)?;
    if at_kill >= of as i64 {
        bail!("all {of} were done before the kill: {done}");
    }
    c.cluster.restart(service)?;
    Ok((killed, at_kill))
}

pub fn invoicing_kill(c: &mut Ctx) -> Result<Report> {
    // Enough that the kill lands while invoices are still being made, on a fast machine too
    // (60 were all done between two polls once).
    let tenants = if c.short { 300 } else { 400 };
    let mut ids = Vec::new();
    for i in 0..tenants {
        ids.push(tenant(c, &format!("invoiced{i}"))?.0);
    }
    let records = tenants as u64 * 10;
    completed_run(c, ids)?;
    let db = c.db("invoicing");
    let numbered = "SELECT count(number) FROM invoices";
    let (killed, at_kill) = kill_under_way(c, "invoicing", &db, numbered, tenants)?;
    let (inv, settled) = invoices(c, tenants)?;
    let recovery = killed.elapsed();
    let expected = records as i64;
    Ok(Report {
        workload: format!(
            "a run's invoices for {tenants} tenants ({records} records), killed after {at_kill} were numbered"
        ),
        recovery,
        lost: inv.lost(tenants) + (expected - inv.cents).max(0) as u64,
        duplicated: inv.duplicated(tenants) + (inv.cents - expected).max(0) as u64,
        detail: format!(
            "{}{}",
            inv.describe(),
            if settled {
                ""
            } else {
                "; NOT settled in 120 s"
            }
        ),
        ok: settled && inv.gaps == 0,
    })
}
