//! Scenarios on two replicas of every service (`cargo xtask up --replicas 2` as the suite
//! starts it): events handled once by consumers shared across replicas, outbox relays that
//! never publish twice, clocks that fire once, caches that follow writes made on the other
//! replica, and one per-tenant rate limit across two gateways.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::super::{Ctx, Report};
use super::flows::{Seated, Webhooks, seated_tenant, user_webhooks};
use super::{before_fault, create_plan, json_of, operator, post_until, subscribe, tenant};
use super::{user_workload, wait_until};
use crate::client::{Receiver, request};

/// Replicas of every service in these scenarios.
pub const REPLICAS: usize = 2;

/// The per-tenant budget `replicas_rate_limit` sets on both gateways.
const TENANT_PER_SEC: u32 = 50;
const TENANT_BURST: u32 = 50;

/// The retries `replicas-dunning` schedules (`DUNNING_SCHEDULE` below).
pub const DUNNING_RETRIES: usize = 3;

/// What each scenario sets on top of the suite's defaults: `(service, name, value)`.
pub fn extra_env(name: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match name {
        "replicas-clocks" => &[
            ("billing", "BILLING_CLOCK_SECS", "1"),
            ("subscription", "SUBSCRIPTION_TICK_SECS", "1"),
        ],
        "replicas-caches" => &[("gateway", "API_KEY_CACHE_SECS", "1")],
        "replicas-billing-kill" => &[("billing", "BILLING_RUN_SHARDS", "4")],
        "replicas-dunning" => &[("payment", "DUNNING_SCHEDULE", "1s,2s,3s")],
        "replicas-rate-limit" => &[
            ("gateway", "RATE_LIMIT_TENANT_PER_SEC", "50"),
            ("gateway", "RATE_LIMIT_TENANT_BURST", "50"),
            ("gateway", "RATE_LIMIT_CALLER_PER_SEC", "100000"),
            ("gateway", "RATE_LIMIT_CALLER_BURST", "100000"),
        ],
        _ => &[],
    }
}

/// Users created through both gateways, turn about; once a third are in, one replica of the
/// user, subscription and notification services is killed and stays down: every
/// `user.created` is published once, counted as a seat once and told as a webhook once,
/// whichever replica's relay and consumer took it.
pub fn replicas_events(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let (t, owner) = seated_tenant(c, "replicated")?;
    let rx = user_webhooks(c, &t, &owner)?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a third of the users were not created", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    let killed = Instant::now();
    for service in ["user-2", "subscription-2", "notification-2"] {
        c.cluster.kill(service)?;
    }
    worker.join().expect("the workload thread")?;
    let seated = Seated::read(c, &t, &owner, n, Duration::from_secs(120))?;
    // Events the killed consumers held come back after JetStream's 30 s ack wait.
    let hooks = Webhooks::read(c, &rx, n, Duration::from_secs(180))?;
    Ok(Report {
        workload: format!("{n} users through 2 gateways → seats and webhooks"),
        recovery: killed.elapsed(),
        lost: seated.lost(n) + hooks.lost(n),
        duplicated: seated.duplicated(n) + hooks.duplicated(n),
        detail: format!(
            "user-2, subscription-2, notification-2 killed at user ~{}; {}; {}",
            n / 3,
            seated.describe(),
            hooks.describe()
        ),
        ok: seated.settled && hooks.settled,
    })
}

