//! An in-process GCRA with a look that spends nothing ([`LocalGcra::peek`]): the failed
//! authentication throttle needs it, and `governor` (which serves the per-caller limit) does
//! not offer one. Also the baseline of `cargo xtask bench limiter`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ratelimit::{Decision, Quota};

/// GCRA over in-memory state; `now` is injectable for tests.
#[derive(Debug, Default)]
pub struct LocalGcra {
    tat: Mutex<HashMap<String, Instant>>,
}

impl LocalGcra {
    /// Spends one token of `key`'s bucket, if there is one.
    pub fn check(&self, key: &str, q: Quota, now: Instant) -> Decision {
        self.decide(key, q, now, true)
    }

    /// What [`check`](Self::check) would decide, spending nothing.
    pub fn peek(&self, key: &str, q: Quota, now: Instant) -> Decision {
        self.decide(key, q, now, false)
    }

    fn decide(&self, key: &str, q: Quota, now: Instant, spend: bool) -> Decision {
        let t = Duration::from_nanos(1_000_000_000 / u64::from(q.per_sec.max(1)));
        let cap = t * q.burst.max(1);
        let mut map = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget keys whose buckets are full again: they carry no state worth keeping.
            map.retain(|_, tat| *tat > now);
        }
        let tat = map
            .get(key)
            .copied()
            .filter(|tat| *tat > now)
            .unwrap_or(now);
        let diff = tat + t - now;
        if diff > cap {
            return Decision {
                allowed: false,
                limit: q.burst,
                remaining: 0,
                reset: diff - t,
                retry_after: diff - cap,
            };
        }
        if spend {
            match map.get_mut(key) {
                Some(slot) => *slot = tat + t,
                None => {
                    map.insert(key.to_string(), tat + t);
                }
            }
        }
        Decision {
            allowed: true,
            limit: q.burst,
            remaining: ((cap - diff).as_nanos() / t.as_nanos().max(1)) as u32,
            reset: diff,
            retry_after: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_the_sustained_rate() {
        let g = LocalGcra::default();
        let q = Quota {
            per_sec: 10,
            burst: 5,
        };
        let t0 = Instant::now();
        for i in 0..5 {
            let d = g.check("k", q, t0);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 4 - i);
        }
        let d = g.check("k", q, t0);
        assert!(!d.allowed);
        assert!(d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_millis(100));
        // One emission interval later, exactly one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(g.check("k", q, t1).allowed);
        assert!(!g.check("k", q, t1).allowed);
        // Other keys are independent.
        assert!(g.check("other", q, t1).allowed);
        // After a full refill, the whole burst again.
        let t2 = t1 + Duration::from_secs(1);
        for _ in 0..5 {
            assert!(g.check("k", q, t2).allowed);
        }
    }
}
