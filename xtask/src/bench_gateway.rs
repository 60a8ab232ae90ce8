//! `cargo xtask bench gateway`: an authenticated `GET /v1/tenants/{id}` through the gateway,
//! the same lookup sent straight to the user service over gRPC, and nginx serving a static
//! reply of the same body (the machine's ceiling), all driven by the same load generator
//! (`crates/gateway/examples/loadgen.rs`) in one run. Release builds; logs at `warn`.
//! `--worker-threads N` gives the gateway and the user service N runtime threads each;
//! `--tenant-cache-secs 0` makes the user service read every tenant from Postgres (by default
//! it serves them from its in-memory tenant cache, as in production). When `wrk` is installed,
//! nginx and the gateway are measured with it as well (a lighter load generator: more of the
//! two cores for the measured servers).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::infra::{self, Infra};

pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    Ok((
        status,
        resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

pub(crate) fn wait_http(addr: &str, path: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Ok((200, _)) = http(addr, "GET", path, "", "") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{addr}{path} not ready after 60 s")
}

pub fn run(args: &[String]) -> Result<ExitCode> {
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "10".into());
    let connections = args
        .iter()
        .position(|a| a == "--connections")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "64".into());
    // Tokio's runtime threads per service (`TOKIO_WORKER_THREADS`); unset = one per core.
    let worker_threads = args
        .iter()
        .position(|a| a == "--worker-threads")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let tenant_cache = args
        .iter()
        .position(|a| a == "--tenant-cache-secs")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let nginx =
        which_nginx().context("nginx is needed for the baseline: apt-get install nginx-light")?;
    let release = build_release(&["gateway", "user-service"])?;
    let infra = Infra::ensure()?;
    let tag = std::process::id();
    let user_port = infra::free_port()?;
    let gw_port = infra::free_port()?;
    let nginx_port = infra::free_port()?;
    let token = crate::token::mint(
        crate::token::OPERATOR_TENANT,
        "bench",
        &["platform_admin"],
        3600,
    )?;
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> Result<()> {
        let common = |c: &mut Command| {
            bench_env(c, &infra, tag);
            if let Some(n) = &worker_threads {
                c.env("TOKIO_WORKER_THREADS", n);
            }
        };
        println!(
            "services' runtime threads: {}",
            worker_threads
                .as_deref()
                .unwrap_or("one per core (tokio's default)")
        );
        let mut user = Command::new(release.join("user-service"));
        common(&mut user);
        user.env("LISTEN_ADDR", format!("127.0.0.1:{user_port}"))
            .env(
                "DATABASE_URL",
                infra.database_url(&format!("bench_user_{tag}")),
            );
        if let Some(secs) = &tenant_cache {
            user.env("TENANT_CACHE_SECS", secs);
        }
        println!(
            "user service's tenant cache: {}",
            match tenant_cache.as_deref() {
                Some("0") => "off (every read from Postgres)".to_string(),
                Some(s) => format!("{s} s"),
                None => "default (30 s)".to_string(),
            }
        );
        children.push(user.spawn().context("user-service")?);
        let mut gw = gateway_command(&release, gw_port);
        common(&mut gw);
        gw.env("USER_SERVICE_ADDR", format!("http://127.0.0.1:{user_port}"));
        children.push(gw.spawn().context("gateway")?);
        let gw_addr = format!("127.0.0.1:{gw_port}");
        wait_http(&format!("127.0.0.1:{user_port}"), "/readyz")?;
        wait_http(&gw_addr, "/healthz")?;
        let (status, body) = http(
            &gw_addr,
            "POST",
            "/v1/tenants",
            &token,
            &format!(r#"{{"name":"Bench","slug":"bench-{tag}"}}"#),
        )?;
        if status != 201 {
            bail!("creating the bench tenant answered {status}: {body}");
        }
        let tenant: serde_json::Value = serde_json::from_str(&body)?;
        let tenant_id = tenant["id"].as_str().context("tenant id")?.to_string();
        let (_, reply) = http(
            &gw_addr,
            "GET",
            &format!("/v1/tenants/{tenant_id}"),
            &token,
            "",
        )?;

        // nginx returns the same bytes the gateway does.
        let dir = infra::workspace_root()
            .join("target")
            .join("xtask")
            .join(format!("nginx-{tag}"));
        std::fs::create_dir_all(dir.join("logs"))?;
        let conf = format!(
            "worker_processes 2;\npid {pid};\nerror_log {err} warn;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{nginx_port}; location / {{ default_type application/json; return 200 '{body}'; }} }} }}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("logs/error.log").display(),
            body = reply.replace('\'', "")
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        children.push(
            Command::new(&nginx)
                .args(["-p"])
                .arg(&dir)
                .args(["-c"])
                .arg(dir.join("nginx.conf"))
                .args(["-g", "daemon off;"])
                .spawn()
                .context("nginx")?,
        );
        std::thread::sleep(Duration::from_millis(500));

        let loadgen = release.join("examples").join("loadgen");
        let opts = [
            "--connections",
            connections.as_str(),
            "--seconds",
            seconds.as_str(),
        ];
        Command::new(&loadgen).arg("header").status()?;
        // CPU the gateway and the user service spend per request: the gateway's own cost,
        // steadier than requests/s on a shared machine.
        let (gateway_pid, user_pid) = (children[1].id(), children[0].id());
        let mut costs = Vec::new();
        // (requests/s, p99 ms) of nginx, the gateway, the user service
        let mut figures = Vec::new();
        for (label, args) in [
            (
                "nginx static reply",
                vec![
                    "http".to_string(),
                    format!("http://127.0.0.1:{nginx_port}/"),
                ],
            ),
            (
                "gateway: GET /v1/tenants/{id} (JWT, RBAC, rate limits, gRPC to user service)",
                vec![
                    "http".into(),
                    format!("http://{gw_addr}/v1/tenants/{tenant_id}"),
                    "--header".into(),
                    format!("Authorization: Bearer {token}"),
                ],
            ),
            (
                "user service directly: gRPC GetTenant",
                vec![
                    "grpc-get-tenant".into(),
                    format!("http://127.0.0.1:{user_port}"),
                    tenant_id.clone(),
                ],
            ),
        ] {
            let before = (cpu_secs(gateway_pid), cpu_secs(user_pid));
            let table = crate::bench_all::echoed(
                Command::new(&loadgen)
                    .args(&args)
                    .args(opts)
                    .args(["--label", label]),
            )?;
            let rps = crate::bench_all::cell(&table, label, 2);
            figures.push((rps.unwrap_or(0.0), crate::bench_all::cell(&table, label, 4)));
            let requests = rps.unwrap_or(0.0) * seconds.parse::<f64>().unwrap_or(0.0);
            let per_request = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if requests > 0.0 => format!("{:.0}", (b - a) / requests * 1e6),
                _ => "-".into(),
            };
            let after = (cpu_secs(gateway_pid), cpu_secs(user_pid));
            costs.push(format!(
                "| {label} | {} | {} |",
                per_request(before.0, after.0),
                per_request(before.1, after.1)
            ));
        }
        let ((nginx_rps, _), (gw_rps, gw_p99)) = (figures[0], figures[1]);
        crate::bench_all::headline(crate::bench_all::Headline {
            bench: "gateway",
            what: &format!("authenticated GET through the gateway, {connections} connections"),
            value: format!(
                "{gw_rps:.0} req/s ({:.0} %), p99 {:.1} ms",
                gw_rps / nginx_rps * 100.0,
                gw_p99.unwrap_or(f64::NAN)
            ),
            baseline: format!("nginx static reply {nginx_rps:.0} req/s"),
            target: Some("≥ 30 % of nginx, p99 < 10 ms"),
            met: gw_rps >= 0.3 * nginx_rps && gw_p99.is_some_and(|p| p < 10.0),
        });
        println!("\n| target | gateway CPU µs/request | user service CPU µs/request |");
        println!("| --- | --- | --- |");
        for c in costs.iter().skip(1) {
            println!("{c}");
        }
        // The same two requests from wrk when it is installed: a C load generator that needs
        // far less CPU per request than ours, so both the ceiling and the gateway get more of
        // the two cores (and the ratio between them changes).
        if let Some(wrk) = which_wrk() {
            println!("\n| wrk (-t2) | connections | req/s | p50 ms | p99 ms |");
            println!("| --- | --- | --- | --- | --- |");
            let auth = format!("Authorization: Bearer {token}");
            for (label, url, header) in [
                (
                    "nginx static reply",
                    format!("http://127.0.0.1:{nginx_port}/"),
                    None,
                ),
                (
                    "gateway: GET /v1/tenants/{id}",
                    format!("http://{gw_addr}/v1/tenants/{tenant_id}"),
                    Some(auth.as_str()),
                ),
            ] {
                let mut cmd = Command::new(&wrk);
                cmd.args(["-t2", "-c", &connections, "-d"])
                    .arg(format!("{seconds}s"))
                    .arg("--latency");
                if let Some(h) = header {
                    cmd.args(["-H", h]);
                }
                let out = cmd.arg(&url).output().context("wrk")?;
                let text = String::from_utf8_lossy(&out.stdout);
                let (rps, p50, p99) = parse_wrk(&text);
                println!("| {label} | {connections} | {rps} | {p50} | {p99} |");
            }
        }
        Ok(())
    })();
    for c in children.iter_mut().rev() {
        infra::terminate(c, Duration::from_secs(10));
    }
    let _ = psql(
        &infra,
        "postgres",
        &format!("DROP DATABASE IF EXISTS bench_user_{tag} WITH (FORCE)"),
    );
    drop(infra);
    result.map(|_| ExitCode::SUCCESS)
}

