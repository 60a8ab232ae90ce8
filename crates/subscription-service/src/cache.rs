//! Entitlement answers cached in Redis, one hash per tenant (`sub:ent:{tenant}`, field
//! `feature|user`), so any change to a tenant drops all its answers with one `DEL`.
//!
//! A check racing a change can compute from the old state and store it after the `DEL`; to
//! close that window every invalidation is repeated shortly after (delayed double delete), and
//! the TTL bounds anything left. Redis being down only costs speed: answers are computed from
//! Postgres and the failure is logged.

use std::time::Duration;

use prost::Message;
use redis::AsyncCommands;
use rpc::subscription::v1::Entitlement;

/// How long after a change the invalidation is repeated.
const SECOND_DELETE_AFTER: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct EntitlementCache {
    redis: redis::aio::ConnectionManager,
    ttl: Duration,
}

impl std::fmt::Debug for EntitlementCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntitlementCache")
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn key(tenant: &str) -> String {
    format!("sub:ent:{tenant}")
}

fn field(feature: &str, user: Option<&str>) -> String {
    format!("{feature}|{}", user.unwrap_or(""))
}

impl EntitlementCache {
    pub fn new(redis: redis::aio::ConnectionManager, ttl: Duration) -> Self {
        EntitlementCache { redis, ttl }
    }

    pub async fn get(
        &self,
        tenant: &str,
        feature: &str,
        user: Option<&str>,
    ) -> Option<Entitlement> {
        let mut r = self.redis.clone();
        match r
            .hget::<_, _, Option<Vec<u8>>>(key(tenant), field(feature, user))
            .await
        {
            Ok(Some(bytes)) => Entitlement::decode(bytes.as_slice()).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "entitlement cache read failed; computing from Postgres");
                None
            }
        }
    }

    pub async fn put(&self, tenant: &str, feature: &str, user: Option<&str>, e: &Entitlement) {
        let mut r = self.redis.clone();
        let k = key(tenant);
        let res: redis::RedisResult<()> = redis::pipe()
            .hset(&k, field(feature, user), e.encode_to_vec())
            .ignore()
            .expire(&k, self.ttl.as_secs() as i64)
            .ignore()
            .query_async(&mut r)
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "entitlement cache write failed");
        }
    }

    /// Drops every cached answer of `tenants`, now and once more shortly after.
    pub fn invalidate(&self, tenants: Vec<String>) {
        if tenants.is_empty() {
            return;
        }
        let r = self.redis.clone();
        tokio::spawn(async move {
            for round in 0..2 {
                if round == 1 {
                    tokio::time::sleep(SECOND_DELETE_AFTER).await;
                }
                let keys: Vec<String> = tenants.iter().map(|t| key(t)).collect();
                let mut c = r.clone();
                if let Err(e) = c.del::<_, ()>(keys).await {
                    tracing::warn!(error = %e, "entitlement cache invalidation failed (TTL bounds staleness)");
                }
            }
        });
    }

    /// Drops `tenants` now and waits for it (callers that must see the effect at once).
    pub async fn invalidate_now(&self, tenants: &[String]) {
        let keys: Vec<String> = tenants.iter().map(|t| key(t)).collect();
        if keys.is_empty() {
            return;
        }
        let mut c = self.redis.clone();
        if let Err(e) = c.del::<_, ()>(keys).await {
            tracing::warn!(error = %e, "entitlement cache invalidation failed (TTL bounds staleness)");
        }
        self.invalidate(tenants.to_vec());
    }
}
