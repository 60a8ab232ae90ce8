//! A small closed-loop load generator: N concurrent workers send requests back to back;
//! prints throughput, latency percentiles and the machine's CPU per request as one Markdown
//! row.
//!
//! - `loadgen http URL [--header 'K: V'] [--connections 64] [--seconds 10]`: GET, one
//!   keep-alive connection per worker (like wrk).
//! - `loadgen grpc-get-tenant URL TENANT_ID [opts]`: UserService.GetTenant.
//! - `loadgen grpc-entitlement URL TENANT_ID FEATURE [opts]`: SubscriptionService.CheckEntitlement.
//! - `loadgen ingest URL TENANT_ID --records N --batch B [--header ..] [--connections C]`:
//!   `POST /v1/usage` with fresh record ids until N records are sent; reports records/s.
//! - `loadgen grpc-ingest URL TENANT_ID --records N --batch B [--connections C]`: the same
//!   batches straight to SubscriptionService.IngestUsage.
//! - `loadgen cpu`: the machine's busy CPU seconds so far, for timing something else alike.
//!
//! gRPC workers share one HTTP/2 channel (`platform::grpc::Channel`), as gateways and
//! services do. Driven by
//! `cargo xtask bench gateway` and `cargo xtask bench metering`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc::subscription::v1 as sub;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use rpc::user::v1::GetTenantRequest;
use rpc::user::v1::user_service_client::UserServiceClient;

struct Opts {
    connections: usize,
    seconds: u64,
    headers: Vec<(String, String)>,
    label: String,
    records: usize,
    batch: usize,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        connections: 64,
        seconds: 10,
        headers: Vec::new(),
        label: String::new(),
        records: 100_000,
        batch: 1000,
    };
    let mut i = 0;
    while i < args.len() {
        let val = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
        };
        let num = |v: String| -> usize { v.parse().expect("a number") };
        match args[i].as_str() {
            "--connections" => o.connections = num(val()),
            "--seconds" => o.seconds = num(val()) as u64,
            "--records" => o.records = num(val()),
            "--batch" => o.batch = num(val()).max(1),
            "--label" => o.label = val(),
            "--header" => {
                let h = val();
                let (k, v) = h.split_once(':').expect("--header 'Name: value'");
                o.headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// Latencies in microseconds plus the error count of one worker.
#[derive(Default)]
struct Sample {
    micros: Vec<u64>,
    errors: u64,
}

/// CPU seconds the whole machine has spent busy since boot (all processes, user and system;
/// not idle, I/O wait or steal), from `/proc/stat`; 0 where there is none. Throughput on a
/// shared two-core machine moves by a third between runs; the CPU a run costs per request
/// moves far less, so it is what tells one change from another.
fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …; USER_HZ is 100 on Linux.
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

/// What a run measured: each worker's samples, the wall time, the machine's busy CPU seconds.
struct Run {
    samples: Vec<Sample>,
    elapsed: Duration,
    cpu: f64,
}

/// Runs `connections` workers; each repeatedly asks `step` for its next request (None = done)
/// and times it. `init` makes a worker's client.
async fn drive<C, I, F, Fut>(connections: usize, init: I, step: F) -> Run
where
    C: Clone + Send + 'static,
    I: Fn() -> C,
    F: Fn(C) -> Option<Fut> + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let step = Arc::new(step);
    let cpu = machine_cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = init();
        let step = step.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while let Some(call) = step(client.clone()) {
                let t = Instant::now();
                if call.await {
                    s.micros.push(t.elapsed().as_micros() as u64);
                } else {
                    s.errors += 1;
                }
            }
            s
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.push(t.await.expect("worker"));
    }
    Run {
        samples,
        elapsed: start.elapsed(),
        cpu: machine_cpu_seconds() - cpu,
    }
}