/// CPU seconds (user + system) a process has used so far (Linux `/proc/<pid>/stat`).
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace().skip(11);
    let ticks: f64 = f.next()?.parse::<f64>().ok()? + f.next()?.parse::<f64>().ok()?;
    // Linux reports in USER_HZ, 100 on every architecture we run on.
    Some(ticks / 100.0)
}

fn which_wrk() -> Option<std::path::PathBuf> {
    ["/usr/bin/wrk", "/usr/local/bin/wrk"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// Requests/s, p50 and p99 in ms from `wrk --latency` output ("-" where missing).
fn parse_wrk(text: &str) -> (String, String, String) {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_string())
    };
    let ms = |v: Option<String>| {
        v.and_then(|v| {
            let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
            let n: f64 = num.parse().ok()?;
            let factor = match unit {
                "us" => 0.001,
                "ms" => 1.0,
                "s" => 1000.0,
                _ => return None,
            };
            Some(format!("{:.2}", n * factor))
        })
        .unwrap_or_else(|| "-".into())
    };
    (
        field("Requests/sec:")
            .and_then(|v| v.parse::<f64>().ok())
            .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
        ms(field("50%")),
        ms(field("99%")),
    )
}

fn which_nginx() -> Option<std::path::PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// Runs one SQL command with psql against `database`; true when it succeeded.
pub(crate) fn psql(infra: &Infra, database: &str, sql: &str) -> Result<bool> {
    Ok(Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
        .arg(infra.pg_port.to_string())
        .args(["-U", "postgres", "-d", database, "-c", sql])
        .stdout(Stdio::null())
        .status()
        .context("psql")?
        .success())
}

