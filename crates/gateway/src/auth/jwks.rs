//! Keeping the JWKS current: from a file (re-read every minute) or a URL (fetched every
//! `JWT_JWKS_REFRESH_SECS`, and at once when a token names a key id we do not know, at most
//! every few seconds), so an identity provider's key rotation needs no gateway restart.

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
    kick: Arc<Notify>,
    http: reqwest::Client,
}

/// How soon after one fetch an unknown key id may trigger another.
const MIN_GAP: Duration = Duration::from_secs(2);
/// How soon to retry after a failed fetch.
const RETRY: Duration = Duration::from_secs(10);

impl Refresher {
    pub fn new(verifier: JwtVerifier, source: Source, every: Duration) -> Self {
        Refresher {
            verifier,
            source,
            every,
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

    /// Runs until `stop`, keeping the previous keys whenever a fetch fails.
    pub async fn run(self, stop: platform::CancellationToken, mut last: Option<Instant>) {
        loop {
            let wait = match last {
                Some(_) => self.every,
                None => RETRY,
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified() => {
                    if let Some(t) = last {
                        let since = t.elapsed();
                        if since < MIN_GAP {
                            tokio::time::sleep(MIN_GAP - since).await;
                        }
                    }
                }
            }
            match self.load().await {
                Ok(n) => {
                    tracing::debug!(keys = n, "JWKS refreshed");
                    last = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
                    last = None;
                }
            }
        }
    }
}
