//! Rate limits: per caller in this process, and per tenant across every gateway replica.
//!
//! Both use GCRA (a leaky bucket kept as one "theoretical arrival time" per key): `burst`
//! requests at once, refilled at `per_sec`. The per-tenant limit lives in Redis and is
//! updated by one Lua script, so replicas share it atomically. A replica does not ask Redis
//! for every request: it leases a few tokens at a time (about a tenth of a second's worth, at
//! most 100 and a quarter of the burst) and spends them locally for up to 100 ms; unspent
//! tokens lapse, so the shared limit can only err on the strict side. If Redis is down the gateway
//! keeps serving on the local limit alone and says so in the log, never with a 500.
//! The per-tenant budget is the tenant's plan's (`rate_limit` on the plan, asked of the
//! subscription service and cached for a minute per replica), else `RATE_LIMIT_TENANT_*`.
//! Answers over the limit are 429 problems with `Retry-After`; every limited route carries
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use platform::Problem;
use platform::cache::Breaker;
use platform::grpc::Channel;
use redis::aio::ConnectionManager;
use rpc::subscription::v1::GetTenantLimitsRequest;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;

use crate::auth::Identity;
use crate::expiring::Expiring;

/// A budget: `burst` at once, `per_sec` sustained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub per_sec: u32,
    pub burst: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// Until the next request would be allowed (zero when allowed).
    pub retry_after: Duration,
}

/// The per-caller budget of this process: `governor`'s keyed GCRA (under contention it
/// measured 0.61× the time per check of the mutex-guarded map this gateway had before:
/// `cargo xtask bench limiter`, BENCHMARKS.md). One budget for every caller.
pub struct CallerLimits {
    limiter: governor::RateLimiter<
        String,
        DefaultKeyedStateStore<String>,
        DefaultClock,
        StateInformationMiddleware,
    >,
    quota: Quota,
}

impl std::fmt::Debug for CallerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerLimits")
            .field("quota", &self.quota)
            .field("callers", &self.limiter.len())
            .finish()
    }
}

/// Every this many checks (of one thread), callers whose buckets are full again are forgotten (they carry no
/// state worth keeping), so memory follows the callers seen recently.
const FORGET_EVERY: u64 = 1 << 16;

impl CallerLimits {
    pub fn new(quota: Quota) -> Self {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        CallerLimits {
            limiter: governor::RateLimiter::keyed(
                governor::Quota::per_second(nz(quota.per_sec)).allow_burst(nz(quota.burst)),
            )
            .with_middleware::<StateInformationMiddleware>(),
            quota,
        }
    }

    /// Spends one token of `caller`'s bucket, if there is one.
    pub fn check(&self, caller: &String) -> Decision {
        // Counted per thread: a shared counter would bounce between cores on every request.
        thread_local!(static CHECKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        if CHECKS.with(|c| {
            c.set(c.get().wrapping_add(1));
            c.get() % FORGET_EVERY == 0
        }) {
            self.limiter.retain_recent();
        }
        let q = self.quota;
        let interval = Duration::from_nanos(1_000_000_000 / u64::from(q.per_sec.max(1)));
        match self.limiter.check_key(caller) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: q.burst,
                    remaining,
                    reset: interval * q.burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Decision {
                    allowed: false,
                    limit: q.burst,
                    remaining: 0,
                    reset: wait + interval * q.burst.saturating_sub(1),
                    retry_after: wait,
                }
            }
        }
    }
}

/// Atomic GCRA in Redis granting up to `ARGV[3]` tokens at once; times in microseconds from
/// the server's clock, so replicas with skewed clocks still agree. Returns `{granted,
/// remaining, reset}` when at least one token is granted, else `{0, retry_after, reset}`.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local cap = interval * tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((cap - (tat - now)) / interval)
if room < 1 then
  local diff = tat + interval - now
  return {0, diff - cap, diff - interval}
end
local n = math.min(want, room)
local new_tat = tat + n * interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {n, room - n, new_tat - now}
";

/// How long leased tenant tokens may be spent locally before they lapse.
const LEASE_TTL: Duration = Duration::from_millis(100);
/// How long Redis is skipped after a failed call before one call probes it again.
pub const REDIS_COOL_DOWN: Duration = Duration::from_secs(1);

/// Tokens of a tenant's shared budget held by this replica.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u32,
    expires: Instant,
    /// The shared budget's state when leased, for the headers.
    at_grant: Decision,
}

/// How long a tenant's plan quota is trusted before it is asked again.
const PLAN_QUOTA_TTL: Duration = Duration::from_secs(60);
/// After a failed lookup, the default is used this long before trying again.
const PLAN_QUOTA_RETRY: Duration = Duration::from_secs(5);

/// Tenants' plan-sized quotas, from the subscription service, cached per replica.
#[derive(Clone)]
pub struct PlanQuotas {
    client: SubscriptionServiceClient<Channel>,
    cache: Expiring<Quota>,
}

impl PlanQuotas {
    pub fn new(client: SubscriptionServiceClient<Channel>) -> Self {
        PlanQuotas {
            client,
            cache: Expiring::new(100_000),
        }
    }

