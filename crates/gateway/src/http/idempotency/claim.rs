//! A claimed `Idempotency-Key`: a lease in Redis held by one request, renewed while it runs
//! and replaced by its outcome (or released) — each step only while the key still holds
//! this request's claim, so a retry that claimed the key after this claim lapsed is never
//! overwritten or released by it.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{Record, TTL_SECS};

/// A claimed key: where it is, what holds it, for how long.
pub(super) struct Claim {
    pub redis: ConnectionManager,
    pub key: String,
    pub value: String,
    pub lease: Duration,
}

/// Replaces the claim with the finished record for 24 hours — or, when the claim lapsed and
/// nobody claimed the key since, sets it — but never overwrites another request's claim.
const STORE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
";

/// Deletes the key only while it still holds this claim.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl Claim {
    /// Stores `record` in place of the claim, or (`None`) releases the claim.
    pub async fn settle(&mut self, record: Option<Record>) {
        let done = match record {
            Some(r) => {
                let stored = serde_json::to_string(&r).expect("a record always serializes");
                redis::Script::new(STORE_LUA)
                    .key(&self.key)
                    .arg(&self.value)
                    .arg(stored)
                    .arg(TTL_SECS)
                    .invoke_async::<i64>(&mut self.redis)
                    .await
            }
            None => {
                redis::Script::new(RELEASE_LUA)
                    .key(&self.key)
                    .arg(&self.value)
                    .invoke_async::<i64>(&mut self.redis)
                    .await
            }
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "could not settle the idempotency claim");
        }
    }
}

/// Keeps a claim alive while its request runs; dropped (the request ended) it stops — and
/// with a gateway that died, the claim lapses on its own.
pub(super) struct Renewal(tokio::task::JoinHandle<()>);

/// Extends the key's life only while it still holds this claim: never a lapsed one, never
/// the finished record that replaced it (whose 24 hours a late renewal would cut short).
const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

impl Renewal {
    pub fn start(claim: &Claim) -> Self {
        let (mut redis, key, claim, lease) = (
            claim.redis.clone(),
            claim.key.clone(),
            claim.value.clone(),
            claim.lease,
        );
        Renewal(tokio::spawn(async move {
            let script = redis::Script::new(RENEW_LUA);
            let mut every = tokio::time::interval(lease / 3);
            every.tick().await;
            loop {
                every.tick().await;
                let _: Result<i64, _> = script
                    .key(&key)
                    .arg(&claim)
                    .arg(lease.as_millis() as u64)
                    .invoke_async(&mut redis)
                    .await;
            }
        }))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}
