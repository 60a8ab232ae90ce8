//! Kills of the services whose flows carry a tenant's day: users (and their seats), usage
//! ingestion, webhooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::super::{Ctx, Report};
use super::{
    Retried, before_fault, create_plan, describe_retried, json_of, operator, post_counting,
    subscribe, tenant, user_workload, users, wait_until,
};
use crate::client::{Receiver, request};

/// The seat plan the user scenarios subscribe their tenant to: one seat per user.
pub(super) fn seated_tenant(c: &Ctx, name: &str) -> Result<(String, String)> {
    let (t, owner) = tenant(c, name)?;
    create_plan(
        c,
        &json!({
            "id": "faults-seats", "name": "Seats", "currency": "EUR", "interval": "month",
            "prices": [{"id": "seat", "kind": "seat", "model": {"type": "per_unit", "unit_amount": "1000"}}],
        }),
    )?;
    subscribe(c, &t, "faults-seats")?;
    Ok((t, owner))
}

/// Users and seats of a tenant after `n` users were created.
pub(super) struct Seated {
    users: usize,
    distinct: usize,
    seats: u64,
    pub(super) settled: bool,
}

impl Seated {
    /// Waits (at most `limit`) until the subscription counts `n` seats, then lists the users.
    pub(super) fn read(c: &Ctx, t: &str, owner: &str, n: usize, limit: Duration) -> Result<Self> {
        let path = format!("/v1/tenants/{t}/subscription");
        let mut seats = -1;
        let settled = wait_until(limit, || {
            let (s, b) = request(&c.cluster.addr("gateway"), "GET", &path, owner, &[], "")?;
            seats = json_of(&b)["seats"].as_i64().unwrap_or(-1);
            Ok(s == 200 && seats >= n as i64)
        })?;
        let emails = users(c, t, owner)?;
        let mut distinct = emails.clone();
        distinct.sort();
        distinct.dedup();
        Ok(Seated {
            users: emails.len(),
            distinct: distinct.len(),
            seats: seats.max(0) as u64,
            settled,
        })
    }

    pub(super) fn lost(&self, n: usize) -> u64 {
        (n as u64).saturating_sub(self.distinct as u64) + (n as u64).saturating_sub(self.seats)
    }

    pub(super) fn duplicated(&self, n: usize) -> u64 {
        (self.users - self.distinct) as u64 + self.seats.saturating_sub(n as u64)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{} users, {} seats in the subscription{}",
            self.users,
            self.seats,
            if self.settled { "" } else { "; NOT settled" }
        )
    }
}

pub fn user_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let (t, owner) = seated_tenant(c, "seated")?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a third of the users were not created", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    c.cluster.kill("user")?;
    let killed = Instant::now();
    c.cluster.restart("user")?;
    worker.join().expect("the workload thread")?;
    let seated = Seated::read(c, &t, &owner, n, Duration::from_secs(90))?;
    Ok(Report {
        workload: format!("{n} users created"),
        recovery: killed.elapsed(),
        lost: seated.lost(n),
        duplicated: seated.duplicated(n),
        detail: seated.describe(),
        ok: seated.settled,
    })
}

pub fn subscription_kill(c: &mut Ctx) -> Result<Report> {
    ingestion(c, |c| {
        c.cluster.kill("subscription")?;
        let killed = Instant::now();
        c.cluster.restart("subscription")?;
        Ok(killed)
    })
}

