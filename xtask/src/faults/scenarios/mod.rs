//! The scenarios: each drives a workload through the gateway, injects its fault from the
//! outside, restarts what it killed, waits for quiescence and reconciles from the outside —
//! through the API, and from a service's database where the API does not show it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{Ctx, Report};
use crate::client::request;

mod billing;
mod edge;
mod flows;
mod infra;
mod payments;
mod replicas;

use billing::{billing_kill, invoicing_kill, postgres_billing, replicas_billing_kill};
use edge::{gateway_kill, user_stall};
use flows::{notification_kill, subscription_kill, user_kill};
use infra::{nats_node_kill, nats_restart, postgres_restart, redis_down};
use payments::{payment_kill, replicas_dunning};
pub use replicas::{REPLICAS, extra_env};
use replicas::{replicas_caches, replicas_clocks, replicas_events, replicas_rate_limit};

/// Scenarios whose stack uses the three-node NATS cluster instead of the single server.
pub const ON_NATS_CLUSTER: &[&str] = &["nats-node-kill"];

/// Whether scenario `name` runs on [`REPLICAS`] replicas of every service.
pub fn replicated(name: &str) -> bool {
    name.starts_with("replicas-")
}

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
    (
        "billing-kill",
        "kill -9 of the billing service mid-run; the run completes once, invoices follow once",
        billing_kill,
    ),
    (
        "invoicing-kill",
        "kill -9 of the invoicing service while it turns a run into invoices",
        invoicing_kill,
    ),
    (
        "payment-kill",
        "kill -9 of the payment service while it charges invoices: each paid, none charged twice",
        payment_kill,
    ),
    (
        "user-stall",
        "the user service frozen (SIGSTOP) under reads: 504 problems at the deadline, then served",
        user_stall,
    ),
    (
        "nats-restart",
        "NATS killed while users are created, restarted after a while: seats and webhooks once",
        nats_restart,
    ),
    (
        "nats-node-kill",
        "one node of a three-node NATS cluster killed while users are created: seats and webhooks once",
        nats_node_kill,
    ),
    (
        "postgres-restart",
        "Postgres crashed and restarted under usage ingestion: clear errors, every record once",
        postgres_restart,
    ),
    (
        "postgres-billing",
        "Postgres crashed and restarted mid-run: the run runs again by itself, bills once",
        postgres_billing,
    ),
    (
        "redis-down",
        "Redis killed under POSTs with Idempotency-Key and reads: reads served, users once",
        redis_down,
    ),
    (
        "replicas-events",
        "two of every service; users through both gateways, one replica of three services killed: seats and webhooks once",
        replicas_events,
    ),
    (
        "replicas-clocks",
        "two of every service: trials end, periods roll, billing windows and webhook retries each once",
        replicas_clocks,
    ),
    (
        "replicas-billing-kill",
        "two billing replicas share a run's shards; one killed mid-shard: the other finishes it, bills once",
        replicas_billing_kill,
    ),
    (
        "replicas-dunning",
        "two payment replicas' clocks while cards decline: each dunning retry made once, each schedule exhausted once",
        replicas_dunning,
    ),
    (
        "replicas-caches",
        "two of every service: a rename, a key revocation, a suspension through one gateway hold on both",
        replicas_caches,
    ),
    (
        "replicas-rate-limit",
        "two gateways share one tenant's rate limit: within the budget plus leases, at least 70 % of it",
        replicas_rate_limit,
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

/// Creates `plan` (its `id` is in it).
fn create_plan(c: &Ctx, plan: &Value) -> Result<()> {
    let (gw, operator) = (c.cluster.addr("gateway"), operator()?);
    post_until(&gw, "/v1/plans", &operator, &plan.to_string(), 201)?;
    Ok(())
}

/// Subscribes `tenant` to plan `plan_id`.
fn subscribe(c: &Ctx, tenant: &str, plan_id: &str) -> Result<()> {
    let (gw, operator) = (c.cluster.addr("gateway"), operator()?);
    let sub = json!({ "plan_id": plan_id }).to_string();
    let path = format!("/v1/tenants/{tenant}/subscription");
    post_until(&gw, &path, &operator, &sub, 201)?;
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
    let created = post_until(
        &c.cluster.addr("gateway"),
        "/v1/tenants",
        &operator,
        &body,
        201,
    )?;
    let id = created["id"].as_str().context("tenant id")?.to_string();
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

/// Creates `n` users of `tenant` from a thread, through every gateway replica in turn;
/// `done` counts the finished ones.
fn user_workload(c: &Ctx, tenant: &str, token: &str, n: usize) -> (Arc<AtomicUsize>, Workload) {
    let done = Arc::new(AtomicUsize::new(0));
    let (gateways, tenant, token, tag) = (
        c.cluster.addrs("gateway"),
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
                &gateways[i % gateways.len()],
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

/// Posts `body` to `path` until it is answered `want` (a refused connection, a 5xx or a 429
/// is tried again, as a client would); the answer.
fn post_until(addr: &str, path: &str, token: &str, body: &str, want: u16) -> Result<Value> {
    post_counting(addr, path, token, body, want, &mut Retried::new())
}

/// The answers a workload retried: status (0: no answer) → how many.
type Retried = std::collections::BTreeMap<u16, u32>;

/// [`post_until`], counting the answers it retried in `retried`.
fn post_counting(
    addr: &str,
    path: &str,
    token: &str,
    body: &str,
    want: u16,
    retried: &mut Retried,
) -> Result<Value> {
    let started = Instant::now();
    loop {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{path}: no answer in 300 s");
        }
        let status = match request(addr, "POST", path, token, &[], body) {
            Ok((s, b)) if s == want => return Ok(json_of(&b)),
            Ok((s, _)) if s == 429 || s >= 500 => s,
            Ok((s, b)) => bail!("{path}: {s} {b}"),
            Err(_) => 0,
        };
        *retried.entry(status).or_default() += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `503×4, no answer×2`.
fn describe_retried(retried: &Retried) -> String {
    if retried.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = retried
        .iter()
        .map(|(s, n)| match s {
            0 => format!("no answer×{n}"),
            s => format!("{s}×{n}"),
        })
        .collect();
    parts.join(", ")
}
