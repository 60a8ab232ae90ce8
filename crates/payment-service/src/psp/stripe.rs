//! Stripe's REST API: form-encoded requests, JSON answers, `Idempotency-Key` on every POST.
//! The first attempt of an intent creates and confirms a Stripe PaymentIntent in one call;
//! later attempts (a new method, a dunning retry) confirm the same one again, as Stripe
//! recommends after a decline.

use platform::Secret;
use serde::Deserialize;

use super::{
    Answer, Charge, HttpSettings, MethodDetails, Psp, PspError, RefundAnswer, send_retrying,
};
use crate::domain::intent::Outcome;

#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    settings: HttpSettings,
    api_key: Secret,
}

/// A Stripe PaymentIntent, as much of it as we read.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntentObject {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub latest_charge: Option<String>,
    #[serde(default)]
    pub last_payment_error: Option<ErrorObject>,
    #[serde(default)]
    pub next_action: Option<NextAction>,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorObject {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<Box<PaymentIntentObject>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NextAction {
    #[serde(default)]
    pub redirect_to_url: Option<RedirectToUrl>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedirectToUrl {
    pub url: String,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct PaymentMethodObject {
    card: Option<Card>,
}

#[derive(Deserialize)]
struct Card {
    brand: String,
    last4: String,
    exp_month: i32,
    exp_year: i32,
}

#[derive(Deserialize)]
struct RefundObject {
    id: String,
    status: String,
    #[serde(default)]
    failure_reason: Option<String>,
}

impl PaymentIntentObject {
    /// What this state of the intent says about the attempt that led to it.
    pub fn answer(&self) -> Answer {
        let outcome = match self.status.as_str() {
            "succeeded" => Outcome::Succeeded,
            "requires_capture" => Outcome::Authorized,
            "requires_action" => Outcome::RequiresAction,
            "requires_payment_method" if self.last_payment_error.is_some() => Outcome::Declined,
            // `processing`, or a state that says nothing about an attempt's result (a
            // `payment_intent.created` callback): no news.
            _ => Outcome::Pending,
        };
        let err = self.last_payment_error.clone().unwrap_or_default();
        Answer {
            outcome,
            psp_intent_id: Some(self.id.clone()),
            psp_reference: self.latest_charge.clone(),
            failure_code: err.decline_code.or(err.code),
            failure_message: err.message,
            next_action_url: self
                .next_action
                .as_ref()
                .and_then(|n| n.redirect_to_url.as_ref())
                .map(|r| r.url.clone()),
        }
    }
}

impl Stripe {
    pub fn new(http: reqwest::Client, settings: HttpSettings, api_key: Secret) -> Stripe {
        Stripe {
            http,
            settings,
            api_key,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        key: &str,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), PspError> {
        let url = self.url(path);
        send_retrying(self.settings.retries, || {
            self.http
                .post(&url)
                .bearer_auth(self.api_key.expose())
                .header("Idempotency-Key", key)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(form)
                        .finish(),
                )
                .timeout(self.settings.timeout)
        })
        .await
    }

    /// A PaymentIntent answer, or the error Stripe answered instead. A card error (402)
    /// carries the intent, and is the attempt's decline.
    fn intent_answer(status: reqwest::StatusCode, body: &[u8]) -> Result<Answer, PspError> {
        if status.is_success() {
            let pi: PaymentIntentObject = serde_json::from_slice(body)
                .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
            return Ok(pi.answer());
        }
        let err = serde_json::from_slice::<ErrorEnvelope>(body)
            .map(|e| e.error)
            .unwrap_or_default();
        match err.payment_intent {
            Some(pi) if status == reqwest::StatusCode::PAYMENT_REQUIRED => {
                let mut a = pi.answer();
                a.outcome = Outcome::Declined;
                a.failure_code = err.decline_code.or(err.code).or(a.failure_code);
                a.failure_message = err.message.or(a.failure_message);
                Ok(a)
            }
            _ => Err(refused_with(status, err)),
        }
    }
}

impl Psp for Stripe {
    async fn describe(&self, token: &str) -> Result<MethodDetails, PspError> {
        let url = self.url(&format!("/v1/payment_methods/{}", path_segment(token)?));
        let (status, body) = send_retrying(self.settings.retries, || {
            self.http
                .get(&url)
                .bearer_auth(self.api_key.expose())
                .timeout(self.settings.timeout)
        })
        .await?;
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        let pm: PaymentMethodObject = serde_json::from_slice(&body)
            .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
        let card = pm.card.ok_or_else(|| PspError::Refused {
            code: "unsupported_payment_method".into(),
            message: "only cards are supported".into(),
        })?;
        Ok(MethodDetails {
            brand: card.brand,
            last4: card.last4,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
        })
    }

    async fn charge(&self, c: &Charge<'_>) -> Result<Answer, PspError> {
        let mut form = vec![("payment_method", c.method_token.to_string())];
        if c.off_session {
            form.push(("off_session", "true".into()));
        }
        let path = match c.psp_intent_id {
            Some(pi) => format!("/v1/payment_intents/{}/confirm", path_segment(pi)?),
            None => {
                form.extend([
                    ("amount", c.amount_minor.to_string()),
                    ("currency", c.currency.to_ascii_lowercase()),
                    ("confirm", "true".into()),
                    ("capture_method", c.capture.as_str().into()),
                    ("metadata[payment_intent]", c.intent_id.into()),
                ]);
                "/v1/payment_intents".to_string()
            }
        };
        let (status, body) = self.post(&path, &form, c.idempotency_key).await?;
        Self::intent_answer(status, &body)
    }

    async fn capture(
        &self,
        pi: &str,
        _reference: &str,
        amount: i64,
        _currency: &str,
        key: &str,
    ) -> Result<Answer, PspError> {
        let path = format!("/v1/payment_intents/{}/capture", path_segment(pi)?);
        let (status, body) = self
            .post(&path, &[("amount_to_capture", amount.to_string())], key)
            .await?;
        Self::intent_answer(status, &body)
    }

    async fn cancel(&self, pi: &str, _reference: &str, key: &str) -> Result<(), PspError> {
        let path = format!("/v1/payment_intents/{}/cancel", path_segment(pi)?);
        let (status, body) = self.post(&path, &[], key).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(refused(status, &body))
        }
    }

    async fn refund(
        &self,
        pi: &str,
        _reference: &str,
        amount: i64,
        _currency: &str,
        key: &str,
    ) -> Result<RefundAnswer, PspError> {
        // Our refund id travels as metadata, so its callback finds it even if this answer is lost.
        let form = [
            ("payment_intent", pi.to_string()),
            ("amount", amount.to_string()),
            ("metadata[refund]", key.to_string()),
        ];
        let (status, body) = self.post("/v1/refunds", &form, key).await?;
        if !status.is_success() {
            return Err(refused(status, &body));
        }
        let r: RefundObject = serde_json::from_slice(&body)
            .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
        Ok(RefundAnswer {
            psp_reference: r.id,
            succeeded: match r.status.as_str() {
                "succeeded" => Some(true),
                "failed" | "canceled" => Some(false),
                _ => None,
            },
            failure_code: r.failure_reason,
        })
    }
}

fn refused(status: reqwest::StatusCode, body: &[u8]) -> PspError {
    let err = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .unwrap_or_default();
    refused_with(status, err)
}

fn refused_with(status: reqwest::StatusCode, err: ErrorObject) -> PspError {
    PspError::Refused {
        code: err.code.unwrap_or_else(|| status.as_u16().to_string()),
        message: err.message.unwrap_or_default(),
    }
}

/// A PSP id used in a URL path: ids are `[A-Za-z0-9_]`, anything else is refused rather
/// than escaped (it cannot be a real id).
fn path_segment(id: &str) -> Result<&str, PspError> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(PspError::Refused {
            code: "invalid_id".into(),
            message: "not a PSP id".into(),
        })
    }
}
