//! The scenarios: each drives a workload through the gateway, injects its fault from the
//! outside, restarts what it killed, waits for quiescence and reconciles from the outside —
//! through the API, and from a service's database where the API does not show it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::client::{Receiver, request};
use super::{Ctx, Report};

/// A scenario: it gets a fresh stack and reports what it found.
pub type Scenario = fn(&mut Ctx) -> Result<Report>;

/// What the workload thread ends with: each POST's final status, and the slowest POST.
type Workload = std::thread::JoinHandle<Result<(Vec<u16>, Duration)>>;

/// Every scenario by name, in the order a full run takes them.
pub const ALL: &[(&str, &str, Scenario)] = &[
    (
        "notification-kill",
        "kill -9 of the notification service while it delivers webhooks",
        notification_kill,
    ),
    (
        "user-kill",
        "kill -9 of the user service while users are created; seats follow in the subscription",
        user_kill,
    ),
    (
        "gateway-kill",
        "kill -9 of the gateway under POSTs with Idempotency-Key, retried by the client",
        gateway_kill,
    ),
    (
        "subscription-kill",
        "kill -9 of the subscription service under usage ingestion, batches retried by the client",
        subscription_kill,
    ),
];

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A token of the operator (`platform_admin`).
fn operator() -> Result<String> {
    crate::token::mint(
        crate::token::OPERATOR_TENANT,
        "faults",
        &["platform_admin"],
        3600,
    )
}

/// Creates `plan` (its `id` is in it) and subscribes `tenant` to it.
fn subscribe(c: &Ctx, tenant: &str, plan: Value) -> Result<()> {
    let (gw, operator) = (c.cluster.addr("gateway"), operator()?);
    let (s, b) = request(&gw, "POST", "/v1/plans", &operator, &[], &plan.to_string())?;
    if s != 201 {
        bail!("creating the plan: {s} {b}");
    }
    let sub = json!({"plan_id": plan["id"]}).to_string();
    let path = format!("/v1/tenants/{tenant}/subscription");
    let (s, b) = request(&gw, "POST", &path, &operator, &[], &sub)?;
    if s != 201 {
        bail!("subscribing: {s} {b}");
    }
    Ok(())
}

/// Waits (at most 120 s) until the workload has gone far enough for the fault; an error when
/// it did not, or ended first (with its own error, if it failed).
fn before_fault<T>(
    worker: std::thread::JoinHandle<Result<T>>,
    what: &str,
    mut far_enough: impl FnMut() -> bool,
) -> Result<std::thread::JoinHandle<Result<T>>> {
    if !wait_until(Duration::from_secs(120), || {
        Ok(far_enough() || worker.is_finished())
    })? {
        bail!("{what} in 120 s");
    }
    if worker.is_finished() {
        worker.join().expect("the workload thread")?;
        bail!("the workload ended before the fault");
    }
    Ok(worker)
}

/// A new tenant (created by the operator) and a token of its owner.
fn tenant(c: &Ctx, name: &str) -> Result<(String, String)> {
    let operator = operator()?;
    let body = json!({"name": name, "slug": format!("{name}-{}", c.tag)}).to_string();
    let (s, b) = request(
        &c.cluster.addr("gateway"),
        "POST",
        "/v1/tenants",
        &operator,
        &[],
        &body,
    )?;
    if s != 201 {
        bail!("creating a tenant: {s} {b}");
    }
    let id = json_of(&b)["id"].as_str().context("tenant id")?.to_string();
    let owner = crate::token::mint(&id, "owner", &["owner"], 3600)?;
    Ok((id, owner))
}

