//! Failed authentications, throttled per client address.
//!
//! Authentication runs before the per-caller limit (there is no caller yet), so without this a
//! client could send junk credentials forever, each costing a JWT check or, for `sk_…` keys, a
//! call to the user service. Every 401 spends a token of the client address's bucket
//! (`AUTH_FAILURE_BURST` at once, `AUTH_FAILURE_PER_SEC` refilled); while it is empty, every
//! request from that address answers 429 with `Retry-After` before any credential is looked
//! at. The address is the TCP peer's: behind a proxy all clients share the proxy's (see
//! ARCHITECTURE.md, "Security model").

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::response::Response;

use super::gcra::LocalGcra;
use super::ratelimit::{Quota, too_many};

#[derive(Debug)]
pub struct AuthFailures {
    buckets: LocalGcra,
    quota: Quota,
    /// False until the first failure: until then a request costs no lock and no lookup.
    any: AtomicBool,
}

fn key(peer: Option<IpAddr>) -> String {
    match peer {
        Some(ip) => format!("authfail:{ip}"),
        None => "authfail:unknown".to_string(),
    }
}

impl AuthFailures {
    pub fn new(quota: Quota) -> Self {
        AuthFailures {
            buckets: LocalGcra::default(),
            quota,
            any: AtomicBool::new(false),
        }
    }

    /// The 429 to answer at once when `peer` has used up its failures.
    pub fn refuse(&self, peer: Option<IpAddr>) -> Option<Response> {
        self.refuse_at(peer, Instant::now())
    }

    /// Counts one failed authentication of `peer`.
    pub fn record(&self, peer: Option<IpAddr>) {
        self.record_at(peer, Instant::now());
    }

    fn refuse_at(&self, peer: Option<IpAddr>, now: Instant) -> Option<Response> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let d = self.buckets.peek(&key(peer), self.quota, now);
        (!d.allowed).then(|| too_many(&d, "failed authentication"))
    }

    fn record_at(&self, peer: Option<IpAddr>, now: Instant) {
        self.any.store(true, Ordering::Relaxed);
        self.buckets.check(&key(peer), self.quota, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_once_its_failures_are_spent() {
        let f = AuthFailures::new(Quota {
            per_sec: 1,
            burst: 3,
        });
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(f.refuse_at(a, t0).is_none());
            f.record_at(a, t0);
        }
        let refused = f.refuse_at(a, t0).expect("the fourth attempt is refused");
        assert_eq!(refused.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        assert!(
            f.refuse_at(b, t0).is_none(),
            "other addresses are not affected"
        );
        // A second later one failure has been forgiven.
        let t1 = t0 + std::time::Duration::from_secs(1);
        assert!(f.refuse_at(a, t1).is_none());
        f.record_at(a, t1);
        assert!(f.refuse_at(a, t1).is_some());
    }
}
