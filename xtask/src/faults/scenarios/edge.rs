//! Faults at the edge: the gateway itself killed; a service behind it frozen.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::{Ctx, Report};
use super::{before_fault, tenant, user_workload, users, wait_until};
use crate::client::request;

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
             killed gateway lapses after 10 s)",
            emails.len(),
            slowest.as_secs_f64()
        ),
        ok: true,
    })
}

/// The user service frozen (SIGSTOP: its sockets open, nothing answering — what a partition
/// or a long pause looks like to its callers) under concurrent reads: the gateway's gRPC
/// deadline (`GRPC_TIMEOUT_MS`, 5 s) answers each with a 504 problem, none hangs, and once
/// the service thaws it is answered again.
pub fn user_stall(c: &mut Ctx) -> Result<Report> {
    let k = if c.short { 10 } else { 50 };
    let (t, owner) = tenant(c, "stalled")?;
    let gw = c.cluster.addr("gateway");
    let path = format!("/v1/tenants/{t}/users?limit=1");
    c.cluster.signal_stop("user", true)?;
    let frozen = Instant::now();
    let readers: Vec<_> = (0..k)
        .map(|_| {
            let (gw, path, owner) = (gw.clone(), path.clone(), owner.clone());
            std::thread::spawn(move || {
                let t = Instant::now();
                let answer = request(&gw, "GET", &path, &owner, &[], "");
                (answer.ok(), t.elapsed())
            })
        })
        .collect();
    let answers: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("a reader thread"))
        .collect();
    let frozen_for = frozen.elapsed();
    c.cluster.signal_stop("user", false)?;
    let thawed = Instant::now();
    let back = wait_until(Duration::from_secs(30), || {
        Ok(matches!(
            request(&gw, "GET", &path, &owner, &[], ""),
            Ok((200, _))
        ))
    })?;
    let recovery = thawed.elapsed();
    let timed_out = answers
        .iter()
        .filter(|(a, _)| {
            a.as_ref()
                .is_some_and(|(s, b)| *s == 504 && b.contains("\"status\":504"))
        })
        .count();
    let slowest = answers.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let others: Vec<String> = answers
        .iter()
        .filter_map(|(a, _)| match a {
            Some((504, _)) => None,
            Some((s, _)) => Some(s.to_string()),
            None => Some("no answer".into()),
        })
        .collect();
    Ok(Report {
        workload: format!("{k} concurrent reads while the user service is frozen"),
        recovery,
        // A read that hung or got anything but its 504 problem was not answered as it should.
        lost: (k - timed_out) as u64,
        duplicated: 0,
        detail: format!(
            "{timed_out} answered 504 problem{}; slowest {:.1} s; frozen {:.1} s; answered \
             again after SIGCONT{}",
            if others.is_empty() {
                String::new()
            } else {
                format!(" (others: {})", others.join(", "))
            },
            slowest.as_secs_f64(),
            frozen_for.as_secs_f64(),
            if back { "" } else { ": NOT in 30 s" }
        ),
        ok: back,
    })
}
