//! A whole stack as separate processes, for the fault suite and the load runs: the seven
//! services on free ports against private Postgres/Redis/NATS, and the sandbox PSP as a
//! process of its own (`psp`); each logs to `<run dir>/<service>.log` (appended across
//! restarts). The fault suite kills (SIGKILL), stops (SIGSTOP/SIGCONT) and restarts services
//! from outside; nothing in the services knows.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::client;
use crate::infra::{self, Infra};

/// (binary, short name)
pub const SERVICES: &[(&str, &str)] = &[
    ("user-service", "user"),
    ("subscription-service", "subscription"),
    ("billing-service", "billing"),
    ("payment-service", "payment"),
    ("invoicing-service", "invoicing"),
    ("notification-service", "notification"),
    ("gateway", "gateway"),
];

struct Running {
    /// `billing`, `billing-2`, …: the service's short name, then a replica number from 2 on.
    name: String,
    /// The service's short name (`billing`).
    service: &'static str,
    binary: &'static str,
    args: &'static [&'static str],
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

pub struct Cluster {
    release: PathBuf,
    pub dir: PathBuf,
    services: Vec<Running>,
    /// What the sandbox PSP signs its callbacks with (and the payment service verifies).
    pub psp_secret: String,
}

/// `billing` for the first replica, `billing-2` for the second, …
pub fn replica_name(short: &str, i: usize) -> String {
    match i {
        0 => short.to_string(),
        i => format!("{short}-{}", i + 1),
    }
}

/// The service binaries in release mode (optimized, what is measured), or the debug ones
/// the tests build (`debug`: quicker when they are built already).
pub fn binaries(debug: bool) -> Result<PathBuf> {
    if !debug {
        let packages: Vec<&str> = SERVICES.iter().map(|(b, _)| *b).collect();
        return crate::bench_gateway::build_release(&packages);
    }
    let mut build = crate::cargo();
    build.args(["build", "--bins"]);
    for (bin, _) in SERVICES {
        build.args(["-p", bin]);
    }
    if !build.status().context("cargo build")?.success() {
        bail!("build failed");
    }
    Ok(crate::stack::target_dir()?.join("debug"))
}

impl Cluster {
    /// Starts every service (databases `<prefix>_<service>`, events under `<prefix>`) and
    /// waits until each is ready. `extra` adds or overrides variables: `(service, name,
    /// value)`, service `*` for all of them.
    pub fn start(
        infra: &Infra,
        release: &Path,
        dir: &Path,
        prefix: &str,
        extra: &[(&str, &str, &str)],
    ) -> Result<Cluster> {
        Self::start_replicated(infra, release, dir, prefix, extra, 1)
    }

