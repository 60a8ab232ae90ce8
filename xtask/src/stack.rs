//! `cargo xtask up`: build and run the seven services against the infrastructure, wait until
//! the gateway is ready, and stop everything on Ctrl-C, SIGTERM or a service dying.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::infra::{self, Infra};

/// (binary, short name, default port)
const SERVICES: &[(&str, &str, u16)] = &[
    ("user-service", "user", 50051),
    ("subscription-service", "subscription", 50052),
    ("billing-service", "billing", 50053),
    ("payment-service", "payment", 50054),
    ("invoicing-service", "invoicing", 50055),
    ("notification-service", "notification", 50056),
    ("gateway", "gateway", 8080),
];

/// The upstream variable the gateway (and peers) read for each internal service.
fn addr_var(short: &str) -> String {
    format!("{}_SERVICE_ADDR", short.to_uppercase())
}

/// Delivers a message on Ctrl-C (SIGINT) or SIGTERM.
fn signals() -> Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C/SIGTERM handler")?;
    Ok(rx)
}

pub fn infra_only() -> Result<ExitCode> {
    let rx = signals()?;
    let infra = Infra::ensure()?;
    for (k, v) in infra.test_env() {
        println!("{k}={v}");
    }
    println!("xtask: Ctrl-C to stop");
    let _ = rx.recv();
    drop(infra);
    Ok(ExitCode::SUCCESS)
}

pub fn target_dir() -> Result<std::path::PathBuf> {
    let out = crate::cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata JSON")?;
    Ok(meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?
        .into())
}

