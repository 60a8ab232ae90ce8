//! `billing-service run --synthetic N [--workers W] [--batch B] [--tenants T] [--deadline-secs D]`:
//! streams N generated records through the run pipeline without a database (the memory sink)
//! and, in the same process, folds the same records in a plain single-threaded loop; prints
//! both throughputs and checks the totals agree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concurrency::{
    DEFAULT_RUN_DEADLINE, Limiter, LimiterConfig, ThroughputTracker, batch_channel, with_deadline,
};

use crate::domain::aggregate::{Batch, Names, fold, named};
use crate::pipeline::{self, MemorySink};

fn opt(args: &[String], name: &str) -> Option<u64> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// Runs the synthetic mode; the process exit code.
pub async fn synthetic(args: &[String]) -> std::process::ExitCode {
    let Some(n) = opt(args, "--synthetic") else {
        eprintln!(
            "usage: billing-service run --synthetic N [--workers W] [--batch B] [--tenants T] [--deadline-secs D]"
        );
        return std::process::ExitCode::from(2);
    };
    let workers = opt(args, "--workers").unwrap_or(4).max(1) as usize;
    let batch = opt(args, "--batch").unwrap_or(4096) as usize;
    let tenants = opt(args, "--tenants").unwrap_or(100) as u32;
    let deadline = opt(args, "--deadline-secs").map_or(DEFAULT_RUN_DEADLINE, Duration::from_secs);

    let records: Vec<_> = pipeline::synthetic(n, tenants).collect();
    let started = Instant::now();
    let plain = fold(&records);
    let plain_secs = started.elapsed().as_secs_f64();
    // The pipeline's own fold (ids interned, integer keys) in one thread, without the channel.
    let started = Instant::now();
    let names = std::sync::Mutex::new(Names::default());
    let interned = named(
        records.fold_keys(&names),
        &names.into_inner().unwrap_or_default(),
    );
    let interned_secs = started.elapsed().as_secs_f64();

    let limiter = Limiter::new(LimiterConfig {
        max_workers: workers,
        max_db_jobs: workers,
    })
    .expect("workers is at least 1");
    let sink = Arc::new(MemorySink::default());
    let progress = Arc::new(ThroughputTracker::new());
    let started = Instant::now();
    let (mut tx, rx) = batch_channel(workers * 2, batch);
    let producer = tokio::spawn(async move {
        for r in records {
            if tx.push(r).await.is_err() {
                return;
            }
        }
        let _ = tx.finish().await;
    });
    let outcome = with_deadline(
        deadline,
        pipeline::run(rx.into_inner(), &limiter, sink.clone(), progress.clone()),
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    producer.abort();
    let processed = match outcome {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            eprintln!("run failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e}: {} records processed before it", progress.total());
            return std::process::ExitCode::FAILURE;
        }
    };
    // The two ways must agree exactly.
    let totals = sink.totals();
    let plain_keys: usize = plain.iter().map(|t| t.users.len()).sum();
    let agree = plain_keys == totals.len()
        && plain.iter().all(|t| {
            t.users.iter().all(|((u, m), v)| {
                totals.get(&(t.tenant_id.clone(), u.clone(), m.clone())) == Some(v)
            })
        });
    println!("| mode | records | seconds | records/s |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| plain single-threaded fold | {n} | {plain_secs:.3} | {:.0} |",
        n as f64 / plain_secs
    );
    println!(
        "| plain single-threaded fold with interned keys (the pipeline's fold, no channel) | {n} | {interned_secs:.3} | {:.0} |",
        n as f64 / interned_secs
    );
    println!(
        "| pipeline ({workers} workers, batches of {batch}) | {processed} | {secs:.3} | {:.0} |",
        processed as f64 / secs
    );
    let agree = agree && interned == plain;
    println!(
        "pipeline / plain: {:.2}x the time (/ interned plain: {:.2}x); totals agree: {agree}",
        secs / plain_secs,
        secs / interned_secs
    );
    // The line `cargo xtask bench all` builds its summary from.
    println!(
        "BENCH-HEADLINE {}",
        serde_json::json!({
            "bench": "billing",
            "what": format!("synthetic billing run over {n} records ({workers} workers)"),
            "value": format!("{secs:.3} s ({:.2}×)", secs / plain_secs),
            "baseline": format!("plain single-threaded fold {plain_secs:.3} s"),
            "target": "≤ 3× the plain fold",
            "met": agree && secs <= 3.0 * plain_secs,
        })
    );
    if agree {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