/// Every clock on both replicas at once: the billing clock (each second), the subscription
/// clock (trials ending and periods rolling, put due by moving their dates into the past)
/// and the notification clock (webhook retries, the receiver refusing each first two
/// deliveries). Each fires once: clock windows neither overlap nor leave gaps, each trial
/// ends once, each period rolls once, each retry is made once.
pub fn replicas_clocks(c: &mut Ctx) -> Result<Report> {
    let tenants = if c.short { 10 } else { 50 };
    let fail_first = 2;
    create_plan(
        c,
        &json!({
            "id": "faults-trial", "name": "Trial", "currency": "EUR", "interval": "month",
            "trial_days": 14,
            "prices": [{"id": "base", "kind": "flat", "model": {"type": "flat", "amount": "1000"}}],
        }),
    )?;
    let (rx, url) = Receiver::failing_first(fail_first)?;
    let mut ids = Vec::new();
    for i in 0..tenants {
        let (t, owner) = tenant(c, &format!("clocked{i}"))?;
        subscribe(c, &t, "faults-trial")?;
        if i == 0 {
            let endpoint = json!({"url": url, "event_types": ["user.created"]}).to_string();
            post_until(
                &c.cluster.addr("gateway"),
                &format!("/v1/tenants/{t}/webhook_endpoints"),
                &owner,
                &endpoint,
                200,
            )?;
            for u in 0..tenants {
                let body = json!({"email": format!("u{u}@clocks.example")}).to_string();
                post_until(
                    &c.cluster
                        .addr(if u % 2 == 0 { "gateway" } else { "gateway-2" }),
                    &format!("/v1/tenants/{t}/users"),
                    &owner,
                    &body,
                    201,
                )?;
            }
        }
        ids.push(t);
    }
    let sub = c.db("subscription");
    let list = ids
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    c.rows(
        &sub,
        &format!(
            "UPDATE subscriptions SET trial_end = now() - interval '1 second', \
             period_end = now() - interval '1 second' WHERE tenant_id IN ({list})"
        ),
    )?;
    let due = Instant::now();
    let events = |kind: &str| {
        c.count(
            &sub,
            &format!("SELECT count(*) FROM outbox WHERE payload->>'type' = 'subscription.{kind}'"),
        )
    };
    let billing = c.db("billing");
    let clock_runs = "SELECT count(*) FROM billing_runs WHERE origin = 'clock'";
    let attempts_each = fail_first as i64 + 1;
    let settled = wait_until(Duration::from_secs(120), || {
        Ok(events("trial_ended")? >= tenants as i64
            && events("renewed")? >= tenants as i64
            && c.count(&billing, clock_runs)? >= 5
            && rx.ids().len() as i64 >= tenants as i64 * attempts_each)
    })?;
    // Three more ticks of every clock (the billing clock's runs show its ticks; the others
    // tick as often) for one that would fire twice to show it.
    let ticks = c.count(&billing, clock_runs)?;
    if !wait_until(Duration::from_secs(30), || {
        Ok(c.count(&billing, clock_runs)? >= ticks + 3)
    })? {
        bail!("the billing clock stopped ticking");
    }
    let (ended, renewed) = (events("trial_ended")?, events("renewed")?);
    let rolled_twice = c.count(
        &sub,
        "SELECT count(*) FROM (SELECT subscription_id, period_start FROM subscription_periods \
         GROUP BY 1, 2 HAVING count(*) > 1) x",
    )?;
    let overlaps = c.count(
        &billing,
        "SELECT count(*) FROM billing_runs a JOIN billing_runs b ON a.id < b.id \
         AND a.origin = 'clock' AND b.origin = 'clock' \
         AND a.period_start < b.period_end AND b.period_start < a.period_end",
    )?;
    let gaps = c.count(
        &billing,
        "SELECT count(*) FROM billing_runs a WHERE a.origin = 'clock' \
         AND a.period_start > (SELECT min(period_start) FROM billing_runs WHERE origin = 'clock') \
         AND NOT EXISTS (SELECT 1 FROM billing_runs b WHERE b.origin = 'clock' \
                         AND b.period_end = a.period_start)",
    )?;
    let windows = c.count(&billing, clock_runs)?;
    let mut per_hook: BTreeMap<String, i64> = BTreeMap::new();
    for id in rx.ids() {
        *per_hook.entry(id).or_default() += 1;
    }
    let retried_extra: i64 = per_hook.values().map(|n| (n - attempts_each).max(0)).sum();
    let retried_short: i64 = per_hook
        .values()
        .map(|n| (attempts_each - n).max(0))
        .sum::<i64>()
        + (tenants as i64 - per_hook.len() as i64).max(0) * attempts_each;
    let tenants = tenants as i64;
    Ok(Report {
        workload: format!(
            "{tenants} trials ended and periods rolled, {tenants} webhooks refused twice each, the billing clock each second"
        ),
        recovery: due.elapsed(),
        lost: ((tenants - ended).max(0) + (tenants - renewed).max(0) + gaps + retried_short) as u64,
        duplicated: ((ended - tenants).max(0)
            + (renewed - tenants).max(0)
            + rolled_twice
            + overlaps
            + retried_extra) as u64,
        detail: format!(
            "{ended} trial_ended, {renewed} renewed, {rolled_twice} periods opened twice; \
             {windows} clock runs, {overlaps} overlapping, {gaps} gaps; \
             {} webhook deliveries for {} webhooks{}",
            rx.ids().len(),
            per_hook.len(),
            if settled { "" } else { "; NOT settled" }
        ),
        ok: settled,
    })
}

