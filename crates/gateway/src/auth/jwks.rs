//! Keeping the JWKS current: from a file (re-read every minute) or a URL (fetched every
//! `JWT_JWKS_REFRESH_SECS`, and early when a token names a key id we do not know), so an
//! identity provider's key rotation needs no gateway restart.
//!
//! Anyone can send a token with a made-up `kid`, so an unknown key id must not be a way to
//! make the gateway hammer the identity provider: a fetch follows the previous *attempt*
//! (successful or not) by at least `JWT_JWKS_MIN_REFETCH_SECS`, a burst of unknown ids costs
//! one fetch, and after failures the gap grows (10 s, 20 s, 40 s, … up to the refresh
//! interval).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::jwt::JwtVerifier;

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    File(String),
    Url(String),
}

/// Refreshes a verifier's JWKS.
#[derive(Clone)]
pub struct Refresher {
    verifier: JwtVerifier,
    source: Source,
    every: Duration,
    min_gap: Duration,
    kick: Arc<Notify>,
    http: reqwest::Client,
}

/// How soon to retry after the first failed fetch; doubled after each further failure.
const RETRY: Duration = Duration::from_secs(10);

/// When the refresher fetches next, given the last attempt and the failures since the last
/// success: the scheduled refresh, and the earliest moment an unknown key id may bring it
/// forward. Pure, so the schedule is tested without clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    pub min_gap: Duration,
}

impl Schedule {
    fn backoff(self, failures: u32) -> Duration {
        let doubled = RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16));
        doubled.min(self.every.max(RETRY))
    }

    /// How long after the last attempt the next scheduled fetch comes.
    pub fn scheduled(self, failures: u32) -> Duration {
        if failures == 0 {
            self.every
        } else {
            self.backoff(failures)
        }
    }

    /// How long after the last attempt an unknown key id may trigger a fetch.
    pub fn earliest_kick(self, failures: u32) -> Duration {
        if failures == 0 {
            self.min_gap
        } else {
            self.min_gap.max(self.backoff(failures))
        }
    }
}

impl Refresher {
    pub fn new(verifier: JwtVerifier, source: Source, every: Duration, min_gap: Duration) -> Self {
        Refresher {
            verifier,
            source,
            every,
            min_gap,
            kick: Arc::new(Notify::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Wakes the refresher early (a token named an unknown key id).
    pub fn kicker(&self) -> Arc<Notify> {
        self.kick.clone()
    }

    /// Fetches and installs the keys once; returns how many.
    pub async fn load(&self) -> Result<usize, String> {
        let text = match &self.source {
            Source::File(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("JWT_JWKS_FILE={path}: {e}"))?
            }
            Source::Url(url) => {
                let resp = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("JWT_JWKS_URL={url}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("JWT_JWKS_URL={url}: HTTP {}", resp.status()));
                }
                resp.text()
                    .await
                    .map_err(|e| format!("JWT_JWKS_URL={url}: {e}"))?
            }
        };
        self.verifier.set_jwks(&text).map_err(|e| e.to_string())
    }

    /// Runs until `stop`, keeping the previous keys whenever a fetch fails. `loaded_at` is when
    /// the keys were loaded at start-up (`None`: that load failed).
    pub async fn run(self, stop: platform::CancellationToken, loaded_at: Option<Instant>) {
        let schedule = Schedule {
            every: self.every,
            min_gap: self.min_gap,
        };
        let mut last = loaded_at.unwrap_or_else(Instant::now);
        let mut failures: u32 = if loaded_at.is_some() { 0 } else { 1 };
        loop {
            let scheduled = tokio::time::Instant::from_std(last + schedule.scheduled(failures));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(scheduled) => {}
                _ = self.kick.notified() => {
                    // Wait out the gap: every unknown id arriving meanwhile rides on one fetch.
                    let earliest = last + schedule.earliest_kick(failures);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(earliest)) => {}
                    }
                }
            }
            last = Instant::now();
            match self.load().await {
                Ok(n) => {
                    tracing::debug!(keys = n, "JWKS refreshed");
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "JWKS refresh failed; keeping the previous keys");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_ids_never_fetch_sooner_than_the_gap_even_after_failures() {
        let s = Schedule {
            every: Duration::from_secs(300),
            min_gap: Duration::from_secs(30),
        };
        assert_eq!(s.scheduled(0), Duration::from_secs(300));
        assert_eq!(s.earliest_kick(0), Duration::from_secs(30));
        // After failures: retries back off, and kicks wait at least as long.
        let retries: Vec<u64> = (1..=7).map(|f| s.scheduled(f).as_secs()).collect();
        assert_eq!(retries, [10, 20, 40, 80, 160, 300, 300]);
        for f in 1..=40 {
            assert!(s.earliest_kick(f) >= s.min_gap);
            assert!(s.earliest_kick(f) >= s.scheduled(f));
            assert!(s.scheduled(f) <= s.every);
        }
    }
}
