//! SMS through a Twilio-style API (`POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, a
//! form with `To`, `From` and `Body`, HTTP basic auth), or by default one JSON line per
//! message appended to a local file. The provider's own 4xx refusals are final; 429 and 5xx
//! are retried on the schedule.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Answer, Attempted, snippet};
use crate::domain::retry::{Verdict, verdict};
use crate::settings::{Settings, SmsTransport};

#[derive(Debug, Clone)]
enum Transport {
    /// Appends are serialized so lines never interleave.
    File(PathBuf, Arc<Mutex<()>>),
    Http {
        http: reqwest::Client,
        url: String,
        account: String,
        token: platform::Secret,
    },
}

/// Sends SMS.
#[derive(Debug, Clone)]
pub struct Texter {
    transport: Transport,
    from: String,
}

impl Texter {
    pub fn new(s: &Settings) -> Result<Texter, reqwest::Error> {
        let transport = match &s.sms {
            SmsTransport::File(path) => Transport::File(PathBuf::from(path), Arc::default()),
            SmsTransport::Http(base) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                Transport::Http {
                    http: reqwest::Client::builder()
                        .timeout(s.timeout.min(Duration::from_secs(30)))
                        .build()?,
                    url: format!("{base}/2010-04-01/Accounts/{}/Messages.json", s.sms_account),
                    account: s.sms_account.clone(),
                    token: s.sms_token.clone(),
                }
            }
        };
        Ok(Texter {
            transport,
            from: s.sms_from.clone(),
        })
    }

    /// One attempt: `text` to `to` (E.164).
    pub async fn send(&self, id: &str, to: &str, text: &str) -> Attempted {
        let started = Instant::now();
        let done = |answer, code, response: String| Attempted {
            answer,
            code,
            response: snippet(&response),
            latency: started.elapsed(),
        };
        match &self.transport {
            Transport::File(path, lock) => {
                let line = serde_json::json!({
                    "id": id, "to": to, "from": self.from, "body": text,
                    "at": chrono::Utc::now().to_rfc3339(),
                });
                let _held = lock.lock().await;
                match append(path, &format!("{line}\n")).await {
                    Ok(()) => done(
                        Answer::Delivered,
                        None,
                        format!("appended to {}", path.display()),
                    ),
                    Err(e) => done(
                        Answer::Retry(None),
                        None,
                        format!("{}: {e}", path.display()),
                    ),
                }
            }
            Transport::Http {
                http,
                url,
                account,
                token,
            } => {
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("To", to)
                    .append_pair("From", &self.from)
                    .append_pair("Body", text)
                    .finish();
                let sent = http
                    .post(url)
                    .basic_auth(account, Some(token.expose()))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form)
                    .send()
                    .await;
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => return done(Answer::Retry(None), None, e.to_string()),
                };
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = resp.text().await.unwrap_or_default();
                let answer = match (status, verdict(Some(status), retry_after.as_deref())) {
                    (_, Verdict::Delivered) => Answer::Delivered,
                    (429 | 500..=599, Verdict::Retry(after)) => Answer::Retry(after),
                    _ => Answer::Refused,
                };
                done(answer, Some(status), body)
            }
        }
    }
}

async fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    f.write_all(line.as_bytes()).await
}