/// `| label | connections | per second | p50 | p99 | p99.9 | errors | machine CPU µs |`, per
/// second and CPU counted in `unit`s per request (1 for requests, the batch size for
/// ingestion).
fn report(label: &str, run: Run, connections: usize, unit: usize) {
    let Run {
        samples,
        elapsed,
        cpu,
    } = run;
    let mut all: Vec<u64> = samples
        .iter()
        .flat_map(|s| s.micros.iter().copied())
        .collect();
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[idx] as f64 / 1000.0
    };
    let units = (all.len() * unit) as f64;
    println!(
        "| {label} | {connections} | {:.0} | {:.2} | {:.2} | {:.2} | {errors} | {:.1} |",
        units / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        cpu * 1e6 / units.max(1.0),
    );
}

fn http_client() -> reqwest::Client {
    // One client per worker: one keep-alive connection each.
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .expect("client")
}

/// The channel the services use between themselves.
async fn channel(url: String) -> platform::grpc::Channel {
    platform::grpc::lazy_channel(&url, Duration::from_secs(60)).expect("a http://host:port URL")
}

fn operator<T>(msg: T, tenant: &str, roles: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let md = req.metadata_mut();
    md.insert("x-tenant-id", tenant.parse().expect("ascii tenant id"));
    md.insert("x-subject", "loadgen".parse().expect("ascii"));
    md.insert("x-roles", roles.parse().expect("ascii"));
    req
}

async fn http(url: String, o: Opts) {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let headers = o.headers.clone();
    let run = drive(o.connections, http_client, move |client| {
        (Instant::now() < deadline).then(|| {
            let mut req = client.get(&url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        })
    })
    .await;
    report(&o.label, run, o.connections, 1);
}

async fn grpc_get_tenant(url: String, tenant: String, o: Opts) {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let ch = channel(url).await;
    let run = drive(
        o.connections,
        || UserServiceClient::new(ch.clone()),
        move |mut client| {
            let tenant = tenant.clone();
            (Instant::now() < deadline).then_some(async move {
                let req = operator(
                    GetTenantRequest { tenant_id: tenant },
                    "ten_00000000000000000000000000000000",
                    "platform_admin",
                );
                client.get_tenant(req).await.is_ok()
            })
        },
    )
    .await;
    report(&o.label, run, o.connections, 1);
}

async fn grpc_entitlement(url: String, tenant: String, feature: String, o: Opts) {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let ch = channel(url).await;
    let run = drive(
        o.connections,
        || SubscriptionServiceClient::new(ch.clone()),
        move |mut client| {
            let (tenant, feature) = (tenant.clone(), feature.clone());
            (Instant::now() < deadline).then_some(async move {
                let req = operator(
                    sub::CheckEntitlementRequest {
                        tenant_id: tenant.clone(),
                        user_id: None,
                        feature,
                    },
                    &tenant,
                    "member",
                );
                client.check_entitlement(req).await.is_ok()
            })
        },
    )
    .await;
    report(&o.label, run, o.connections, 1);
}

/// Batch `n` of a run: `size` fresh (record id, user id) pairs, ids unique per run and batch.
fn batch_ids(run: &str, n: usize, size: usize) -> Vec<(String, String)> {
    (0..size)
        .map(|i| (format!("{run}-{n}-{i}"), format!("usr_{}", i % 100)))
        .collect()
}

/// Takes the prepared payloads one at a time, in order; None when all are taken.
struct Queue<T>(std::sync::Mutex<std::vec::IntoIter<T>>);

impl<T> Queue<T> {
    fn new(items: Vec<T>) -> Arc<Queue<T>> {
        Arc::new(Queue(std::sync::Mutex::new(items.into_iter())))
    }

    fn next(&self) -> Option<T> {
        self.0.lock().expect("queue").next()
    }
}

// Both ingestion modes encode every batch before the clock starts: on a two-core machine the
// generator's own JSON or protobuf encoding (a quarter of a core) would otherwise be taken from
// the server it measures, which a real client on its own machine does not do.

async fn ingest(url: String, tenant: String, o: Opts) {
    let run = format!("h{:x}", std::process::id());
    let now = chrono::Utc::now().to_rfc3339();
    let size = o.batch;
    let bodies = Queue::new(
        (0..o.records.div_ceil(size))
            .map(|n| {
                let records: Vec<serde_json::Value> = batch_ids(&run, n, size)
                    .into_iter()
                    .map(|(id, user)| {
                        serde_json::json!({"id": id, "tenant_id": tenant, "user_id": user,
                            "metric": "api_calls", "quantity": "1", "timestamp": now})
                    })
                    .collect();
                bytes::Bytes::from(
                    serde_json::to_vec(&serde_json::json!({ "records": records }))
                        .expect("JSON body"),
                )
            })
            .collect(),
    );
    let headers = o.headers.clone();
    let run = drive(o.connections, http_client, move |client| {
        bodies.next().map(|body| {
            let mut req = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        v["accepted"].as_u64() == Some(size as u64)
                    }
                    _ => false,
                }
            }
        })
    })
    .await;
    report(&o.label, run, o.connections, o.batch);
}

