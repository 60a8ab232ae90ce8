//! Webhooks per Standard Webhooks: a POST of the message body with `webhook-id` (the message
//! id, the same on every retry, so receivers can drop duplicates), `webhook-timestamp` and
//! `webhook-signature` (one `v1,` signature per active secret). Addresses are checked when
//! the connection is made: every name is resolved through [`Guard`], which refuses private
//! and special addresses, so a name that pointed somewhere public at registration cannot be
//! turned toward the platform's own network later; redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{Answer, Attempted, SNIPPET, snippet};
use crate::domain::retry::{Verdict, verdict};
use crate::domain::signing::{Secret, signature_header};
use crate::domain::ssrf;

/// Resolves names and keeps only addresses deliveries may reach.
#[derive(Debug)]
struct Guard;

#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to addresses webhooks may not reach")]
struct Forbidden(String);

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| ssrf::allowed(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Forbidden(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Sends webhooks.
#[derive(Debug, Clone)]
pub struct Webhooks {
    http: reqwest::Client,
    allow_private: bool,
}

impl Webhooks {
    /// `allow_private`: local development, where endpoints are on loopback.
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Webhooks, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "saas-platform-webhooks/",
                env!("CARGO_PKG_VERSION")
            ));
        if !allow_private {
            b = b.dns_resolver(Arc::new(Guard));
        }
        Ok(Webhooks {
            http: b.build()?,
            allow_private,
        })
    }

    /// One attempt: `body` to `url`, signed by `secrets` for message `id` at `timestamp`.
    pub async fn send(
        &self,
        url: &str,
        id: &str,
        timestamp: i64,
        body: &str,
        secrets: &[Secret],
    ) -> Attempted {
        let started = Instant::now();
        let refused = |why: String| Attempted {
            answer: Answer::Refused,
            code: None,
            response: why,
            latency: started.elapsed(),
        };
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return refused(format!("not a URL: {e}")),
        };
        // An address literal never reaches the resolver: check it here.
        if !self.allow_private
            && let Some(ip) = literal(&parsed)
            && !ssrf::allowed(ip)
        {
            return refused(format!("{ip} is not an address webhooks may reach"));
        }
        let signature = signature_header(secrets, id, timestamp, body.as_bytes());
        let sent = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempted {
                    answer: Answer::Retry(None),
                    code: None,
                    response: snippet(&describe(&e)),
                    latency: started.elapsed(),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut kept = Vec::new();
        while kept.len() < SNIPPET {
            match resp.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let answer = match verdict(Some(status), retry_after.as_deref()) {
            Verdict::Delivered => Answer::Delivered,
            Verdict::Gone => Answer::Gone,
            Verdict::Retry(after) => Answer::Retry(after),
        };
        Attempted {
            answer,
            code: Some(status),
            response: snippet(&String::from_utf8_lossy(&kept)),
            latency: started.elapsed(),
        }
    }
}

fn literal(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The error with its causes (reqwest's own text is only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