/// Usage ingested through the gateway in batches, each re-sent until accepted; `fault` hits
/// once a third is in (returning when it began) and must leave the stack able to recover.
/// Every record must be counted once; a retried answer other than a 429, 502, 503 or 504 (or
/// no answer, while a process is down) is not a clear error.
pub(super) fn ingestion(
    c: &mut Ctx,
    fault: impl FnOnce(&mut Ctx) -> Result<Instant>,
) -> Result<Report> {
    let (records, batch) = if c.short {
        (5_000, 250)
    } else {
        (100_000, 1_000)
    };
    let gw = c.cluster.addr("gateway");
    let operator = operator()?;
    let (t, _) = tenant(c, "metered")?;
    create_plan(
        c,
        &json!({
            "id": "faults-metered", "name": "Metered", "currency": "EUR", "interval": "month",
            "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                        "model": {"type": "per_unit", "unit_amount": "0.01"}}],
            "features": [{"key": "calls", "type": "limit", "metric": "api_calls",
                          "limit": "1000000000", "limit_kind": "soft"}],
        }),
    )?;
    subscribe(c, &t, "faults-metered")?;
    let now = chrono::Utc::now();
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let done = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (gw, operator, t, at, done) = (
            gw.clone(),
            operator.clone(),
            t.clone(),
            at.clone(),
            done.clone(),
        );
        std::thread::spawn(move || -> Result<(u64, u64, Retried)> {
            let (mut accepted, mut duplicates, mut retried) = (0, 0, Retried::new());
            for first in (0..records).step_by(batch) {
                let recs: Vec<Value> = (first..(first + batch).min(records))
                    .map(|i| {
                        json!({"id": format!("r{i}"), "tenant_id": t, "metric": "api_calls",
                                    "quantity": "1", "timestamp": at})
                    })
                    .collect();
                let body = json!({ "records": recs }).to_string();
                let v = post_counting(&gw, "/v1/usage", &operator, &body, 200, &mut retried)?;
                if v["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
                    bail!("records rejected: {}", v["rejected"]);
                }
                accepted += v["accepted"].as_u64().unwrap_or(0);
                duplicates += v["duplicates"].as_u64().unwrap_or(0);
                done.fetch_add(recs.len(), Ordering::Relaxed);
            }
            Ok((accepted, duplicates, retried))
        })
    };
    let worker = before_fault(worker, "a third of the records were not ingested", || {
        done.load(Ordering::Relaxed) >= records / 3
    })?;
    let began = fault(c)?;
    let (accepted, duplicates, retried) = worker.join().expect("the workload thread")?;
    let from =
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path =
        format!("/v1/tenants/{t}/usage?metric=api_calls&from={from}&to={to}&granularity=period");
    let mut total = 0.0;
    let settled = wait_until(Duration::from_secs(60), || {
        let (s, b) = request(&gw, "GET", &path, &operator, &[], "")?;
        total = json_of(&b)["total"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(-1.0);
        Ok(s == 200 && total >= records as f64)
    })?;
    let recovery = began.elapsed();
    // The entitlement check counts from the same rollups: what it says is used must be
    // what was ingested, once.
    let (s, b) = request(
        &gw,
        "GET",
        &format!("/v1/tenants/{t}/entitlements/calls"),
        &operator,
        &[],
        "",
    )?;
    let used: f64 = json_of(&b)["used"]
        .as_str()
        .and_then(|u| u.parse().ok())
        .unwrap_or(-1.0);
    if s != 200 {
        bail!("the entitlement check answered {s}: {b}");
    }
    let counted = total.max(0.0) as u64;
    let entitled = used.max(0.0) as u64;
    let unclear = retried
        .keys()
        .any(|s| !matches!(s, 0 | 429 | 502 | 503 | 504));
    Ok(Report {
        workload: format!("{records} usage records in batches of {batch}"),
        recovery,
        lost: (records as u64).saturating_sub(counted.min(entitled)),
        duplicated: counted.max(entitled).saturating_sub(records as u64),
        detail: format!(
            "usage total {total}, entitlement used {used}; answers: {accepted} accepted, \
             {duplicates} duplicates (batches re-sent); retried: {}{}{}",
            describe_retried(&retried),
            if unclear {
                " (NOT all clear errors)"
            } else {
                ""
            },
            if settled { "" } else { "; NOT settled in 60 s" }
        ),
        ok: settled && !unclear,
    })
}