/// GET /readyz over plain HTTP/1.1: (status, body).
fn readyz(addr: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

/// `cargo xtask up [--nats-cluster] [--replicas N]`: the whole stack in debug mode;
/// `--nats-cluster` runs three local NATS nodes (JetStream streams at R3) instead of one
/// server; `--replicas N` runs N processes of every service (N gateways on N ports), each
/// peer given all of a service's addresses.
pub fn up(args: &[String]) -> Result<ExitCode> {
    let mut nats_cluster = false;
    let mut replicas = 1usize;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nats-cluster" => nats_cluster = true,
            "--replicas" => {
                replicas = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=8).contains(n))
                    .context("--replicas takes a number from 1 to 8")?;
            }
            other => bail!("unknown option {other:?} (up [--nats-cluster] [--replicas N])"),
        }
    }
    let rx = signals()?;
    let mut infra = Infra::ensure()?;
    infra.use_nats_cluster(nats_cluster)?;
    let mut build = crate::cargo();
    build.args(["build", "--bins"]);
    for (bin, _, _) in SERVICES {
        build.args(["-p", bin]);
    }
    if !build.status().context("cargo build")?.success() {
        bail!("build failed");
    }
    let bin_dir = target_dir()?.join("debug");

    // ports[service][replica]: the first replica on the service's default port if free.
    let mut ports: Vec<Vec<u16>> = Vec::new();
    for (_, short, default) in SERVICES {
        let mut mine = Vec::new();
        for i in 0..replicas {
            let port = if i == 0 && infra::port_is_free(*default) {
                *default
            } else {
                let p = infra::free_port()?;
                if i == 0 {
                    eprintln!("xtask: port {default} is taken; {short} uses {p}");
                }
                p
            };
            mine.push(port);
        }
        ports.push(mine);
    }
    let mut env: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), infra.redis_url()),
        ("NATS_URL".into(), infra.nats_url()),
        (
            "EVENT_STREAM_REPLICAS".into(),
            infra.nats_replicas().to_string(),
        ),
        ("LOG_FORMAT".into(), "pretty".into()),
        ("JWT_HS256_SECRET".into(), crate::token::DEV_SECRET.into()),
        // The public development secret is refused without it.
        ("DEV_MODE".into(), "true".into()),
    ];
    for ((_, short, _), mine) in SERVICES.iter().zip(&ports) {
        if *short != "gateway" {
            let urls: Vec<String> = mine
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect();
            env.push((addr_var(short), urls.join(",")));
        }
    }

    let mut children: Vec<(String, Child)> = Vec::new();
    let result = (|| -> Result<()> {
        let instances = SERVICES
            .iter()
            .zip(&ports)
            .flat_map(|((bin, short, _), mine)| {
                mine.iter().enumerate().map(move |(i, port)| {
                    (*bin, crate::cluster::replica_name(short, i), *short, *port)
                })
            });
        for (bin, name, short, port) in instances {
            let mut cmd = Command::new(bin_dir.join(bin));
            cmd.envs(env.iter().cloned())
                .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
                .env("DATABASE_URL", infra.database_url(&format!("saas_{short}")))
                .envs(replica_env(short, &name))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
            for stream in [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let name = name.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        println!("{name:>12} | {line}");
                    }
                });
            }
            children.push((name, child));
        }
        let gateways: Vec<String> = ports[ports.len() - 1]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let gateway = gateways[0].clone();
        let started = Instant::now();
        loop {
            if let Some((name, status)) = exited(&mut children) {
                bail!("{name} exited during start-up ({status})");
            }
            let answers: Vec<_> = gateways.iter().map(|g| readyz(g)).collect();
            if answers.iter().all(|a| matches!(a, Some((200, _)))) {
                break;
            }
            match answers
                .into_iter()
                .find(|a| !matches!(a, Some((200, _))))
                .flatten()
            {
                Some((_, body)) if started.elapsed() > Duration::from_secs(60) => {
                    bail!("the gateway is not ready after 60 s: {body}")
                }
                None if started.elapsed() > Duration::from_secs(60) => {
                    bail!("the gateway does not answer after 60 s")
                }
                _ => {}
            }
            if rx.recv_timeout(Duration::from_millis(250)).is_ok() {
                bail!("interrupted during start-up");
            }
        }
        let token = crate::token::mint(
            crate::token::OPERATOR_TENANT,
            "demo-admin",
            &["platform_admin"],
            24 * 3600,
        )?;
        println!(
            "\nxtask: all services ready in {:.1} s — DEVELOPMENT MODE (DEV_MODE=true: the gateway accepts tokens signed with the public development secret; never expose this stack)\n\n  gateway: http://{}\n  status:  curl http://{gateway}/v1/status\n  token:   {token}  (platform_admin of the operator tenant {})\n\nCtrl-C stops everything.\n",
            started.elapsed().as_secs_f64(),
            gateways.join(" http://"),
            crate::token::OPERATOR_TENANT
        );
        // Watch for Ctrl-C/SIGTERM, or a service dying.
        loop {
            if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
                eprintln!("xtask: stopping");
                return Ok(());
            }
            if let Some((name, status)) = exited(&mut children) {
                bail!("{name} exited unexpectedly ({status}); stopping the stack");
            }
        }
    })();
    // Services first (they drain), then the infrastructure they use.
    for (name, child) in children.iter_mut().rev() {
        infra::terminate(child, Duration::from_secs(10));
        eprintln!("xtask: stopped {name}");
    }
    drop(infra);
    result.map(|_| ExitCode::SUCCESS)
}

/// What a second (third, …) replica needs beyond the first's variables: one sandbox PSP for
/// the stack, served by the first payment replica, the others use it.
fn replica_env(short: &str, name: &str) -> Vec<(&'static str, String)> {
    if short == "payment" && name != short {
        vec![("SANDBOX_PSP", "http://127.0.0.1:7070".into())]
    } else {
        vec![]
    }
}

fn exited(children: &mut [(String, Child)]) -> Option<(String, std::process::ExitStatus)> {
    children
        .iter_mut()
        .find_map(|(n, c)| c.try_wait().ok().flatten().map(|s| (n.clone(), s)))
}
