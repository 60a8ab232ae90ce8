//! A small closed-loop load generator: N concurrent workers send the same request back to
//! back for a fixed time; prints requests/s and latency percentiles as one Markdown row.
//!
//! HTTP: `loadgen http URL [--header 'K: V'] [--connections 64] [--seconds 10]`
//!   (one keep-alive connection per worker, like wrk).
//! gRPC: `loadgen grpc-get-tenant URL TENANT_ID [--connections 64] [--seconds 10]`
//!   (UserService.GetTenant with platform_admin identity metadata; workers share one HTTP/2
//!   channel, as gateways and services do).
//!
//! Driven by `cargo xtask bench gateway`, which runs all three targets in one go.

use std::time::{Duration, Instant};

use rpc::user::v1::GetTenantRequest;
use rpc::user::v1::user_service_client::UserServiceClient;

struct Opts {
    connections: usize,
    seconds: u64,
    headers: Vec<(String, String)>,
    label: String,
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        connections: 64,
        seconds: 10,
        headers: Vec::new(),
        label: String::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let val = || {
            args.get(i + 1)
                .cloned()
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
        };
        match args[i].as_str() {
            "--connections" => o.connections = val().parse().expect("--connections takes a number"),
            "--seconds" => o.seconds = val().parse().expect("--seconds takes a number"),
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

/// Collected latencies in microseconds plus error count.
struct Sample {
    micros: Vec<u64>,
    errors: u64,
}

fn report(label: &str, samples: Vec<Sample>, elapsed: Duration, connections: usize) {
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
    println!(
        "| {label} | {connections} | {:.0} | {:.2} | {:.2} | {:.2} | {errors} |",
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
    );
}

async fn http(url: String, o: Opts) {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.connections {
        let url = url.clone();
        let headers = o.headers.clone();
        tasks.push(tokio::spawn(async move {
            // One client per worker: one keep-alive connection each.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .http1_only()
                .build()
                .expect("client");
            let mut s = Sample {
                micros: Vec::new(),
                errors: 0,
            };
            while Instant::now() < deadline {
                let mut req = client.get(&url);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let t = Instant::now();
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        s.micros.push(t.elapsed().as_micros() as u64);
                    }
                    _ => s.errors += 1,
                }
            }
            s
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.push(t.await.expect("worker"));
    }
    report(&o.label, samples, start.elapsed(), o.connections);
}

async fn grpc(url: String, tenant: String, o: Opts) {
    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("gRPC URL")
        .connect()
        .await
        .expect("connect to the service");
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.connections {
        let mut client = UserServiceClient::new(channel.clone());
        let tenant = tenant.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample {
                micros: Vec::new(),
                errors: 0,
            };
            while Instant::now() < deadline {
                let mut req = tonic::Request::new(GetTenantRequest {
                    tenant_id: tenant.clone(),
                });
                let md = req.metadata_mut();
                md.insert(
                    "x-tenant-id",
                    "ten_00000000000000000000000000000000"
                        .parse()
                        .expect("ascii"),
                );
                md.insert("x-subject", "loadgen".parse().expect("ascii"));
                md.insert("x-roles", "platform_admin".parse().expect("ascii"));
                let t = Instant::now();
                match client.get_tenant(req).await {
                    Ok(_) => s.micros.push(t.elapsed().as_micros() as u64),
                    Err(_) => s.errors += 1,
                }
            }
            s
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.push(t.await.expect("worker"));
    }
    report(&o.label, samples, start.elapsed(), o.connections);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("http") => {
            let url = args.get(1).expect("http URL").clone();
            rt.block_on(http(url, parse_opts(&args[2..])));
        }
        Some("grpc-get-tenant") => {
            let url = args.get(1).expect("gRPC URL").clone();
            let tenant = args.get(2).expect("tenant id").clone();
            rt.block_on(grpc(url, tenant, parse_opts(&args[3..])));
        }
        Some("header") => {
            println!("| target | connections | requests/s | p50 ms | p99 ms | p99.9 ms | errors |");
            println!("| --- | --- | --- | --- | --- | --- | --- |");
        }
        _ => {
            eprintln!("usage: loadgen http URL [opts] | grpc-get-tenant URL TENANT [opts] | header")
        }
    }
}
