//! Postgres, Redis and NATS for `up` and `test`: the ones on the default ports when they
//! answer, else private instances from the installed binaries, on free ports, in
//! `target/xtask/<pid>/`, stopped and deleted when [`Infra`] drops.
//!
//! A run killed without clean-up leaves its directory behind; the next run stops whatever
//! processes that directory records and deletes it, so stale state never breaks a later run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A server process we started.
struct Private {
    name: &'static str,
    child: Child,
    port: u16,
}

/// The infrastructure in use; private instances stop when this drops.
pub struct Infra {
    pub pg_port: u16,
    pub redis_port: u16,
    pub nats_port: u16,
    private: Vec<Private>,
    /// Private servers crashed by the fault suite, to restart: (name, port).
    crashed: Vec<(&'static str, u16)>,
    /// Commits wait for their WAL, as in production (the fault suite crashes Postgres); the
    /// tests' and benchmarks' instances skip that.
    durable: bool,
    dir: Option<PathBuf>,
    /// A three-node NATS cluster, once started: each node's (client, route, monitoring) ports.
    nats_cluster: Option<[(u16, u16, u16); 3]>,
    /// Whether the services are pointed at the cluster rather than the single NATS.
    cluster_in_use: bool,
}

/// The NATS cluster's nodes (their names in `crash`/`restart`).
pub const NATS_NODES: [&str; 3] = ["nats-0", "nats-1", "nats-2"];

pub fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Below Linux's ephemeral range (32768–60999): a port handed out here and bound a moment
    // later by the process it is meant for cannot meanwhile become the local end of some
    // process's outgoing connection. And never the same port twice in one xtask run.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    static SEED: AtomicU64 = AtomicU64::new(0);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if !given.contains(&port) && port_is_free(port) {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no free port in 20000–31999")
}

/// True when this port can be bound.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    })
}

/// Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin, off the PATH.
fn postgres_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn wait_until_answers(name: &str, port: u16, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if answers(port) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("private {name} exited during start-up ({status})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("private {name} did not answer on port {port} within 30 s")
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL.
pub fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Stops processes recorded by dead runs and deletes their directories.
fn clean_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let Some(owner) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid_alive(owner) {
            continue;
        }
        if let Ok(pids) = std::fs::read_to_string(e.path().join("pids")) {
            for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if pid_alive(pid) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

impl Infra {
    /// Uses the default ports where they answer (unless `XTASK_PRIVATE_INFRA=1`), else starts
    /// private instances.
    pub fn ensure() -> Result<Infra> {
        Self::start(
            std::env::var("XTASK_PRIVATE_INFRA").is_ok_and(|v| v == "1"),
            false,
        )
    }

    /// Private instances of all three, whatever runs on the default ports, Postgres durable
    /// (the fault suite crashes them).
    pub fn private() -> Result<Infra> {
        Self::start(true, true)
    }

    /// Private instances of all three, Postgres tuned for speed as in `ensure` (load runs:
    /// nothing of the machine's own is touched, everything goes when they end).
    pub fn isolated() -> Result<Infra> {
        Self::start(true, false)
    }

    fn start(force_private: bool, durable: bool) -> Result<Infra> {
        let mut infra = Infra {
            pg_port: 5432,
            redis_port: 6379,
            nats_port: 4222,
            private: Vec::new(),
            crashed: Vec::new(),
            durable,
            dir: None,
            nats_cluster: None,
            cluster_in_use: false,
        };
        let need_pg = force_private || !answers(5432);
        let need_redis = force_private || !answers(6379);
        let need_nats = force_private || !answers(4222);
        if need_pg || need_redis || need_nats {
            infra.make_dir()?;
        }
        if need_pg {
            infra.pg_port = infra.start_postgres()?;
        }
        if need_redis {
            infra.redis_port = infra.start_redis()?;
        }
        if need_nats {
            infra.nats_port = infra.start_nats()?;
        }
        for (what, port, private) in [
            ("Postgres", infra.pg_port, need_pg),
            ("Redis", infra.redis_port, need_redis),
            ("NATS", infra.nats_port, need_nats),
        ] {
            let how = if private {
                "private"
            } else {
                "already running"
            };
            eprintln!("xtask: {what} on 127.0.0.1:{port} ({how})");
        }
        Ok(infra)
    }

    /// The directory private servers keep their data in (one per xtask process).
    fn make_dir(&mut self) -> Result<()> {
        if self.dir.is_some() {
            return Ok(());
        }
        let base = workspace_root().join("target").join("xtask");
        std::fs::create_dir_all(&base)?;
        clean_stale(&base);
        let dir = base.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        self.dir = Some(dir);
        Ok(())
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("ensure() creates the dir before starting anything")
    }

    fn track(&mut self, name: &'static str, mut child: Child, port: u16) -> Result<u16> {
        let pids = self.dir().join("pids");
        let mut recorded = std::fs::read_to_string(&pids).unwrap_or_default();
        recorded.push_str(&format!("{}\n", child.id()));
        std::fs::write(&pids, recorded)?;
        let waited = wait_until_answers(name, port, &mut child);
        self.private.push(Private { name, child, port });
        waited.map(|_| port)
    }

    /// Crashes private server `name` (`postgres`, `redis` or `nats`): SIGKILL; for Postgres
    /// SIGQUIT, its immediate shutdown — no checkpoint, crash recovery at the next start —
    /// since a SIGKILLed postmaster leaves backends holding its shared memory.
    pub fn crash(&mut self, name: &str) -> Result<()> {
        let i = self
            .private
            .iter()
            .position(|p| p.name == name)
            .with_context(|| format!("no private {name}"))?;
        let mut p = self.private.remove(i);
        if name == "postgres" {
            let ok = Command::new("kill")
                .args(["-QUIT", &p.child.id().to_string()])
                .status()?
                .success();
            if !ok {
                bail!("kill -QUIT postgres failed");
            }
        } else {
            p.child.kill().context("SIGKILL")?;
        }
        p.child.wait()?;
        self.crashed.push((p.name, p.port));
        Ok(())
    }

    /// Starts a crashed server again on its port, with its data; how long until it answered.
    pub fn restart(&mut self, name: &str) -> Result<Duration> {
        let i = self
            .crashed
            .iter()
            .position(|(n, _)| *n == name)
            .with_context(|| format!("{name} was not crashed"))?;
        let (name, port) = self.crashed.remove(i);
        let started = Instant::now();
        let child = match name {
            "postgres" => self.spawn_postgres(port)?,
            "redis" => self.spawn_redis(port)?,
            "nats" => self.spawn_nats(port)?,
            node => self.spawn_nats_node(node)?,
        };
        self.track(name, child, port)?;
        // Postgres listens before its crash recovery is done: wait until it takes queries.
        while name == "postgres" && !self.accepts_queries()? {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("postgres takes no queries 60 s after its restart");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(started.elapsed())
    }

    fn accepts_queries(&self) -> Result<bool> {
        Ok(Command::new("psql")
            .args(["-tA", "-h", "127.0.0.1", "-p", &self.pg_port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("psql")?
            .success())
    }

    /// Restarts whatever a scenario crashed and left down (one that failed half-way).
    pub fn restart_crashed(&mut self) -> Result<()> {
        while let Some((name, _)) = self.crashed.first().copied() {
            self.restart(name)?;
        }
        Ok(())
    }

    fn start_postgres(&mut self) -> Result<u16> {
        let bindir = postgres_bindir()
            .context("Postgres is not running and its server binaries are missing: apt-get install postgresql")?;
        let data = self.dir().join("pg");
        std::fs::create_dir_all(&data)?;
        let root = is_root();
        // initdb and postgres refuse to run as root: run them as the postgres user.
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir())
                .status()?
                .success();
            if !ok {
                bail!("chown of {} to postgres failed", self.dir().display());
            }
        }
        let mut initdb = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bindir.join("initdb"));
            c
        } else {
            Command::new(bindir.join("initdb"))
        };
        let out = initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = free_port()?;
        let child = self.spawn_postgres(port)?;
        self.track("postgres", child, port)
    }

    fn spawn_postgres(&self, port: u16) -> Result<Child> {
        let bindir = postgres_bindir().context("Postgres server binaries are missing")?;
        let data = self.dir().join("pg");
        let root = is_root();
        // setpriv execs postgres directly, so the pid we hold is the postmaster's.
        let mut cmd = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(bindir.join("postgres"));
            c
        } else {
            Command::new(bindir.join("postgres"))
        };
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                if self.durable {
                    "synchronous_commit=on"
                } else {
                    "synchronous_commit=off"
                },
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir().join("postgres.log"))?,
            ));
        cmd.spawn().context("starting postgres")
    }

    fn start_redis(&mut self) -> Result<u16> {
        let port = free_port()?;
        let child = self.spawn_redis(port)?;
        self.track("redis", child, port)
    }

    fn spawn_redis(&self, port: u16) -> Result<Child> {
        let bin = which("redis-server").context(
            "Redis is not running and redis-server is missing: apt-get install redis-server",
        )?;
        Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")
    }

    fn start_nats(&mut self) -> Result<u16> {
        let port = free_port()?;
        let child = self.spawn_nats(port)?;
        self.track("nats", child, port)
    }

    fn spawn_nats(&self, port: u16) -> Result<Child> {
        let bin = which("nats-server").context(
            "NATS is not running and nats-server is missing: apt-get install nats-server",
        )?;
        let store = self.dir().join("nats");
        Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")
    }

    /// Points the services at a three-node NATS cluster (started on first use, JetStream on
    /// each, streams kept at R3: [`Infra::nats_replicas`]) instead of the single NATS, or
    /// back (`false`).
    pub fn use_nats_cluster(&mut self, on: bool) -> Result<()> {
        if on && self.nats_cluster.is_none() {
            self.make_dir()?;
            let mut ports = [(0, 0, 0); 3];
            for p in &mut ports {
                *p = (free_port()?, free_port()?, free_port()?);
            }
            self.nats_cluster = Some(ports);
            for node in NATS_NODES {
                let child = self.spawn_nats_node(node)?;
                let port = self.node_ports(node)?.0;
                self.track(node, child, port)?;
            }
            self.wait_nats_cluster_healthy()?;
        }
        self.cluster_in_use = on;
        Ok(())
    }

    /// Copies of each stream the services should ask for: 3 on the cluster, else 1.
    pub fn nats_replicas(&self) -> usize {
        if self.cluster_in_use { 3 } else { 1 }
    }

    /// Until every node is healthy and knows the JetStream meta leader of all three (before
    /// that, creating a stream times out).
    pub fn wait_nats_cluster_healthy(&self) -> Result<()> {
        let ready = |addr: &str| {
            let get = |path| crate::client::request(addr, "GET", path, "", &[], "");
            get("/healthz").is_ok_and(|(status, _)| status == 200)
                && get("/jsz")
                    .ok()
                    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                    .is_some_and(|jsz| {
                        let meta = &jsz["meta_cluster"];
                        meta["leader"].as_str().is_some_and(|l| !l.is_empty())
                            && meta["cluster_size"] == 3
                    })
        };
        let started = Instant::now();
        for (_, _, monitor) in self.nats_cluster.iter().flatten() {
            while !ready(&format!("127.0.0.1:{monitor}")) {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "the NATS cluster has no JetStream leader after 60 s (logs: {})",
                        self.dir().display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn node_ports(&self, node: &str) -> Result<(u16, u16, u16)> {
        let i = NATS_NODES
            .iter()
            .position(|n| *n == node)
            .with_context(|| format!("no NATS node {node}"))?;
        let ports = self.nats_cluster.context("no NATS cluster")?;
        Ok(ports[i])
    }

    fn spawn_nats_node(&self, node: &str) -> Result<Child> {
        let bin =
            which("nats-server").context("nats-server is missing: apt-get install nats-server")?;
        let (client, route, monitor) = self.node_ports(node)?;
        let routes: Vec<String> = self
            .nats_cluster
            .iter()
            .flatten()
            .filter(|(_, r, _)| *r != route)
            .map(|(_, r, _)| format!("nats://127.0.0.1:{r}"))
            .collect();
        let log = std::fs::File::create(self.dir().join(format!("{node}.log")))?;
        Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &client.to_string(), "-js", "-sd"])
            .arg(self.dir().join(node))
            .args(["--server_name", node, "--cluster_name", "xtask"])
            .args(["--cluster", &format!("nats://127.0.0.1:{route}")])
            .args(["--routes", &routes.join(",")])
            .args(["-m", &monitor.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting nats-server")
    }

    pub fn database_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.pg_port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    /// The single NATS, or every node of the cluster when it is in use.
    pub fn nats_url(&self) -> String {
        match self.nats_cluster {
            Some(nodes) if self.cluster_in_use => nodes
                .iter()
                .map(|(client, _, _)| format!("nats://127.0.0.1:{client}"))
                .collect::<Vec<_>>()
                .join(","),
            _ => format!("nats://127.0.0.1:{}", self.nats_port),
        }
    }

    /// What the tests read (see test-support).
    pub fn test_env(&self) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), self.database_url("postgres")),
            ("REDIS_URL".into(), self.redis_url()),
            ("NATS_URL".into(), self.nats_url()),
        ]
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        for p in self.private.iter_mut().rev() {
            terminate(&mut p.child, Duration::from_secs(10));
            eprintln!("xtask: stopped private {}", p.name);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
