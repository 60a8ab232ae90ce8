//! Entitlement answers cached in Redis, one hash per tenant (`sub:ent:{tenant}`, field
//! `feature|user`), so any change to a tenant drops all its answers with one `DEL`.
//!
//! A check racing a change can compute from the old state and store it after the `DEL`; to
//! close that window every invalidation is repeated shortly after (delayed double delete), and
//! the TTL bounds anything left. Redis being down only costs speed: answers are computed from
//! Postgres and the failure is logged.

use std::time::Duration;

use ids::TenantId;
use prost::Message;
use redis::AsyncCommands;
use rpc::subscription::v1::Entitlement;

/// How long after a change the invalidation is repeated.
const SECOND_DELETE_AFTER: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct EntitlementCache {
    redis: redis::aio::ConnectionManager,
    ttl: Duration,
    /// `EVENT_PREFIX` plus `:` (or empty): stacks sharing one Redis stay apart.
    namespace: String,
}

impl std::fmt::Debug for EntitlementCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntitlementCache")
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn field(feature: &str, user: Option<&str>) -> String {
    format!("{feature}|{}", user.unwrap_or(""))
}

impl EntitlementCache {
    pub fn new(redis: redis::aio::ConnectionManager, ttl: Duration, prefix: &str) -> Self {
        let namespace = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}:")
        };
        EntitlementCache {
            redis,
            ttl,
            namespace,
        }
    }

    fn key(&self, tenant: &TenantId) -> String {
        format!("{}sub:ent:{tenant}", self.namespace)
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        feature: &str,
        user: Option<&str>,
    ) -> Option<Entitlement> {
        let mut r = self.redis.clone();
        match r
            .hget::<_, _, Option<Vec<u8>>>(self.key(tenant), field(feature, user))
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

    pub async fn put(&self, tenant: &TenantId, feature: &str, user: Option<&str>, e: &Entitlement) {
        let mut r = self.redis.clone();
        let k = self.key(tenant);
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

    async fn delete(redis: &redis::aio::ConnectionManager, keys: Vec<String>) {
        let mut c = redis.clone();
        if let Err(e) = c.del::<_, ()>(keys).await {
            tracing::warn!(error = %e, "entitlement cache invalidation failed (TTL bounds staleness)");
        }
    }

    /// Drops every cached answer of `tenants`, now and once more shortly after.
    pub fn invalidate(&self, tenants: Vec<TenantId>) {
        if tenants.is_empty() {
            return;
        }
        let keys: Vec<String> = tenants.iter().map(|t| self.key(t)).collect();
        let r = self.redis.clone();
        tokio::spawn(async move {
            Self::delete(&r, keys.clone()).await;
            tokio::time::sleep(SECOND_DELETE_AFTER).await;
            Self::delete(&r, keys).await;
        });
    }

    /// Drops `tenants` now and waits for it (callers that must see the effect at once), then
    /// once more shortly after.
    pub async fn invalidate_now(&self, tenants: &[TenantId]) {
        if tenants.is_empty() {
            return;
        }
        Self::delete(&self.redis, tenants.iter().map(|t| self.key(t)).collect()).await;
        let keys: Vec<String> = tenants.iter().map(|t| self.key(t)).collect();
        let r = self.redis.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_DELETE_AFTER).await;
            Self::delete(&r, keys).await;
        });
    }
}