    /// [`Cluster::start`] with `replicas` processes of every service (`billing`,
    /// `billing-2`, …) sharing its database; each peer is given every replica's address
    /// (`*_SERVICE_ADDR` as a comma-separated list), the gateways each listen on a port of
    /// their own.
    pub fn start_replicated(
        infra: &Infra,
        release: &Path,
        dir: &Path,
        prefix: &str,
        extra: &[(&str, &str, &str)],
        replicas: usize,
    ) -> Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let replicas = replicas.max(1);
        // ports[service][replica]
        let mut ports: Vec<Vec<u16>> = Vec::new();
        for _ in SERVICES {
            ports.push(
                (0..replicas)
                    .map(|_| infra::free_port())
                    .collect::<Result<_>>()?,
            );
        }
        let sandbox = infra::free_port()?;
        let psp_secret = format!("whsec_{prefix}");
        let gateway = ports[SERVICES.len() - 1][0];
        let mut common: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), infra.redis_url()),
            ("NATS_URL".into(), infra.nats_url()),
            (
                "EVENT_STREAM_REPLICAS".into(),
                infra.nats_replicas().to_string(),
            ),
            ("EVENT_PREFIX".into(), prefix.into()),
            ("RUST_LOG".into(), "warn".into()),
            ("LOG_FORMAT".into(), "json".into()),
            ("JWT_HS256_SECRET".into(), crate::token::DEV_SECRET.into()),
            ("DEV_MODE".into(), "true".into()),
            ("OUTBOX_POLL_MS".into(), "100".into()),
        ];
        for ((_, short), replica_ports) in SERVICES.iter().zip(&ports) {
            if *short != "gateway" {
                let urls: Vec<String> = replica_ports
                    .iter()
                    .map(|p| format!("http://127.0.0.1:{p}"))
                    .collect();
                common.push((
                    format!("{}_SERVICE_ADDR", short.to_uppercase()),
                    urls.join(","),
                ));
            }
        }
        let mut services = Vec::new();
        for ((binary, short), replica_ports) in SERVICES.iter().zip(&ports) {
            let mut env = common.clone();
            env.push((
                "DATABASE_URL".into(),
                infra.database_url(&format!("{prefix}_{short}")),
            ));
            let own: Vec<(&str, String)> = match *short {
                "notification" => vec![
                    ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
                    ("WEBHOOK_RETRY_SCHEDULE", "0s,1s,2s,4s,8s".into()),
                    ("WEBHOOK_TIMEOUT_MS", "2000".into()),
                    ("NOTIFY_CLOCK_MS", "100".into()),
                    (
                        "EMAIL_TRANSPORT",
                        format!("maildir:{}", dir.join("mail").display()),
                    ),
                    (
                        "SMS_TRANSPORT",
                        format!("file:{}", dir.join("sms.log").display()),
                    ),
                ],
                // The PSP is a process of its own (`psp`, below): it outlives the payment
                // service, as a real one does.
                "payment" => vec![
                    ("SANDBOX_PSP", format!("http://127.0.0.1:{sandbox}")),
                    ("SANDBOX_WEBHOOK_SECRET", psp_secret.clone()),
                    ("PAYMENT_CLOCK_SECS", "1".into()),
                ],
                "invoicing" => vec![
                    ("BLOB_STORE", dir.join("blobs").display().to_string()),
                    // Invoices finalized (numbered) as soon as their run completes.
                    ("INVOICE_GRACE_SECS", "0".into()),
                ],
                // Runs only by request: a scenario starts the ones it kills.
                "billing" => vec![("BILLING_CLOCK_SECS", "0".into())],
                _ => vec![],
            };
            env.extend(own.into_iter().map(|(k, v)| (k.to_string(), v)));
            env.extend(
                extra
                    .iter()
                    .filter(|(s, _, _)| *s == "*" || s == short)
                    .map(|(_, k, v)| (k.to_string(), v.to_string())),
            );
            for (i, port) in replica_ports.iter().enumerate() {
                let mut env = env.clone();
                env.push(("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")));
                services.push(Running {
                    name: replica_name(short, i),
                    service: short,
                    binary,
                    args: &[],
                    port: *port,
                    env,
                    child: None,
                });
            }
        }
        services.insert(
            0,
            Running {
                name: "psp".into(),
                service: "psp",
                binary: "payment-service",
                args: &["sandbox"],
                port: sandbox,
                env: vec![
                    ("RUST_LOG".into(), "warn".into()),
                    ("SANDBOX_PSP_ADDR".into(), format!("127.0.0.1:{sandbox}")),
                    (
                        "SANDBOX_CALLBACK_URL".into(),
                        format!("http://127.0.0.1:{gateway}/v1/webhooks/psp/stripe"),
                    ),
                    ("SANDBOX_WEBHOOK_SECRET".into(), psp_secret.clone()),
                ],
                child: None,
            },
        );
        let mut cluster = Cluster {
            release: release.to_path_buf(),
            dir: dir.to_path_buf(),
            services,
            psp_secret,
        };
        let names: Vec<String> = cluster.services.iter().map(|s| s.name.clone()).collect();
        for name in &names {
            cluster.spawn(name)?;
        }
        for name in &names {
            cluster.wait_ready(name, Duration::from_secs(60))?;
        }
        Ok(cluster)
    }

    fn find(&mut self, short: &str) -> Result<&mut Running> {
        self.services
            .iter_mut()
            .find(|s| s.name == short)
            .with_context(|| format!("no service {short}"))
    }

    fn spawn(&mut self, short: &str) -> Result<()> {
        let release = self.release.clone();
        let log = self.dir.join(format!("{short}.log"));
        let s = self.find(short)?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        // `XTASK_WRAP_<SERVICE>` runs the service under a tool, e.g.
        // `XTASK_WRAP_GATEWAY="heaptrack -o /tmp/gw"` for a heap profile of a load run.
        let wrap = std::env::var(format!("XTASK_WRAP_{}", short.to_uppercase())).ok();
        let mut words = wrap.iter().flat_map(|w| w.split_whitespace());
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(words).arg(release.join(s.binary));
                c
            }
            None => Command::new(release.join(s.binary)),
        };
        let child = cmd
            .args(s.args)
            .envs(s.env.iter().cloned())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", s.binary))?;
        s.child = Some(child);
        Ok(())
    }

    /// `127.0.0.1:<port>` of a service.
    pub fn addr(&self, short: &str) -> String {
        let s = self
            .services
            .iter()
            .find(|s| s.name == short)
            .expect("a known service");
        format!("127.0.0.1:{}", s.port)
    }

    /// The process id of a running service.
    pub fn pid(&self, short: &str) -> Option<u32> {
        self.services
            .iter()
            .find(|s| s.name == short)
            .and_then(|s| s.child.as_ref())
            .map(Child::id)
    }

    pub fn wait_ready(&mut self, short: &str, limit: Duration) -> Result<Duration> {
        let addr = self.addr(short);
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self
                .find(short)?
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{short} exited during start-up ({status}); see {}",
                    self.dir.join(format!("{short}.log")).display()
                );
            }
            if let Ok((200, _)) = client::request(&addr, "GET", "/readyz", "", &[], "") {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{short} not ready after {limit:?}")
    }

    /// The names of every replica of service `short` (`[billing, billing-2]`).
    pub fn replicas(&self, short: &str) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.service == short)
            .map(|s| s.name.clone())
            .collect()
    }

    /// `127.0.0.1:<port>` of every replica of service `short`.
    pub fn addrs(&self, short: &str) -> Vec<String> {
        self.replicas(short).iter().map(|n| self.addr(n)).collect()
    }

    /// `kill -9`.
    pub fn kill(&mut self, short: &str) -> Result<()> {
        if let Some(mut c) = self.find(short)?.child.take() {
            c.kill().context("SIGKILL")?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: a stalled process — its sockets stay open, nothing
    /// answers — as a partition or a long pause looks to its callers.
    pub fn signal_stop(&mut self, short: &str, stop: bool) -> Result<()> {
        let pid = self
            .find(short)?
            .child
            .as_ref()
            .with_context(|| format!("{short} is not running"))?
            .id();
        let sig = if stop { "-STOP" } else { "-CONT" };
        if !Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success()
        {
            bail!("kill {sig} {short} failed");
        }
        Ok(())
    }

    /// Starts a killed service again on its port; how long until it was ready.
    pub fn restart(&mut self, short: &str) -> Result<Duration> {
        self.spawn(short)?;
        self.wait_ready(short, Duration::from_secs(60))
    }

    /// Stops everything (services first, gateway before them).
    pub fn stop(mut self) {
        for s in self.services.iter_mut().rev() {
            if let Some(mut c) = s.child.take() {
                infra::terminate(&mut c, Duration::from_secs(5));
            }
        }
    }
}
