//! Kills of the services whose flows carry a tenant's day: users (and their seats), usage
//! ingestion, webhooks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::super::client::{Receiver, request};
use super::super::{Ctx, Report};
use super::{
    before_fault, create_plan, json_of, operator, post_until, subscribe, tenant, user_workload,
    users, wait_until,
};

pub fn user_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let gw = c.cluster.addr("gateway");
    let (t, owner) = tenant(c, "seated")?;
    create_plan(
        c,
        &json!({
            "id": "faults-seats", "name": "Seats", "currency": "EUR", "interval": "month",
            "prices": [{"id": "seat", "kind": "seat", "model": {"type": "per_unit", "unit_amount": "1000"}}],
        }),
    )?;
    subscribe(c, &t, "faults-seats")?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a third of the users were not created", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    c.cluster.kill("user")?;
    let killed = Instant::now();
    c.cluster.restart("user")?;
    worker.join().expect("the workload thread")?;
    let path = format!("/v1/tenants/{t}/subscription");
    let mut seats = -1;
    let settled = wait_until(Duration::from_secs(90), || {
        let (s, b) = request(&gw, "GET", &path, &owner, &[], "")?;
        seats = json_of(&b)["seats"].as_i64().unwrap_or(-1);
        Ok(s == 200 && seats >= n as i64)
    })?;
    let recovery = killed.elapsed();
    let emails = users(c, &t, &owner)?;
    let mut distinct = emails.clone();
    distinct.sort();
    distinct.dedup();
    let seats = seats.max(0) as u64;
    Ok(Report {
        workload: format!("{n} users created"),
        recovery,
        lost: (n as u64).saturating_sub(distinct.len() as u64) + (n as u64).saturating_sub(seats),
        duplicated: (emails.len() - distinct.len()) as u64 + seats.saturating_sub(n as u64),
        detail: format!(
            "{} users, {seats} seats in the subscription{}",
            emails.len(),
            if settled { "" } else { "; NOT settled in 90 s" }
        ),
        ok: settled,
    })
}

pub fn subscription_kill(c: &mut Ctx) -> Result<Report> {
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
        std::thread::spawn(move || -> Result<(u64, u64)> {
            let (mut accepted, mut duplicates) = (0, 0);
            for first in (0..records).step_by(batch) {
                let recs: Vec<Value> = (first..(first + batch).min(records))
                    .map(|i| {
                        json!({"id": format!("r{i}"), "tenant_id": t, "metric": "api_calls",
                                    "quantity": "1", "timestamp": at})
                    })
                    .collect();
                let body = json!({ "records": recs }).to_string();
                let v = post_until(&gw, "/v1/usage", &operator, &body, 200)?;
                if v["rejected"].as_array().is_some_and(|r| !r.is_empty()) {
                    bail!("records rejected: {}", v["rejected"]);
                }
                accepted += v["accepted"].as_u64().unwrap_or(0);
                duplicates += v["duplicates"].as_u64().unwrap_or(0);
                done.fetch_add(recs.len(), Ordering::Relaxed);
            }
            Ok((accepted, duplicates))
        })
    };
    let worker = before_fault(worker, "a third of the records were not ingested", || {
        done.load(Ordering::Relaxed) >= records / 3
    })?;
    c.cluster.kill("subscription")?;
    let killed = Instant::now();
    c.cluster.restart("subscription")?;
    let (accepted, duplicates) = worker.join().expect("the workload thread")?;
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
    let recovery = killed.elapsed();
    let counted = total.max(0.0) as u64;
    Ok(Report {
        workload: format!("{records} usage records in batches of {batch}"),
        recovery,
        lost: (records as u64).saturating_sub(counted),
        duplicated: counted.saturating_sub(records as u64),
        detail: format!(
            "usage total {total}; answers: {accepted} accepted, {duplicates} duplicates (batches re-sent after the kill){}",
            if settled { "" } else { "; NOT settled in 60 s" }
        ),
        ok: settled,
    })
}

pub fn notification_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let (t, owner) = tenant(c, "notified")?;
    let (rx, url) = Receiver::start()?;
    let endpoint = json!({"url": url, "event_types": ["user.created"]}).to_string();
    let (s, b) = request(
        &c.cluster.addr("gateway"),
        "POST",
        &format!("/v1/tenants/{t}/webhook_endpoints"),
        &owner,
        &[],
        &endpoint,
    )?;
    if s != 200 {
        bail!("registering the endpoint: {s} {b}");
    }
    let (_, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a quarter of the webhooks did not arrive", || {
        rx.ids().len() >= n / 4
    })?;
    c.cluster.kill("notification")?;
    let killed = Instant::now();
    c.cluster.restart("notification")?;
    let (statuses, _) = worker.join().expect("the workload thread")?;
    let db = c.db("notification");
    // Quiescent: every user's event told and every delivery settled (events the killed
    // consumer held return after JetStream's 30 s ack wait).
    let settled = wait_until(Duration::from_secs(180), || {
        Ok(c.count(
            &db,
            "SELECT count(*) FROM messages WHERE event_type = 'user.created'",
        )? >= n as i64
            && c.count(
                &db,
                "SELECT count(*) FROM deliveries WHERE status = 'pending'",
            )? == 0)
    })?;
    let recovery = killed.elapsed();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let messages = c.count(
        &db,
        "SELECT count(*) FROM messages WHERE event_type = 'user.created'",
    )?;
    let undelivered = c.count(
        &db,
        "SELECT count(*) FROM deliveries WHERE status <> 'delivered'",
    )?;
    let double_recorded = c.count(
        &db,
        "SELECT count(*) FROM (SELECT delivery_id FROM delivery_attempts \
         WHERE response_code BETWEEN 200 AND 299 GROUP BY delivery_id HAVING count(*) > 1) x",
    )?;
    let ids: Vec<String> = c.rows(&db, "SELECT id FROM messages")?;
    let got = rx.ids();
    let never_arrived = ids.iter().filter(|id| !got.contains(id)).count();
    let mut distinct = got.clone();
    distinct.sort();
    distinct.dedup();
    let resent = got.len() - distinct.len();
    let lost = (n as i64 - messages).max(0) as u64 + never_arrived as u64 + undelivered as u64;
    Ok(Report {
        workload: format!("{n} users ({created} created) → {messages} webhooks"),
        recovery,
        lost,
        duplicated: double_recorded as u64 + (messages - n as i64).max(0) as u64,
        detail: format!(
            "{resent} resent after the kill (at least once; same webhook-id){}",
            if settled {
                ""
            } else {
                "; NOT settled in 180 s"
            }
        ),
        ok: settled,
    })
}
