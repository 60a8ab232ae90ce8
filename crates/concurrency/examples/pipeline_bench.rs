//! 1,000,000 synthetic usage records folded into per-(tenant, user, metric) totals, two ways
//! in one process: a plain single-threaded loop, and the bounded batched pipeline (producer →
//! `batch_channel` → `Limiter::spawn` workers → merge). Both totals must agree.
//!
//! cargo xtask bench pipeline -- --records 1000000 --workers 2 --batch 4096

use std::collections::HashMap;
use std::time::Instant;

use concurrency::{Limiter, LimiterConfig, batch_channel};

#[derive(Clone, Copy)]
struct Record {
    tenant: u32,
    user: u32,
    metric: u8,
    quantity: u64,
}

type Key = (u32, u32, u8);

/// Deterministic records (xorshift64*), no dependency on a random crate.
fn records(n: usize) -> Vec<Record> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let tenant = (r % 100) as u32;
            Record {
                tenant,
                user: tenant * 1000 + ((r >> 8) % 200) as u32,
                metric: ((r >> 20) % 4) as u8,
                quantity: 1 + (r >> 32) % 100,
            }
        })
        .collect()
}

fn fold(acc: &mut HashMap<Key, u64>, batch: &[Record]) {
    for r in batch {
        *acc.entry((r.tenant, r.user, r.metric)).or_default() += r.quantity;
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a whole number"))
        })
        .unwrap_or(default)
}

async fn pipeline(data: &[Record], workers: usize, batch: usize) -> HashMap<Key, u64> {
    let limiter = Limiter::new(LimiterConfig {
        max_workers: workers,
        max_db_jobs: 1,
    })
    .expect("workers >= 1");
    let (mut tx, mut rx) = batch_channel::<Record>(workers * 2, batch);
    let owned: Vec<Record> = data.to_vec();
    let producer = tokio::spawn(async move {
        for r in owned {
            if tx.push(r).await.is_err() {
                break;
            }
        }
        let _ = tx.finish().await;
    });
    // One task per batch through the limiter; each returns its partial map.
    let mut partials = Vec::new();
    while let Some(b) = rx.recv().await {
        partials.push(
            limiter
                .spawn(async move {
                    let mut m = HashMap::with_capacity(1024);
                    fold(&mut m, &b);
                    m
                })
                .await,
        );
    }
    producer.await.expect("producer");
    let mut total: HashMap<Key, u64> = HashMap::new();
    for p in partials {
        for (k, v) in p.await.expect("worker") {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--records", 1_000_000);
    let batch = arg(&args, "--batch", 4096);
    let worker_counts: Vec<usize> = match args.iter().position(|a| a == "--workers") {
        Some(i) => args[i + 1..]
            .iter()
            .take_while(|a| !a.starts_with("--"))
            .map(|w| w.parse().expect("--workers takes whole numbers"))
            .collect(),
        None => vec![1, 2, 4],
    };
    let data = records(n);

    let t = Instant::now();
    let mut plain = HashMap::new();
    fold(&mut plain, &data);
    let plain_time = t.elapsed();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "| records | workers | batch | plain loop | plain rec/s | pipeline | pipeline rec/s | pipeline / plain |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut best: Option<(usize, f64)> = None;
    for workers in worker_counts {
        let t = Instant::now();
        let piped = rt.block_on(pipeline(&data, workers, batch));
        let piped_time = t.elapsed();
        if piped != plain {
            eprintln!("MISMATCH: the pipeline's totals differ from the plain loop's");
            std::process::exit(1);
        }
        println!(
            "| {n} | {workers} | {batch} | {:.1} ms | {:.0} | {:.1} ms | {:.0} | {:.2}x |",
            plain_time.as_secs_f64() * 1e3,
            n as f64 / plain_time.as_secs_f64(),
            piped_time.as_secs_f64() * 1e3,
            n as f64 / piped_time.as_secs_f64(),
            piped_time.as_secs_f64() / plain_time.as_secs_f64(),
        );
        let ratio = piped_time.as_secs_f64() / plain_time.as_secs_f64();
        if best.is_none_or(|(_, r)| ratio < r) {
            best = Some((workers, ratio));
        }
    }
    // The line `cargo xtask bench all` builds its summary from.
    if let Some((workers, ratio)) = best {
        println!(
            "BENCH-HEADLINE {{\"bench\":\"pipeline\",\"what\":\"bounded pipeline folding {n} records, best of the worker counts ({workers})\",\"value\":\"{:.1} ms\",\"baseline\":\"plain loop {:.1} ms ({ratio:.2}×)\",\"target\":\"≤ 3× the plain loop\",\"met\":{}}}",
            plain_time.as_secs_f64() * 1e3 * ratio,
            plain_time.as_secs_f64() * 1e3,
            ratio <= 3.0
        );
    }
}
