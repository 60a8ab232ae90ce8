//! `cargo xtask load soak [--minutes N] [RATE=R]`: the mixed scenario for N minutes (default
//! 10) at R sessions/s (default about half its measured peak, BENCHMARKS.md), with nobody
//! scraping `/metrics` — memory held until a scrape is a leak all the same. Every 10 s it
//! samples each service's resident memory and open sockets into `soak.csv`. It fails when a
//! k6 threshold fails (any failed request among them) or when a service's resident memory
//! grew more than 10 % from the minute after the warm-up (a fifth of the run, at most 2
//! minutes) to the last minute (means of the samples in each).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Target, figures};
use crate::cluster::SERVICES;

/// Sessions per second: about half the mixed scenario's measured peak on the reference
/// machine (BENCHMARKS.md, "Load").
const DEFAULT_RATE: &str = "30";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const MAX_GROWTH: f64 = 0.10;

struct Sample {
    at: Duration,
    service: &'static str,
    rss_kb: u64,
    sockets: usize,
}

/// VmRSS of a process, in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open sockets of a process (its file descriptors that are sockets).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// Mean resident memory of `samples`, in kB; `None` when there are none.
fn mean_rss(samples: &[&Sample]) -> Option<f64> {
    (!samples.is_empty())
        .then(|| samples.iter().map(|x| x.rss_kb as f64).sum::<f64>() / samples.len() as f64)
}

pub fn run(t: &Target, minutes: u64) -> Result<(bool, String)> {
    let mut env = vec![format!("DURATION={minutes}m")];
    if !t.env.iter().any(|kv| kv.starts_with("RATE=")) {
        env.push(format!("RATE={DEFAULT_RATE}"));
    }
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let (ok, summary) = std::thread::scope(|s| -> Result<(bool, serde_json::Value)> {
        // Samples now and every SAMPLE_EVERY until k6 is done (its thread says so).
        let (done, finished) = std::sync::mpsc::channel();
        let env = &env;
        let k6 = s.spawn(move || {
            let r = t.k6("soak", "mixed.js", env);
            let _ = done.send(());
            r
        });
        loop {
            for (_, short) in SERVICES {
                let pid = t.cluster.pid(short).context("a service is not running")?;
                samples.push(Sample {
                    at: started.elapsed(),
                    service: short,
                    rss_kb: rss_kb(pid).with_context(|| format!("{short} has exited"))?,
                    sockets: sockets(pid),
                });
            }
            if !matches!(
                finished.recv_timeout(SAMPLE_EVERY),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            ) {
                break;
            }
        }
        k6.join().expect("the k6 thread")
    })?;

    let mut csv = String::from("seconds,service,rss_kb,sockets\n");
    for x in &samples {
        writeln!(
            csv,
            "{},{},{},{}",
            x.at.as_secs(),
            x.service,
            x.rss_kb,
            x.sockets
        )?;
    }
    std::fs::write(t.dir.join("soak.csv"), csv)?;

    let warm_up = Duration::from_secs((minutes * 60 / 5).min(120));
    let mut grew = Vec::new();
    let mut memory = Vec::new();
    for (_, short) in SERVICES {
        let mine: Vec<&Sample> = samples.iter().filter(|x| x.service == *short).collect();
        // A minute's mean on each side: allocators breathe from one sample to the next.
        let after: Vec<&Sample> = mine.iter().copied().filter(|x| x.at >= warm_up).collect();
        let window = (60 / SAMPLE_EVERY.as_secs() as usize).min(after.len() / 2);
        let (Some(base), Some(end)) = (
            mean_rss(&after[..window]),
            mean_rss(&after[after.len() - window..]),
        ) else {
            continue;
        };
        let sockets = after.last().map_or(0, |x| x.sockets);
        let growth = end / base - 1.0;
        memory.push(format!(
            "{short} {:.1}→{:.1} MB ({:+.1} %, {sockets} sockets)",
            base / 1024.0,
            end / 1024.0,
            growth * 100.0,
        ));
        if growth > MAX_GROWTH {
            grew.push(*short);
        }
    }
    let verdict = format!(
        "soak: mixed for {minutes} min — {}; resident memory after warm-up: {}{}",
        figures("mixed", &summary),
        memory.join(", "),
        if grew.is_empty() {
            String::new()
        } else {
            format!("; GREW more than 10 %: {}", grew.join(", "))
        }
    );
    Ok((ok && grew.is_empty(), verdict))
}
