//! Faults of what the services stand on: NATS, Postgres and Redis crash and come back on
//! their ports with their data (Redis without: it keeps none).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::{Ctx, Report};
use super::flows::{Seated, Webhooks, ingestion, seated_tenant, user_webhooks};
use super::{before_fault, user_workload, wait_until};
use crate::client::request;

/// NATS killed while users are created (`user.created` feeds the subscription's seats and the
/// tenant's webhooks) and kept down while the workload goes on, then started again: the
/// events wait in the outboxes, the relays resume, the consumers take each once.
pub fn nats_restart(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let (t, owner) = seated_tenant(c, "evented")?;
    let rx = user_webhooks(c, &t, &owner)?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a third of the users were not created", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    c.infra.crash("nats")?;
    let killed = Instant::now();
    // Down for 3 s at least, while another sixth of the users is created (their events
    // pile up unsent).
    let during = wait_until(Duration::from_secs(60), || {
        Ok(killed.elapsed() >= Duration::from_secs(3)
            && (done.load(Ordering::Relaxed) >= n / 2 || worker.is_finished()))
    })?;
    let down_for = killed.elapsed();
    c.infra.restart("nats")?;
    worker.join().expect("the workload thread")?;
    let seated = Seated::read(c, &t, &owner, n, Duration::from_secs(120))?;
    let hooks = Webhooks::read(c, &rx, n, Duration::from_secs(180))?;
    Ok(Report {
        workload: format!("{n} users created → seats and webhooks"),
        recovery: killed.elapsed(),
        lost: seated.lost(n) + hooks.lost(n),
        duplicated: seated.duplicated(n) + hooks.duplicated(n),
        detail: format!(
            "NATS down {:.1} s{}; {}; {}",
            down_for.as_secs_f64(),
            if during {
                ""
            } else {
                " (the workload stalled)"
            },
            seated.describe(),
            hooks.describe()
        ),
        ok: seated.settled && hooks.settled,
    })
}

/// One node of a three-node NATS cluster (streams at R3) killed while users are created, and
/// left down while the workload goes on: the other two keep the quorum, the services'
/// connections move to them, every event is handled once. The node comes back at the end.
pub fn nats_node_kill(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 1000 };
    let (t, owner) = seated_tenant(c, "clustered")?;
    let rx = user_webhooks(c, &t, &owner)?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    let worker = before_fault(worker, "a third of the users were not created", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    c.infra.crash(NODE)?;
    let killed = Instant::now();
    worker.join().expect("the workload thread")?;
    let created_down = done.load(Ordering::Relaxed) - n / 3;
    let seated = Seated::read(c, &t, &owner, n, Duration::from_secs(120))?;
    let hooks = Webhooks::read(c, &rx, n, Duration::from_secs(180))?;
    let recovery = killed.elapsed();
    // It rejoins: the cluster is whole again (JetStream current on every node).
    c.infra.restart(NODE)?;
    c.infra.wait_nats_cluster_healthy()?;
    Ok(Report {
        workload: format!("{n} users created → seats and webhooks"),
        recovery,
        lost: seated.lost(n) + hooks.lost(n),
        duplicated: seated.duplicated(n) + hooks.duplicated(n),
        detail: format!(
            "{NODE} of 3 down from user ~{} on ({created_down}+ created meanwhile); {}; {}",
            n / 3,
            seated.describe(),
            hooks.describe()
        ),
        ok: seated.settled && hooks.settled,
    })
}

/// The node `nats_node_kill` kills.
const NODE: &str = crate::infra::NATS_NODES[1];

/// Postgres (every service's database) crashes — immediate shutdown, crash recovery at the
/// restart — under usage ingestion: clients see clear errors while it is away, and once it
/// is back every record is counted once, with nobody restarting a service.
pub fn postgres_restart(c: &mut Ctx) -> Result<Report> {
    ingestion(c, |c| {
        c.infra.crash("postgres")?;
        let crashed = Instant::now();
        c.infra.restart("postgres")?;
        Ok(crashed)
    })
}

/// Redis killed while users are created with `Idempotency-Key` and read: reads keep being
/// served (rate limits fall back to the gateway's local ones), POSTs with a key are refused
/// with 503 as documented until Redis is back, then each user exists once.
pub fn redis_down(c: &mut Ctx) -> Result<Report> {
    let n = if c.short { 100 } else { 500 };
    let gw = c.cluster.addr("gateway");
    let (t, owner) = seated_tenant(c, "cached")?;
    let (done, worker) = user_workload(c, &t, &owner, n);
    // A reader of its own (its own rate limit), counting what was not served while Redis
    // was down.
    let reader = crate::token::mint(&t, "reader", &["owner"], 3600)?;
    let (down, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reads = {
        let (gw, t, down, stop, served, refused) = (
            gw.clone(),
            t.clone(),
            down.clone(),
            stop.clone(),
            served.clone(),
            refused.clone(),
        );
        std::thread::spawn(move || {
            let path = format!("/v1/tenants/{t}/users?limit=1");
            while !stop.load(Ordering::Relaxed) {
                let ok = matches!(
                    request(&gw, "GET", &path, &reader, &[], ""),
                    Ok((200 | 429, _))
                );
                if down.load(Ordering::Relaxed) {
                    let n = if ok { &served } else { &refused };
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let worker = before_fault(worker, "a third of the users were not created", || {
        done.load(Ordering::Relaxed) >= n / 3
    })?;
    c.infra.crash("redis")?;
    let killed = Instant::now();
    down.store(true, Ordering::Relaxed);
    let at_kill = done.load(Ordering::Relaxed);
    // Down while the reader makes 100 reads.
    wait_until(Duration::from_secs(60), || {
        Ok(served.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) >= 100)
    })?;
    let created_while_down = done.load(Ordering::Relaxed) - at_kill;
    down.store(false, Ordering::Relaxed);
    let down_for = killed.elapsed();
    c.infra.restart("redis")?;
    let (statuses, _) = worker.join().expect("the workload thread")?;
    stop.store(true, Ordering::Relaxed);
    reads.join().expect("the reader thread");
    let seated = Seated::read(c, &t, &owner, n, Duration::from_secs(90))?;
    let refused = refused.load(Ordering::Relaxed);
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    Ok(Report {
        workload: format!("{n} POST /users with Idempotency-Key, reads beside them"),
        recovery: killed.elapsed(),
        lost: seated.lost(n) + refused as u64,
        duplicated: seated.duplicated(n),
        detail: format!(
            "Redis down {:.1} s: {} reads served, {refused} not; {created_while_down} users \
             created meanwhile (POSTs with a key answer 503 without Redis); {conflicts} answered \
             409 after (created before the kill, their records gone with Redis); {}",
            down_for.as_secs_f64(),
            served.load(Ordering::Relaxed),
            seated.describe()
        ),
        ok: seated.settled,
    })
}
