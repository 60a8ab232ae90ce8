//! Faults at the edge: the gateway itself.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;

use super::super::{Ctx, Report};
use super::{before_fault, tenant, user_workload, users};

pub fn gateway_kill(c: &mut Ctx) -> Result<Report> {
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
