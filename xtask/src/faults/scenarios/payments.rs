//! The payment service killed while it charges a run's invoices to the tenants' cards. The
//! sandbox PSP runs as a process of its own, so its ledger — how often money moved — outlives
//! the kill and is read from it afterwards.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::super::{Ctx, Report};
use super::billing::{completed_run, kill_under_way};
use super::replicas::DUNNING_RETRIES;
use super::{post_until, tenant, wait_until};
use crate::client::request;

pub fn payment_kill(c: &mut Ctx) -> Result<Report> {
    let tenants = if c.short { 20 } else { 200 };
    let gw = c.cluster.addr("gateway");
    let mut ids = Vec::new();
    for i in 0..tenants {
        let (t, owner) = tenant(c, &format!("paying{i}"))?;
        let card = json!({"provider": "sandbox", "psp_token": "pm_card_visa"}).to_string();
        post_until(
            &gw,
            &format!("/v1/tenants/{t}/payment_methods"),
            &owner,
            &card,
            200,
        )?;
        ids.push(t);
    }
    completed_run(c, ids)?;
    // Every invoice is finalized at once and charged off-session as it becomes ready.
    let inv = c.db("invoicing");
    let paid = "SELECT count(*) FROM invoices WHERE status = 'paid'";
    let (killed, at_kill) = kill_under_way(c, "payment", &inv, paid, tenants)?;
    let settled = wait_until(Duration::from_secs(180), || {
        Ok(c.count(&inv, paid)? >= tenants as i64)
    })?;
    let recovery = killed.elapsed();

    // The PSP's ledger: how often money moved per PSP intent.
    let (s, b) = request(
        &c.cluster.addr("psp"),
        "GET",
        "/sandbox/charges",
        "",
        &[],
        "",
    )?;
    if s != 200 {
        bail!("the sandbox's ledger: {s} {b}");
    }
    let moved: HashMap<String, u32> = serde_json::from_str(&b).context("the sandbox's ledger")?;
    let pay = c.db("payment");
    // Each invoice's intents, and the PSP intents money moved on.
    let per_invoice = c.rows(
        &pay,
        "SELECT invoice_id || ' ' || coalesce(psp_intent_id, '') FROM payment_intents \
         WHERE invoice_id IS NOT NULL",
    )?;
    let mut charged_per_invoice: HashMap<String, u32> = HashMap::new();
    for row in &per_invoice {
        let (invoice, psp) = row.split_once(' ').unwrap_or((row, ""));
        let n = moved.get(psp).copied().unwrap_or(0);
        *charged_per_invoice.entry(invoice.to_string()).or_default() += n;
    }
    let invoices = c.count(&inv, "SELECT count(*) FROM invoices")?;
    let paid_now = c.count(&inv, paid)?;
    let double_charged = charged_per_invoice.values().filter(|n| **n > 1).count();
    let uncharged = (invoices as usize)
        .saturating_sub(charged_per_invoice.values().filter(|n| **n >= 1).count());
    let received = c.count(
        &pay,
        "SELECT coalesce(sum(amount_received), 0) FROM payment_intents WHERE invoice_id IS NOT NULL",
    )?;
    let due = c.count(&inv, "SELECT coalesce(sum(total_minor), 0) FROM invoices")?;
    let movements: u32 = moved.values().sum();
    Ok(Report {
        workload: format!(
            "{tenants} invoices charged off-session to a card, killed after {at_kill} were paid"
        ),
        recovery,
        lost: uncharged as u64
            + (invoices - paid_now).max(0) as u64
            + (due - received).max(0) as u64,
        duplicated: double_charged as u64
            + (received - due).max(0) as u64
            + u64::from(movements).saturating_sub(invoices as u64),
        detail: format!(
            "{paid_now} of {invoices} invoices paid; the PSP moved money {movements} times; \
             {received} cents received of {due} due{}",
            if settled {
                ""
            } else {
                "; NOT settled in 180 s"
            }
        ),
        ok: settled,
    })
}

/// Two payment replicas' clocks over one database while every tenant's card declines: each
/// invoice's dunning makes each of its scheduled retries once (the schedule's `DUNNING_RETRIES`
/// steps a second apart) and is exhausted once.
pub fn replicas_dunning(c: &mut Ctx) -> Result<Report> {
    let tenants = if c.short { 10 } else { 50 };
    let gw = c.cluster.addr("gateway");
    let mut ids = Vec::new();
    for i in 0..tenants {
        let (t, owner) = tenant(c, &format!("dunned{i}"))?;
        let card = json!({"provider": "sandbox", "psp_token": "pm_card_chargeDeclined"});
        post_until(
            &gw,
            &format!("/v1/tenants/{t}/payment_methods"),
            &owner,
            &card.to_string(),
            200,
        )?;
        ids.push(t);
    }
    completed_run(c, ids)?;
    let started = std::time::Instant::now();
    let pay = c.db("payment");
    let exhausted = "SELECT count(*) FROM dunning WHERE status = 'exhausted'";
    let settled = wait_until(Duration::from_secs(120), || {
        Ok(c.count(&pay, exhausted)? >= tenants as i64)
    })?;
    let recovery = started.elapsed();
    // Every schedule ended two payment-clock ticks ago (the database's clock): a retry made
    // twice, by a replica a tick behind the other, would be recorded by then.
    let ended_late = "SELECT count(*) FROM dunning WHERE ended_at IS NULL \
                      OR ended_at > now() - interval '2 seconds'";
    wait_until(Duration::from_secs(30), || {
        Ok(c.count(&pay, ended_late)? == 0)
    })?;
    let retries = DUNNING_RETRIES as i64;
    let schedules = c.count(&pay, "SELECT count(*) FROM dunning")?;
    let done = c.count(&pay, exhausted)?;
    let over = c.count(
        &pay,
        &format!(
            "SELECT coalesce(sum(greatest(retries_done, cardinality(outcomes)) - {retries}), 0) \
             FROM dunning WHERE greatest(retries_done, cardinality(outcomes)) > {retries}"
        ),
    )?;
    let under = c.count(
        &pay,
        &format!(
            "SELECT coalesce(sum({retries} - least(retries_done, cardinality(outcomes))), 0) \
             FROM dunning WHERE least(retries_done, cardinality(outcomes)) < {retries}"
        ),
    )?;
    let told = c.count(
        &pay,
        "SELECT count(*) FROM outbox WHERE payload->>'type' = 'payment.dunning.exhausted'",
    )?;
    let tenants = tenants as i64;
    Ok(Report {
        workload: format!(
            "{tenants} invoices charged to declining cards, {retries} retries each on two replicas' clocks"
        ),
        recovery,
        lost: ((tenants - schedules).max(0)
            + (tenants - done).max(0)
            + under
            + (tenants - told).max(0)) as u64,
        duplicated: ((schedules - tenants).max(0) + over + (told - tenants).max(0)) as u64,
        detail: format!(
            "{schedules} dunning schedules, {done} exhausted, {told} dunning.exhausted events; \
             retries beyond the schedule {over}, missing {under}{}",
            if settled {
                ""
            } else {
                "; NOT settled in 120 s"
            }
        ),
        ok: settled,
    })
}
