//! Redis connection set-up (rate limits, idempotency records, caches), and the breaker that
//! lets callers skip it while it is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Opens a self-reconnecting Redis connection.
pub async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_number_of_retries(2);
    redis::aio::ConnectionManager::new_with_config(client, config).await
}

/// Fails fast on a dependency that just failed (Redis, for the gateway's rate limits and
/// idempotency records): after a failure, callers skip it for `cool_down` and take their
/// fallback at once instead of each waiting out a reconnect; then one call — the first to
/// ask — probes it, and the others keep skipping until that probe succeeds.
#[derive(Debug)]
pub struct Breaker {
    cool_down: Duration,
    /// While set: skip until then (the next caller after it probes).
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    pub fn new(cool_down: Duration) -> Self {
        Breaker {
            cool_down,
            open_until: Mutex::new(None),
        }
    }

    /// Whether to call the dependency now.
    pub fn allows(&self, now: Instant) -> bool {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        match *open {
            None => true,
            Some(until) if now < until => false,
            // This caller probes; the others skip for another cool-down meanwhile.
            Some(_) => {
                *open = Some(now + self.cool_down);
                true
            }
        }
    }

    /// The call failed; `true` when the dependency was thought up until now.
    pub fn failed(&self, now: Instant) -> bool {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        open.replace(now + self.cool_down).is_none()
    }

    /// The call succeeded; `true` when the dependency was thought down until now.
    pub fn succeeded(&self) -> bool {
        let mut open = self.open_until.lock().unwrap_or_else(|p| p.into_inner());
        open.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failure_callers_skip_until_one_probe_succeeds() {
        let b = Breaker::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(b.allows(t0));
        assert!(b.failed(t0), "the first failure opens it");
        assert!(!b.allows(t0 + Duration::from_millis(999)));
        // Cool-down over: one probe, the rest keep skipping.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.allows(t1));
        assert!(!b.allows(t1));
        assert!(!b.failed(t1), "still down: not a new outage");
        assert!(!b.allows(t1 + Duration::from_millis(500)));
        let t2 = t1 + Duration::from_secs(1);
        assert!(b.allows(t2));
        assert!(b.succeeded(), "the probe closes it");
        assert!(b.allows(t2));
        assert!(!b.succeeded(), "already up");
    }
}