/// Writes through one gateway, reads through both: a tenant renamed on one user replica is
/// read renamed from either (the other forgets it on `NOTIFY`); a tenant suspended, and an
/// API key revoked, are refused by both gateways within their cache time
/// (`API_KEY_CACHE_SECS=1` here). `lost` counts the checks that never caught up.
pub fn replicas_caches(c: &mut Ctx) -> Result<Report> {
    let gateways = c.cluster.addrs("gateway");
    let (t, owner) = tenant(c, "cached")?;
    let path = format!("/v1/tenants/{t}");
    // Every replica has the tenant in memory before the write.
    for _ in 0..8 {
        for gw in &gateways {
            request(gw, "GET", &path, &owner, &[], "")?;
        }
    }
    let written = Instant::now();
    let (s, b) = request(
        &gateways[0],
        "PATCH",
        &path,
        &operator()?,
        &[],
        &json!({"name": "renamed"}).to_string(),
    )?;
    if s != 200 {
        bail!("renaming: {s} {b}");
    }
    // Reads round-robin over both user replicas from each gateway: eight in a row, from
    // both gateways, must all see the new name.
    let renamed = wait_until(Duration::from_secs(5), || {
        let mut all = true;
        for _ in 0..4 {
            for gw in &gateways {
                let (_, b) = request(gw, "GET", &path, &owner, &[], "")?;
                all &= json_of(&b)["name"] == "renamed";
            }
        }
        Ok(all)
    })?;
    let rename_seen = written.elapsed();

    // An API key, used through the second gateway, revoked through the first.
    let key = post_until(
        &gateways[0],
        &format!("{path}/api_keys"),
        &owner,
        &json!({"name": "replicas", "scopes": ["users:read"]}).to_string(),
        201,
    )?;
    let (key_id, secret) = (
        key["id"].as_str().context("key id")?.to_string(),
        key["secret"].as_str().context("key secret")?.to_string(),
    );
    let users = format!("{path}/users");
    let (s, b) = request(&gateways[1], "GET", &users, &secret, &[], "")?;
    if s != 200 {
        bail!("the new key was refused: {s} {b}");
    }
    let revoked_at = Instant::now();
    let (s, b) = request(
        &gateways[0],
        "DELETE",
        &format!("{path}/api_keys/{key_id}"),
        &owner,
        &[],
        "",
    )?;
    if s != 200 {
        bail!("revoking: {s} {b}");
    }
    let refused = wait_until(Duration::from_secs(3), || {
        Ok(gateways
            .iter()
            .all(|gw| request(gw, "GET", &users, &secret, &[], "").is_ok_and(|(s, _)| s == 401)))
    })?;
    let revoke_seen = revoked_at.elapsed();

    // The tenant suspended by the operator through the first gateway: the owner's writes,
    // accepted through both before, are refused through both.
    let mut n = 0;
    let mut add_user = |gw: &str| {
        n += 1;
        let body = json!({"email": format!("w{n}@caches.example")}).to_string();
        request(gw, "POST", &users, &owner, &[], &body)
    };
    for gw in &gateways {
        let (s, b) = add_user(gw)?;
        if s != 201 {
            bail!("a write before the suspension: {s} {b}");
        }
    }
    let suspended_at = Instant::now();
    post_until(
        &gateways[0],
        &format!("{path}/suspend"),
        &operator()?,
        "",
        200,
    )?;
    let held = wait_until(Duration::from_secs(3), || {
        Ok(gateways
            .iter()
            .all(|gw| add_user(gw).is_ok_and(|(s, b)| s == 403 && b.contains("tenant_suspended"))))
    })?;
    let suspend_seen = suspended_at.elapsed();
    let missed = [renamed, refused, held].iter().filter(|ok| !**ok).count();
    Ok(Report {
        workload:
            "a rename, a key revocation and a suspension through one gateway, read through both"
                .into(),
        recovery: rename_seen.max(revoke_seen).max(suspend_seen),
        lost: missed as u64,
        duplicated: 0,
        detail: format!(
            "renamed everywhere after {:.0} ms, key refused everywhere after {:.0} ms, suspension after {:.0} ms",
            rename_seen.as_secs_f64() * 1e3,
            revoke_seen.as_secs_f64() * 1e3,
            suspend_seen.as_secs_f64() * 1e3,
        ),
        ok: missed == 0,
    })
}

