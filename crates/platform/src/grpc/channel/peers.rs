//! Which peers a channel calls: a fixed list (`http://a:1,http://b:1`), or every address a DNS
//! name resolves to (`dns://billing:50053`), looked up again every [`REFRESH`] — a Kubernetes
//! headless Service names each ready pod, so calls spread over all of them and follow the
//! pods as they come and go. (A ClusterIP Service would hand the channel one long-lived HTTP/2
//! connection to one pod.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http::uri::Authority;
use tonic::Status;

use super::{InvalidPeer, Shared};

/// How often a DNS name is looked up again.
pub(super) const REFRESH: Duration = Duration::from_secs(5);

pub(super) enum Peers {
    Fixed(Arc<[Arc<Shared>]>),
    Dns(Arc<Resolved>),
}

impl Peers {
    /// The peers of `url`: `dns://host:port`, or comma-separated `http://host:port`s.
    pub(super) fn parse(url: &str) -> Result<Peers, InvalidPeer> {
        if let Some(name) = url.trim().strip_prefix("dns://") {
            let authority: Authority = name
                .trim_end_matches('/')
                .parse()
                .map_err(|e| InvalidPeer(format!("{url:?} is not dns://host:port: {e}")))?;
            let port = authority
                .port_u16()
                .ok_or_else(|| InvalidPeer(format!("{url:?} names no port")))?;
            return Ok(Peers::Dns(Arc::new(Resolved {
                host: authority.host().to_string(),
                port,
                current: RwLock::new(Arc::from(Vec::new())),
                resolved_at: Mutex::new(None),
                resolving: AtomicBool::new(false),
            })));
        }
        let peers = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| Shared::lazy(u).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        if peers.is_empty() {
            return Err(InvalidPeer(format!("{url:?} names no peer")));
        }
        Ok(Peers::Fixed(peers.into()))
    }

    /// The peers to call now.
    pub(super) async fn current(&self) -> Result<Arc<[Arc<Shared>]>, Status> {
        match self {
            Peers::Fixed(p) => Ok(p.clone()),
            Peers::Dns(r) => r.current().await,
        }
    }

    /// Their names, for messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Peers::Fixed(p) => {
                let names: Vec<&str> = p.iter().map(|p| p.authority.as_str()).collect();
                names.join(",")
            }
            Peers::Dns(r) => format!("dns://{}:{}", r.host, r.port),
        }
    }
}

pub(super) struct Resolved {
    host: String,
    port: u16,
    current: RwLock<Arc<[Arc<Shared>]>>,
    resolved_at: Mutex<Option<Instant>>,
    /// Set while a background lookup runs, so there is one at a time.
    resolving: AtomicBool,
}

impl Resolved {
    /// The addresses as last resolved; a first call waits for the lookup, later ones never do
    /// (a stale list is refreshed in the background).
    async fn current(self: &Arc<Self>) -> Result<Arc<[Arc<Shared>]>, Status> {
        let list = self.list();
        if list.is_empty() {
            self.refresh().await;
            let list = self.list();
            if list.is_empty() {
                return Err(Status::unavailable(format!(
                    "{}:{} resolves to no address",
                    self.host, self.port
                )));
            }
            return Ok(list);
        }
        let stale = lock(&self.resolved_at).is_none_or(|t| t.elapsed() >= REFRESH);
        if stale && !self.resolving.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move {
                me.refresh().await;
                me.resolving.store(false, Ordering::Release);
            });
        }
        Ok(list)
    }

    fn list(&self) -> Arc<[Arc<Shared>]> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Looks the name up; peers still resolved keep their connections. A failed lookup keeps
    /// the last list (a DNS hiccup must not empty the channel).
    async fn refresh(&self) {
        let found = tokio::net::lookup_host((self.host.as_str(), self.port)).await;
        *lock(&self.resolved_at) = Some(Instant::now());
        let mut addrs: Vec<SocketAddr> = match found {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::warn!(host = %self.host, error = %e, "resolving gRPC peers failed; keeping the last ones");
                return;
            }
        };
        addrs.sort();
        addrs.dedup();
        let old = self.list();
        let next: Vec<Arc<Shared>> = addrs
            .iter()
            .filter_map(|a| {
                let authority: Authority = a.to_string().parse().ok()?;
                Some(
                    old.iter()
                        .find(|p| p.authority == authority)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Shared::new(authority))),
                )
            })
            .collect();
        if next.is_empty() && !old.is_empty() {
            tracing::warn!(host = %self.host, "gRPC peers resolve to no address; keeping the last ones");
            return;
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next.into();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