/// Release builds of `packages`' binaries and of the load generator; the release directory.
pub(crate) fn build_release(packages: &[&str]) -> Result<std::path::PathBuf> {
    let mut bins = vec!["build", "--release"];
    for p in packages {
        bins.extend(["-p", p]);
    }
    bins.push("--bins");
    for build in [
        bins,
        vec![
            "build",
            "--release",
            "-p",
            "gateway",
            "--example",
            "loadgen",
        ],
    ] {
        if !crate::cargo().args(&build).status()?.success() {
            bail!("release build failed");
        }
    }
    Ok(crate::stack::target_dir()?.join("release"))
}

/// The gateway as the benchmarks run it: on `port`, trusting the development JWT secret, with
/// rate limits out of the way (they are measured by their own tests, not here).
pub(crate) fn gateway_command(release: &std::path::Path, port: u16) -> Command {
    let mut gw = Command::new(release.join("gateway"));
    gw.env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_HS256_SECRET", crate::token::DEV_SECRET)
        .env("DEV_MODE", "true")
        .env("RATE_LIMIT_CALLER_PER_SEC", "1000000")
        .env("RATE_LIMIT_CALLER_BURST", "1000000")
        .env("RATE_LIMIT_TENANT_PER_SEC", "1000000")
        .env("RATE_LIMIT_TENANT_BURST", "1000000");
    gw
}

/// What every benchmarked service shares: the infrastructure, a namespace of its own (so
/// nothing collides with a running stack), quiet logs.
pub(crate) fn bench_env(c: &mut Command, infra: &Infra, tag: u32) {
    c.env("REDIS_URL", infra.redis_url())
        .env("NATS_URL", infra.nats_url())
        .env("EVENT_PREFIX", format!("bench{tag}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_output_is_read_in_milliseconds() {
        let out = "  Latency Distribution\n     50%  480.00us\n     75%    1.20ms\n     90%    3.00ms\n     99%    1.05s \n  750535 requests in 10.00s, 200.00MB read\nRequests/sec:  75053.58\n";
        assert_eq!(
            super::parse_wrk(out),
            (
                "75054".to_string(),
                "0.48".to_string(),
                "1050.00".to_string()
            )
        );
        assert_eq!(
            super::parse_wrk("garbage"),
            ("-".to_string(), "-".to_string(), "-".to_string())
        );
    }
}