/// One tenant's callers hammer both gateways for a few seconds: the tenant's budget
/// (`TENANT_BURST` at once, `TENANT_PER_SEC` sustained) is shared through Redis, so together
/// they are let through no more than it allows — plus what each gateway may have leased and
/// not yet spent (a tenth of a second's worth) — and no less than 70 % of it.
pub fn replicas_rate_limit(c: &mut Ctx) -> Result<Report> {
    let (t, _) = tenant(c, "limited")?;
    let path = format!("/v1/tenants/{t}");
    let gateways = c.cluster.addrs("gateway");
    let secs = if c.short { 4.0 } else { 10.0 };
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let gw = gateways[i % gateways.len()].clone();
            let token = crate::token::mint(&t, &format!("caller{i}"), &["owner"], 3600);
            let path = path.clone();
            std::thread::spawn(move || -> Result<(u64, u64, u64)> {
                let token = token?;
                let (mut ok, mut limited, mut other) = (0, 0, 0);
                while started.elapsed().as_secs_f64() < secs {
                    match request(&gw, "GET", &path, &token, &[], "")?.0 {
                        200 => ok += 1,
                        429 => limited += 1,
                        _ => other += 1,
                    }
                }
                Ok((ok, limited, other))
            })
        })
        .collect();
    let (mut ok, mut limited, mut other) = (0, 0, 0);
    for w in workers {
        let (o, l, x) = w.join().expect("a caller thread")?;
        ok += o;
        limited += l;
        other += x;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let budget = TENANT_BURST as f64 + TENANT_PER_SEC as f64 * elapsed;
    let leases = gateways.len() as f64 * (TENANT_PER_SEC as f64 / 10.0).ceil();
    let over = (ok as f64 - (budget + leases)).max(0.0).ceil() as u64;
    let under = (0.7 * budget - ok as f64).max(0.0).ceil() as u64;
    Ok(Report {
        workload: format!(
            "4 callers of one tenant on {} gateways for {elapsed:.1} s",
            gateways.len()
        ),
        recovery: Duration::ZERO,
        lost: 0,
        duplicated: 0,
        detail: format!(
            "{ok} let through ({:.0} % of the budget {budget:.0}), {limited} answered 429, {other} other; \
             {over} over the budget plus leases, {under} short of 70 %",
            100.0 * ok as f64 / budget
        ),
        ok: over == 0 && under == 0 && other == 0,
    })
}