async fn grpc_ingest(url: String, tenant: String, o: Opts) {
    let run = format!("g{:x}", std::process::id());
    let now = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    };
    let size = o.batch;
    let batches = Queue::new(
        (0..o.records.div_ceil(size))
            .map(|n| sub::IngestUsageRequest {
                records: batch_ids(&run, n, size)
                    .into_iter()
                    .map(|(id, user)| sub::UsageRecord {
                        id,
                        tenant_id: tenant.clone(),
                        user_id: user,
                        metric: "api_calls".into(),
                        quantity: Some(rpc::common::v1::Decimal { value: "1".into() }),
                        timestamp: Some(now),
                    })
                    .collect(),
            })
            .collect(),
    );
    let ch = channel(url).await;
    let run = drive(
        o.connections,
        || SubscriptionServiceClient::new(ch.clone()),
        move |mut client| {
            batches.next().map(|batch| {
                let req = operator(batch, "ten_platform", "platform_admin");
                async move {
                    client
                        .ingest_usage(req)
                        .await
                        .is_ok_and(|r| r.into_inner().accepted as usize == size)
                }
            })
        },
    )
    .await;
    report(&o.label, run, o.connections, o.batch);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // reqwest is built without a default TLS provider (see the gateway's main).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let arg = |i: usize, what: &str| {
        args.get(i)
            .unwrap_or_else(|| panic!("{what} missing"))
            .clone()
    };
    match args.first().map(String::as_str) {
        Some("http") => rt.block_on(http(arg(1, "URL"), parse_opts(&args[2..]))),
        Some("grpc-get-tenant") => rt.block_on(grpc_get_tenant(
            arg(1, "URL"),
            arg(2, "tenant"),
            parse_opts(&args[3..]),
        )),
        Some("grpc-entitlement") => rt.block_on(grpc_entitlement(
            arg(1, "URL"),
            arg(2, "tenant"),
            arg(3, "feature"),
            parse_opts(&args[4..]),
        )),
        Some("ingest") => rt.block_on(ingest(
            arg(1, "URL"),
            arg(2, "tenant"),
            parse_opts(&args[3..]),
        )),
        Some("grpc-ingest") => rt.block_on(grpc_ingest(
            arg(1, "URL"),
            arg(2, "tenant"),
            parse_opts(&args[3..]),
        )),
        Some("header") => {
            let unit = args.get(1).map_or("requests/s", String::as_str);
            println!(
                "| target | connections | {unit} | p50 ms | p99 ms | p99.9 ms | errors | machine CPU µs each |"
            );
            println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        }
        // For a caller timing something else (`COPY`) the same way.
        Some("cpu") => println!("{}", machine_cpu_seconds()),
        _ => eprintln!(
            "usage: loadgen http URL | grpc-get-tenant URL TENANT | grpc-entitlement URL TENANT FEATURE \
             | ingest URL TENANT | grpc-ingest URL TENANT | header [UNIT] | cpu  [--connections N] [--seconds S] \
             [--records N] [--batch B] [--header 'K: V'] [--label L]"
        ),
    }
}