    /// The tenant's quota: its plan's, else `default`. Never fails: a lookup error means the
    /// default for a few seconds.
    async fn get(&self, id: &Identity, default: Quota) -> Quota {
        let now = Instant::now();
        if let Some(q) = self.cache.get(&id.tenant_id, now) {
            return q;
        }
        let mut req = tonic::Request::new(GetTenantLimitsRequest {
            tenant_id: id.tenant_id.clone(),
        });
        id.apply(&mut req);
        req.set_timeout(Duration::from_millis(500));
        let (quota, ttl) = match self.client.clone().get_tenant_limits(req).await {
            Ok(r) => (
                r.into_inner().rate_limit.map_or(default, |l| Quota {
                    per_sec: l.per_sec.max(1),
                    burst: l.burst.max(1),
                }),
                PLAN_QUOTA_TTL,
            ),
            Err(e) => {
                tracing::debug!(error = %e, tenant = %id.tenant_id, "plan quota lookup failed; using the default");
                (default, PLAN_QUOTA_RETRY)
            }
        };
        self.cache.insert(&id.tenant_id, quota, now + ttl, now);
        quota
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    pub callers: Arc<CallerLimits>,
    pub per_caller: Quota,
    pub per_tenant: Quota,
    pub redis: Option<ConnectionManager>,
    script: Arc<redis::Script>,
    /// Shared with the idempotency layer: Redis down is skipped, not waited on.
    redis_health: Arc<Breaker>,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
    plans: Option<PlanQuotas>,
    /// Prepended to Redis keys, so stacks sharing one Redis stay apart.
    namespace: String,
}

impl RateLimiter {
    pub fn new(
        per_caller: Quota,
        per_tenant: Quota,
        redis: Option<ConnectionManager>,
        plans: Option<PlanQuotas>,
    ) -> Self {
        RateLimiter {
            callers: Arc::new(CallerLimits::new(per_caller)),
            per_caller,
            per_tenant,
            redis,
            script: Arc::new(redis::Script::new(GCRA_LUA)),
            redis_health: Arc::new(Breaker::new(REDIS_COOL_DOWN)),
            leases: Arc::new(Mutex::new(HashMap::new())),
            plans,
            namespace: String::new(),
        }
    }

    /// Shares `breaker` (Redis's health) with the other users of the same Redis.
    pub fn with_breaker(mut self, breaker: Arc<Breaker>) -> Self {
        self.redis_health = breaker;
        self
    }