/// Every user of `tenant`, read page by page through the API: their e-mails.
fn users(c: &Ctx, tenant: &str, token: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/tenants/{tenant}/users?limit=100&cursor={cursor}");
        let (s, b) = request(&c.cluster.addr("gateway"), "GET", &path, token, &[], "")?;
        if s == 429 {
            // The workload spent the caller's budget: wait as a client would.
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if s != 200 {
            bail!("listing users: {s} {b}");
        }
        let v = json_of(&b);
        for u in v["data"].as_array().context("users")? {
            out.push(u["email"].as_str().unwrap_or_default().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(next) if v["has_more"] == true => cursor = next.to_string(),
            _ => return Ok(out),
        }
    }
}

/// POSTs a user until the outcome is known: created (201), or already there (409 once any
/// in-progress claim of its key has lapsed). A refused connection or a 5xx is retried.
fn create_user(addr: &str, tenant: &str, token: &str, email: &str, key: &str) -> Result<u16> {
    let body = json!({"email": email}).to_string();
    let path = format!("/v1/tenants/{tenant}/users");
    let started = Instant::now();
    loop {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{email}: no final answer in 300 s");
        }
        match request(
            addr,
            "POST",
            &path,
            token,
            &[("Idempotency-Key", key)],
            &body,
        ) {
            Ok((201, _)) => return Ok(201),
            // The key's first request is still claimed (a gateway died with it in flight):
            // the claim lapses, then the retry runs.
            Ok((409, b)) if b.contains("idempotency") => {}
            Ok((409, _)) => return Ok(409),
            // Rate-limited (the workload outruns the per-caller limit) or a 5xx: again.
            Ok((s, _)) if s == 429 || s >= 500 => {}
            Ok((s, b)) => bail!("{email}: {s} {b}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates `n` users of `tenant` from a thread; `done` counts the finished ones.
fn user_workload(c: &Ctx, tenant: &str, token: &str, n: usize) -> (Arc<AtomicUsize>, Workload) {
    let done = Arc::new(AtomicUsize::new(0));
    let (addr, tenant, token, tag) = (
        c.cluster.addr("gateway"),
        tenant.to_string(),
        token.to_string(),
        c.tag,
    );
    let counter = done.clone();
    let worker = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let mut slowest = Duration::ZERO;
        for i in 0..n {
            let t = Instant::now();
            let email = format!("u{i}@faults.example");
            statuses.push(create_user(
                &addr,
                &tenant,
                &token,
                &email,
                &format!("f{tag}-{i}"),
            )?);
            slowest = slowest.max(t.elapsed());
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok((statuses, slowest))
    });
    (done, worker)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<bool> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

fn notification_kill(c: &mut Ctx) -> Result<Report> {
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

fn gateway_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 500 };
    let (t, owner) = tenant(c, "idempotent")?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a third of the POSTs did not finish", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    c.cluster.kill("gateway")?;
    let killed = Instant::now();
    c.cluster.restart("gateway")?;
    let (statuses, slowest) = worker.join().expect("the workload thread")?;
    let recovery = killed.elapsed();
    let emails = users(c, &t, &owner)?;
    let mut distinct = emails.clone();
    distinct.sort();
    distinct.dedup();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    Ok(Report {
        workload: format!("{n} POST /users, each with its own Idempotency-Key"),
        recovery,
        lost: (n as i64 - distinct.len() as i64).max(0) as u64,
        duplicated: (emails.len() - distinct.len()) as u64,
        detail: format!(
            "{} users; {conflicts} answered 409 after the restart (created before the kill, \
             its response lost with the gateway); slowest POST {:.1} s (a claim left by the \
             killed gateway lapses after 120 s)",
            emails.len(),
            slowest.as_secs_f64()
        ),
        ok: true,
    })
}

/// Posts `body` to `path` until it is answered 200 (a refused connection, a 5xx or a 429 is
/// tried again, as a client would); the answer.
fn post_until_ok(addr: &str, path: &str, token: &str, body: &str) -> Result<Value> {
    let started = Instant::now();
    loop {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{path}: no answer in 300 s");
        }
        match request(addr, "POST", path, token, &[], body) {
            Ok((200, b)) => return Ok(json_of(&b)),
            Ok((s, _)) if s == 429 || s >= 500 => {}
            Ok((s, b)) => bail!("{path}: {s} {b}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn subscription_kill(c: &mut Ctx) -> Result<Report> {
    let (records, batch) = if c.short {
        (5_000, 250)
    } else {
        (100_000, 1_000)
    };
    let gw = c.cluster.addr("gateway");
    let operator = operator()?;
    let (t, _) = tenant(c, "metered")?;
    subscribe(
        c,
        &t,
        json!({
            "id": "faults-metered", "name": "Metered", "currency": "EUR", "interval": "month",
            "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                        "model": {"type": "per_unit", "unit_amount": "0.01"}}],
        }),
    )?;
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
                let v = post_until_ok(&gw, "/v1/usage", &operator, &body)?;
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

fn user_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let gw = c.cluster.addr("gateway");
    let (t, owner) = tenant(c, "seated")?;
    subscribe(
        c,
        &t,
        json!({
            "id": "faults-seats", "name": "Seats", "currency": "EUR", "interval": "month",
            "prices": [{"id": "seat", "kind": "seat", "model": {"type": "per_unit", "unit_amount": "1000"}}],
        }),
    )?;
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
