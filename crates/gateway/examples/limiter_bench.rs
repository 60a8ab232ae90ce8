//! The in-process per-caller limit, A/B: the gateway's own GCRA (`LocalGcra`, a mutex over a
//! hash map; it still serves the failed-authentication throttle) against `CallerLimits`, the
//! per-caller limit as the gateway runs it: the `governor` crate's keyed limiter (a `DashMap`
//! of atomic GCRA states, with the middleware that reports the remaining capacity the
//! `RateLimit-*` headers need), its answer turned into the same `Decision`.
//!
//! Both do what the gateway does per request: build the caller's key, spend one token, read
//! the decision. Threads hammer a shared limiter over a set of callers; the two take turns,
//! alternating, and each turn reports nanoseconds per check. Driven by
//! `cargo xtask bench limiter [-- --threads 2 --callers 1000 --checks 2000000 --turns 5]`.

use std::sync::Arc;
use std::time::Instant;

use gateway::http::gcra::LocalGcra;
use gateway::http::ratelimit::{CallerLimits, Quota};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `check(thread, i)` `checks` times spread over `threads`; returns ns per check and how
/// many were allowed (so the work cannot be optimised away, and both sides can be compared).
fn run(
    threads: usize,
    checks: usize,
    check: Arc<dyn Fn(usize) -> bool + Send + Sync>,
) -> (f64, usize) {
    let per = checks / threads;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let check = check.clone();
            std::thread::spawn(move || (0..per).filter(|i| check(t * per + i)).count())
        })
        .collect();
    let allowed = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (
        started.elapsed().as_nanos() as f64 / (per * threads) as f64,
        allowed,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads = arg("--threads", 2);
    let callers = arg("--callers", 1000);
    let checks = arg("--checks", 2_000_000);
    let turns = arg("--turns", 5);
    // The gateway's default per-caller budget (RATE_LIMIT_CALLER_*): generous enough that
    // most checks are allowed, as in normal traffic.
    let quota = Quota {
        per_sec: 50,
        burst: 100,
    };
    let names: Arc<Vec<(String, String)>> = Arc::new(
        (0..callers)
            .map(|i| (format!("ten_{i:032x}"), format!("usr_{i:032x}")))
            .collect(),
    );
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut allowed = (0, 0);
    for _ in 0..turns {
        let local = Arc::new(LocalGcra::default());
        let n = names.clone();
        let (ns, ok) = run(
            threads,
            checks,
            Arc::new(move |i| {
                let (t, s) = &n[i % n.len()];
                let key = format!("{t}:{s}");
                local.check(&key, quota, Instant::now()).allowed
            }),
        );
        ours.push(ns);
        allowed.0 = ok;

        let gov = Arc::new(CallerLimits::new(quota));
        let n = names.clone();
        let (ns, ok) = run(
            threads,
            checks,
            Arc::new(move |i| {
                let (t, s) = &n[i % n.len()];
                let key = format!("{t}:{s}");
                gov.check(&key).allowed
            }),
        );
        theirs.push(ns);
        allowed.1 = ok;
    }
    println!(
        "{threads} threads, {callers} callers, {checks} checks per turn, {turns} turns (alternating)\n"
    );
    println!("| limiter | ns per check (median) | best | allowed in the last turn |");
    println!("| --- | --- | --- | --- |");
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "| LocalGcra (ours: Mutex<HashMap>) | {:.0} | {:.0} | {} |",
        median(ours.clone()),
        best(&ours),
        allowed.0
    );
    println!(
        "| CallerLimits (governor 0.10 keyed: DashMap, StateInformationMiddleware) | {:.0} | {:.0} | {} |",
        median(theirs.clone()),
        best(&theirs),
        allowed.1
    );
    println!(
        "\ngovernor / ours: {:.2}x (medians)",
        median(theirs) / median(ours)
    );
}
