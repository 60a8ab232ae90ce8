//! Connectors: one [`Psp`] trait, implemented for Stripe ([`stripe`], also spoken by the
//! built-in sandbox) and Adyen ([`adyen`]); [`Connectors`] picks one by provider.
//!
//! Every call that may move money carries the attempt's idempotency key, the same on every
//! retry, so the PSP answers a repeat with its first answer instead of charging again. Calls
//! are retried only where that makes them safe (the key is sent; the failure was a timeout, a
//! dropped connection, a 409/429 or a 5xx), and they run through a [`Limiter`] so a burst of
//! confirmations cannot open unbounded connections to the PSP.

pub mod adyen;
pub mod stripe;

use std::future::Future;
use std::time::Duration;

use concurrency::Limiter;

use crate::domain::intent::{CaptureMethod, Outcome};
use crate::domain::provider::Provider;

/// What the PSP reports about a payment method token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodDetails {
    pub brand: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
}

/// One attempt to charge.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    /// Ours, sent as the PSP's reference/metadata so callbacks find the intent.
    pub intent_id: &'a str,
    /// The PSP's intent from an earlier attempt (Stripe re-confirms it).
    pub psp_intent_id: Option<&'a str>,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub method_token: &'a str,
    pub capture: CaptureMethod,
    /// The customer is not present (an invoice charged automatically): no 3-D Secure.
    pub off_session: bool,
    pub idempotency_key: &'a str,
}

/// The PSP's answer to a charge or capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub psp_intent_id: Option<String>,
    /// This attempt's reference (Stripe's charge, Adyen's pspReference).
    pub psp_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub next_action_url: Option<String>,
}

impl Answer {
    pub fn new(outcome: Outcome) -> Answer {
        Answer {
            outcome,
            psp_intent_id: None,
            psp_reference: None,
            failure_code: None,
            failure_message: None,
            next_action_url: None,
        }
    }
}

/// A refund's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundAnswer {
    pub psp_reference: String,
    /// `Some(true)` done, `Some(false)` failed, `None` pending (a callback settles it).
    pub succeeded: Option<bool>,
    pub failure_code: Option<String>,
}

/// Why a PSP call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PspError {
    /// The request may have reached the PSP (timeout, connection lost, 5xx): the outcome is
    /// unknown, and asking again with the same key is how to learn it.
    #[error("no answer from the PSP: {0}")]
    Unknown(String),
    /// The PSP refused the request; nothing happened there.
    #[error("the PSP refused the request: {code}: {message}")]
    Refused { code: String, message: String },
    /// This provider is not configured here.
    #[error("{0} is not configured")]
    NotConfigured(Provider),
}

/// How a connector reaches its PSP.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub base_url: String,
    pub timeout: Duration,
    /// Retries after the first try, for the failures that are safe to retry.
    pub retries: u32,
}

/// A payment service provider.
pub trait Psp: Send + Sync {
    fn describe(&self, token: &str)
    -> impl Future<Output = Result<MethodDetails, PspError>> + Send;
    fn charge(&self, c: &Charge<'_>) -> impl Future<Output = Result<Answer, PspError>> + Send;
    /// Captures `amount_minor` of an authorized charge.
    fn capture(
        &self,
        psp_intent_id: &str,
        psp_reference: &str,
        amount_minor: i64,
        currency: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Answer, PspError>> + Send;
    /// Releases an authorization (or an intent that never charged).
    fn cancel(
        &self,
        psp_intent_id: &str,
        psp_reference: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<(), PspError>> + Send;
    fn refund(
        &self,
        psp_intent_id: &str,
        psp_reference: &str,
        amount_minor: i64,
        currency: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<RefundAnswer, PspError>> + Send;
}

/// A configured connector.
#[derive(Debug, Clone)]
pub enum Connector {
    Stripe(stripe::Stripe),
    Adyen(adyen::Adyen),
}

/// The connectors this service is configured with, and the budget of calls in flight.
#[derive(Debug, Clone)]
pub struct Connectors {
    pub stripe: Option<stripe::Stripe>,
    pub adyen: Option<adyen::Adyen>,
    /// The sandbox speaks Stripe's API.
    pub sandbox: Option<stripe::Stripe>,
    pub limiter: Limiter,
}

impl Connectors {
    pub fn get(&self, p: Provider) -> Result<Connector, PspError> {
        let c = match p {
            Provider::Stripe => self.stripe.clone().map(Connector::Stripe),
            Provider::Sandbox => self.sandbox.clone().map(Connector::Stripe),
            Provider::Adyen => self.adyen.clone().map(Connector::Adyen),
        };
        c.ok_or(PspError::NotConfigured(p))
    }

    /// Runs a PSP call within the budget of calls in flight.
    pub async fn call<T>(&self, fut: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = self.limiter.run(fut).await;
        metrics::histogram!("payment_psp_call_seconds").record(started.elapsed().as_secs_f64());
        out
    }
}

macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Connector::Stripe($c) => $e,
            Connector::Adyen($c) => $e,
        }
    };
}

impl Psp for Connector {
    async fn describe(&self, token: &str) -> Result<MethodDetails, PspError> {
        each!(self, c => c.describe(token).await)
    }
    async fn charge(&self, ch: &Charge<'_>) -> Result<Answer, PspError> {
        each!(self, c => c.charge(ch).await)
    }
    async fn capture(
        &self,
        pi: &str,
        r: &str,
        amount: i64,
        currency: &str,
        key: &str,
    ) -> Result<Answer, PspError> {
        each!(self, c => c.capture(pi, r, amount, currency, key).await)
    }
    async fn cancel(&self, pi: &str, r: &str, key: &str) -> Result<(), PspError> {
        each!(self, c => c.cancel(pi, r, key).await)
    }
    async fn refund(
        &self,
        pi: &str,
        r: &str,
        amount: i64,
        currency: &str,
        key: &str,
    ) -> Result<RefundAnswer, PspError> {
        each!(self, c => c.refund(pi, r, amount, currency, key).await)
    }
}

/// Whether an HTTP status means the request may be retried with the same idempotency key.
pub(crate) fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::CONFLICT
}

/// Sends `build()` up to `1 + retries` times while the failure is one a retry with the same
/// idempotency key makes safe; backs off 100 ms, 200 ms, … between tries.
pub(crate) async fn send_retrying(
    retries: u32,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, bytes::Bytes), PspError> {
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(5))).await;
        }
        match build().send().await {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(body) if retryable(status) => {
                        last = format!("HTTP {status}: {}", String::from_utf8_lossy(&body));
                    }
                    Ok(body) => return Ok((status, body)),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < retries {
            metrics::counter!("payment_psp_retries_total").increment(1);
        }
    }
    Err(PspError::Unknown(last))
}