/// A webhook endpoint of `tenant` for `user.created`, at a fresh receiver.
pub(super) fn user_webhooks(c: &Ctx, t: &str, owner: &str) -> Result<Receiver> {
    let (rx, url) = Receiver::start()?;
    let endpoint = json!({"url": url, "event_types": ["user.created"]}).to_string();
    let (s, b) = request(
        &c.cluster.addr("gateway"),
        "POST",
        &format!("/v1/tenants/{t}/webhook_endpoints"),
        owner,
        &[],
        &endpoint,
    )?;
    if s != 200 {
        bail!("registering the endpoint: {s} {b}");
    }
    Ok(rx)
}

/// What became of `n` users' `user.created` webhooks.
pub(super) struct Webhooks {
    messages: i64,
    undelivered: i64,
    double_recorded: i64,
    never_arrived: usize,
    resent: usize,
    pub(super) settled: bool,
}

impl Webhooks {
    /// Waits (at most `limit`) until every user's event was told and every delivery settled,
    /// then compares the notification service's log with what the receiver got.
    pub(super) fn read(c: &Ctx, rx: &Receiver, n: usize, limit: Duration) -> Result<Self> {
        let db = c.db("notification");
        let told = "SELECT count(*) FROM messages WHERE event_type = 'user.created'";
        let settled = wait_until(limit, || {
            Ok(c.count(&db, told)? >= n as i64
                && c.count(
                    &db,
                    "SELECT count(*) FROM deliveries WHERE status = 'pending'",
                )? == 0)
        })?;
        let ids: Vec<String> = c.rows(&db, "SELECT id FROM messages")?;
        let got = rx.ids();
        let mut distinct = got.clone();
        distinct.sort();
        distinct.dedup();
        Ok(Webhooks {
            messages: c.count(&db, told)?,
            undelivered: c.count(
                &db,
                "SELECT count(*) FROM deliveries WHERE status <> 'delivered'",
            )?,
            double_recorded: c.count(
                &db,
                "SELECT count(*) FROM (SELECT delivery_id FROM delivery_attempts \
                 WHERE response_code BETWEEN 200 AND 299 GROUP BY delivery_id \
                 HAVING count(*) > 1) x",
            )?,
            never_arrived: ids.iter().filter(|id| !got.contains(id)).count(),
            resent: got.len() - distinct.len(),
            settled,
        })
    }

    pub(super) fn lost(&self, n: usize) -> u64 {
        (n as i64 - self.messages).max(0) as u64
            + self.never_arrived as u64
            + self.undelivered as u64
    }

    pub(super) fn duplicated(&self, n: usize) -> u64 {
        self.double_recorded as u64 + (self.messages - n as i64).max(0) as u64
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{} webhooks, {} resent (at least once; same webhook-id){}",
            self.messages,
            self.resent,
            if self.settled { "" } else { "; NOT settled" }
        )
    }
}

pub fn notification_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let (t, owner) = tenant(c, "notified")?;
    let rx = user_webhooks(c, &t, &owner)?;
    let (_, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a quarter of the webhooks did not arrive", || {
        rx.ids().len() >= n / 4
    })?;
    c.cluster.kill("notification")?;
    let killed = Instant::now();
    c.cluster.restart("notification")?;
    let (statuses, _) = worker.join().expect("the workload thread")?;
    // Events the killed consumer held return after JetStream's 30 s ack wait.
    let hooks = Webhooks::read(c, &rx, n, Duration::from_secs(180))?;
    let created = statuses.iter().filter(|s| **s == 201).count();
    Ok(Report {
        workload: format!("{n} users ({created} created) → webhooks"),
        recovery: killed.elapsed(),
        lost: hooks.lost(n),
        duplicated: hooks.duplicated(n),
        detail: hooks.describe(),
        ok: hooks.settled,
    })
}