    /// Prefixes this limiter's Redis keys with `prefix` (`EVENT_PREFIX`), when not empty.
    pub fn with_namespace(mut self, prefix: &str) -> Self {
        self.namespace = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}:")
        };
        self
    }

    async fn tenant_quota(&self, id: &Identity) -> Quota {
        match &self.plans {
            Some(p) => p.get(id, self.per_tenant).await,
            None => self.per_tenant,
        }
    }

    /// Tokens asked of Redis per call: ~0.1 s of the rate, at most 100 and a quarter of the
    /// burst, at least 1.
    fn lease_size(q: Quota) -> u32 {
        (q.per_sec / 10).min(100).min(q.burst / 4).max(1)
    }

    /// Spends one leased token of `tenant`, if any is left and fresh.
    fn spend_leased(&self, tenant: &str, now: Instant) -> Option<Decision> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let lease = leases.get_mut(tenant)?;
        if lease.tokens == 0 || lease.expires <= now {
            leases.remove(tenant);
            return None;
        }
        lease.tokens -= 1;
        Some(Decision {
            remaining: lease.at_grant.remaining + lease.tokens,
            ..lease.at_grant
        })
    }

    async fn tenant(&self, tenant: &str, quota: Quota) -> Option<Decision> {
        let now = Instant::now();
        if let Some(d) = self.spend_leased(tenant, now) {
            return Some(d);
        }
        let mut conn = self.redis.clone()?;
        if !self.redis_health.allows(now) {
            return None;
        }
        let interval_us = (1_000_000 / u64::from(quota.per_sec.max(1))).max(1);
        let r: Result<Vec<i64>, _> = self
            .script
            .key(format!("{}rl:tenant:{tenant}", self.namespace))
            .arg(interval_us)
            .arg(quota.burst.max(1))
            .arg(Self::lease_size(quota))
            .invoke_async(&mut conn)
            .await;
        match r {
            Ok(v) if v.len() == 3 => {
                if self.redis_health.succeeded() {
                    tracing::info!("Redis is back: shared tenant rate limits restored");
                }
                let us = |n: i64| Duration::from_micros(n.max(0) as u64);
                Some(if v[0] >= 1 {
                    let granted = v[0] as u32;
                    let d = Decision {
                        allowed: true,
                        limit: quota.burst,
                        remaining: v[1].max(0) as u32,
                        reset: us(v[2]),
                        retry_after: Duration::ZERO,
                    };
                    if granted > 1 {
                        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                        if leases.len() > 100_000 {
                            leases.retain(|_, l| l.expires > now);
                        }
                        let lease = leases.entry(tenant.to_string()).or_insert(Lease {
                            tokens: 0,
                            expires: now,
                            at_grant: d,
                        });
                        lease.tokens += granted - 1;
                        lease.expires = now + LEASE_TTL;
                        lease.at_grant = d;
                    }
                    Decision {
                        remaining: d.remaining + granted - 1,
                        ..d
                    }
                } else {
                    Decision {
                        allowed: false,
                        limit: quota.burst,
                        remaining: 0,
                        reset: us(v[2]),
                        retry_after: us(v[1]),
                    }
                })
            }
            Ok(_) | Err(_) => {
                if self.redis_health.failed(Instant::now()) {
                    tracing::warn!(
                        "Redis unavailable: tenant rate limits fall back to this replica's local limit"
                    );
                }
                None
            }
        }
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

pub fn set_headers(h: &mut HeaderMap, d: &Decision) {
    for (name, value) in [
        (LIMIT, u64::from(d.limit)),
        (REMAINING, u64::from(d.remaining)),
        (RESET, secs_ceil(d.reset)),
    ] {
        h.insert(name, HeaderValue::from(value));
    }
}

pub(crate) fn too_many(d: &Decision, scope: &str) -> Response {
    let mut resp = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        .with_detail(format!(
            "{scope} rate limit exceeded; retry after the Retry-After delay"
        ))
        .into_response();
    set_headers(resp.headers_mut(), d);
    resp.headers_mut().insert(
        "retry-after",
        HeaderValue::from(secs_ceil(d.retry_after).max(1)),
    );
    resp
}

/// The tighter of two decisions, for the headers.
fn tighter(a: Decision, b: Decision) -> Decision {
    if b.remaining < a.remaining { b } else { a }
}

impl RateLimiter {
    /// Admits a request of `identity` (or, anonymous, from `peer`) against the per-caller
    /// and per-tenant limits: the decision to show in the response's `RateLimit-*` headers
    /// ([`set_headers`]), or the 429 to answer.
    pub async fn admit(
        &self,
        identity: Option<&Identity>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Decision, Response> {
        let caller_key = match (identity, peer) {
            (Some(i), _) => format!("{}:{}", i.tenant_id, i.subject),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "ip:unknown".to_string(),
        };
        let local = self.callers.check(&caller_key);
        if !local.allowed {
            return Err(too_many(&local, "caller"));
        }
        let mut shown = local;
        if let Some(i) = identity
            && let Some(t) = self.tenant(&i.tenant_id, self.tenant_quota(i).await).await
        {
            if !t.allowed {
                return Err(too_many(&t, "tenant"));
            }
            shown = tighter(local, t);
        }
        Ok(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas leasing from one Redis budget never let more through than the budget
    /// (plus what refills while the test runs), and spend their leases before asking again.
    #[tokio::test]
    async fn leased_tenant_tokens_respect_the_shared_budget() {
        let redis = platform::cache::connect(&test_support::redis_url())
            .await
            .expect("tests need Redis");
        let q = Quota {
            per_sec: 50,
            burst: 20,
        };
        let caller = Quota {
            per_sec: 1000,
            burst: 1000,
        };
        let replicas = [
            RateLimiter::new(caller, q, Some(redis.clone()), None),
            RateLimiter::new(caller, q, Some(redis.clone()), None),
        ];
        assert_eq!(RateLimiter::lease_size(q), 5);
        let tenant = format!("ten_lease_{}", test_support::unique_prefix());
        let started = Instant::now();
        let mut allowed = 0;
        for i in 0..60 {
            let d = replicas[i % 2]
                .tenant(&tenant, q)
                .await
                .expect("Redis answers");
            if d.allowed {
                allowed += 1;
            } else {
                assert!(d.retry_after > Duration::ZERO);
            }
        }
        let refilled = (started.elapsed().as_millis() / 20) as u32;
        assert!(
            (20..=20 + refilled + 1).contains(&allowed),
            "{allowed} allowed, {refilled} refilled"
        );
        // A lease is spent locally: five calls, one Redis grant.
        let solo = RateLimiter::new(caller, q, Some(redis), None);
        let other = format!("ten_lease_{}", test_support::unique_prefix());
        let first = solo.tenant(&other, q).await.unwrap();
        assert_eq!(first.remaining, 19);
        for left in (15..19).rev() {
            assert_eq!(
                solo.spend_leased(&other, Instant::now()).unwrap().remaining,
                left
            );
        }
        assert!(solo.spend_leased(&other, Instant::now()).is_none());
    }

    #[test]
    fn callers_get_a_burst_then_wait_and_are_independent() {
        let limits = CallerLimits::new(Quota {
            per_sec: 1,
            burst: 3,
        });
        let (a, b) = ("ten_a:usr_a".to_string(), "ten_a:usr_b".to_string());
        for i in 0..3 {
            let d = limits.check(&a);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!((d.limit, d.remaining), (3, 2 - i));
        }
        let refused = limits.check(&a);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1),
            "{refused:?}"
        );
        assert!(
            limits.check(&b).allowed,
            "another caller has its own bucket"
        );
    }
}
