//! Tenants by id, remembered in memory: the platform's most frequent read (the gateway asks
//! for a tenant on tenant-scoped requests) and one of its rarest writes.
//!
//! Staying correct:
//! - Every update or delete of a tenant sends `NOTIFY tenant_changed, '<id>'` from a trigger
//!   (`migrations/user/0103_tenant_changed.sql`), delivered when the writing transaction
//!   commits. Every replica listens and forgets that tenant ([`TenantCache::listen`]).
//! - Nothing is served from memory while the replica is not listening, and everything is
//!   forgotten whenever its listening connection is (re)established: notifications sent
//!   while it was away are lost.
//! - The replica that wrote forgets at once, before it answers ([`TenantCache::forget`]), so
//!   a client reads its own writes there; other replicas catch up when the notification
//!   arrives (milliseconds after the commit).
//! - A read that raced a write cannot put the old row back: rows fetched before a forget are
//!   not stored (a generation counter, compared under the write lock).
//! - Entries expire after `TENANT_CACHE_SECS` anyway, as a last line of defence; 0 turns the
//!   cache off. Unknown ids are never remembered, so a tenant created a moment ago is found.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ids::TenantId;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::tenants::{self, TenantRow};

/// The channel the trigger notifies on.
pub const CHANNEL: &str = "tenant_changed";

/// More tenants than this and the memory is emptied and refilled (bounded, and simple).
const MAX_ENTRIES: usize = 50_000;

/// Cheap to clone; clones share the memory.
#[derive(Clone)]
pub struct TenantCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TenantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCache")
            .field("ttl", &self.inner.ttl)
            .field("entries", &self.len())
            .field("listening", &self.is_listening())
            .finish()
    }
}

/// A remembered row and when it was read.
type Entry = (Arc<TenantRow>, Instant);

struct Inner {
    ttl: Duration,
    entries: RwLock<HashMap<Box<str>, Entry>>,
    /// Bumped by every forget: a read that began before it must not store its row.
    generation: AtomicU64,
    listening: AtomicBool,
}

impl TenantCache {
    /// A cache whose entries live at most `ttl` (zero: every read goes to Postgres).
    pub fn new(ttl: Duration) -> Self {
        TenantCache {
            inner: Arc::new(Inner {
                ttl,
                entries: RwLock::new(HashMap::new()),
                generation: AtomicU64::new(0),
                listening: AtomicBool::new(false),
            }),
        }
    }

    fn enabled(&self) -> bool {
        !self.inner.ttl.is_zero() && self.inner.listening.load(Ordering::Acquire)
    }

    /// The tenant `id`, from memory when it is known and fresh, else from Postgres.
    pub async fn get(
        &self,
        pool: &PgPool,
        id: &TenantId,
    ) -> Result<Option<Arc<TenantRow>>, sqlx::Error> {
        if !self.enabled() {
            return Ok(tenants::get(pool, id).await?.map(Arc::new));
        }
        let known = self
            .inner
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id.as_str())
            .filter(|(_, at)| at.elapsed() < self.inner.ttl)
            .map(|(row, _)| Arc::clone(row));
        if known.is_some() {
            metrics::counter!("tenant_cache_total", "result" => "hit").increment(1);
            return Ok(known);
        }
        metrics::counter!("tenant_cache_total", "result" => "miss").increment(1);
        let before = self.inner.generation.load(Ordering::Acquire);
        let Some(row) = tenants::get(pool, id).await?.map(Arc::new) else {
            return Ok(None);
        };
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if self.inner.generation.load(Ordering::Acquire) == before && self.enabled() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(id.as_str().into(), (Arc::clone(&row), Instant::now()));
        }
        Ok(Some(row))
    }

    /// Forgets tenant `id` (after a write that changed it).
    pub fn forget(&self, id: &str) {
        self.invalidate(|entries| {
            entries.remove(id);
        });
    }

    fn forget_all(&self) {
        self.invalidate(HashMap::clear);
    }

    /// Applies `change` under the write lock and bumps the generation, so reads already in
    /// flight do not store what they fetched.
    fn invalidate(&self, change: impl FnOnce(&mut HashMap<Box<str>, Entry>)) {
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|p| p.into_inner());
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        change(&mut entries);
    }

    /// How many tenants are remembered.
    pub fn len(&self) -> usize {
        self.inner.entries.read().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether reads may be served from memory now (listening for changes).
    pub fn is_listening(&self) -> bool {
        self.enabled()
    }

    /// Listens for changes until `stop`; the cache serves from memory only while this runs
    /// and is connected. Reconnects with back-off; every (re)connection starts from empty.
    pub async fn listen(self, pool: PgPool, stop: CancellationToken) {
        if self.inner.ttl.is_zero() {
            return;
        }
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(CHANNEL).await {
                    Ok(()) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "tenant cache: LISTEN failed; reading Postgres directly");
                        sleep_or_stop(&stop, &mut backoff).await;
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "tenant cache: no listener connection; reading Postgres directly");
                    sleep_or_stop(&stop, &mut backoff).await;
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            self.forget_all();
            self.inner.listening.store(true, Ordering::Release);
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    n = listener.try_recv() => n,
                };
                match next {
                    Ok(Some(n)) => self.forget(n.payload()),
                    // The connection dropped: notifications may have been missed.
                    Ok(None) | Err(_) => break,
                }
            }
            self.inner.listening.store(false, Ordering::Release);
            self.forget_all();
        }
    }
}

async fn sleep_or_stop(stop: &CancellationToken, backoff: &mut Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(10));
}
