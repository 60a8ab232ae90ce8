//! Adyen's Checkout API (JSON, `X-API-Key`, `Idempotency-Key`). Stored cards are Adyen's
//! `storedPaymentMethodId`s of a shopper (our tenant id is the `shopperReference`). Captures,
//! cancels and refunds are acknowledged (`received`) and settled by notifications.

use platform::Secret;
use serde::Deserialize;
use serde_json::json;

use super::{
    Answer, Charge, HttpSettings, MethodDetails, Psp, PspError, RefundAnswer, send_retrying,
};
use crate::domain::intent::{CaptureMethod, Outcome};

#[derive(Debug, Clone)]
pub struct Adyen {
    http: reqwest::Client,
    settings: HttpSettings,
    api_key: Secret,
    merchant_account: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentResponse {
    #[serde(default)]
    psp_reference: Option<String>,
    result_code: String,
    #[serde(default)]
    refusal_reason: Option<String>,
    #[serde(default)]
    refusal_reason_code: Option<String>,
    #[serde(default)]
    action: Option<Action>,
}

#[derive(Debug, Deserialize)]
struct Action {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Modification {
    psp_reference: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMethods {
    #[serde(default)]
    stored_payment_methods: Vec<StoredMethod>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMethod {
    id: String,
    #[serde(default)]
    brand: String,
    #[serde(default)]
    last_four: String,
    #[serde(default)]
    expiry_month: String,
    #[serde(default)]
    expiry_year: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceError {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

impl Adyen {
    pub fn new(
        http: reqwest::Client,
        settings: HttpSettings,
        api_key: Secret,
        merchant_account: String,
    ) -> Adyen {
        Adyen {
            http,
            settings,
            api_key,
            merchant_account,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        key: Option<&str>,
    ) -> Result<bytes::Bytes, PspError> {
        let url = format!("{}{path}", self.settings.base_url.trim_end_matches('/'));
        let (status, bytes) = send_retrying(self.settings.retries, || {
            let mut r = self
                .http
                .request(method.clone(), &url)
                .header("X-API-Key", self.api_key.expose())
                .timeout(self.settings.timeout);
            if let Some(k) = key {
                r = r.header("Idempotency-Key", k);
            }
            if let Some(b) = &body {
                r = r.json(b);
            }
            r
        })
        .await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let e: ServiceError = serde_json::from_slice(&bytes).unwrap_or(ServiceError {
            error_code: status.as_u16().to_string(),
            message: String::new(),
        });
        Err(PspError::Refused {
            code: e.error_code,
            message: e.message,
        })
    }

    fn amount(amount: i64, currency: &str) -> serde_json::Value {
        json!({"value": amount, "currency": currency})
    }

    async fn modification(
        &self,
        reference: &str,
        kind: &str,
        amount: Option<(i64, &str)>,
        key: &str,
    ) -> Result<String, PspError> {
        let mut body = json!({"merchantAccount": self.merchant_account, "reference": key});
        if let Some((a, c)) = amount {
            body["amount"] = Self::amount(a, c);
        }
        let path = format!("/payments/{}/{kind}", url_safe(reference)?);
        let bytes = self
            .send(reqwest::Method::POST, &path, Some(body), Some(key))
            .await?;
        let m: Modification = serde_json::from_slice(&bytes)
            .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
        Ok(m.psp_reference)
    }
}

/// Adyen's result codes as attempt outcomes.
fn outcome(result_code: &str) -> Outcome {
    match result_code {
        "Authorised" => Outcome::Authorized,
        "RedirectShopper" | "IdentifyShopper" | "ChallengeShopper" | "PresentToShopper" => {
            Outcome::RequiresAction
        }
        "Pending" | "Received" => Outcome::Pending,
        "Refused" | "Cancelled" => Outcome::Declined,
        _ => Outcome::Error,
    }
}

impl Psp for Adyen {
    async fn describe(&self, token: &str) -> Result<MethodDetails, PspError> {
        // The token is "<shopperReference>:<storedPaymentMethodId>" (see `charge`).
        let (shopper, id) = split_token(token)?;
        let path = format!(
            "/storedPaymentMethods?merchantAccount={}&shopperReference={}",
            form_urlencoded::byte_serialize(self.merchant_account.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(shopper.as_bytes()).collect::<String>()
        );
        let bytes = self.send(reqwest::Method::GET, &path, None, None).await?;
        let list: StoredMethods = serde_json::from_slice(&bytes)
            .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
        let m = list
            .stored_payment_methods
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| PspError::Refused {
                code: "resource_missing".into(),
                message: "no such stored payment method".into(),
            })?;
        Ok(MethodDetails {
            brand: m.brand,
            last4: m.last_four,
            exp_month: m.expiry_month.parse().unwrap_or(0),
            // Adyen reports "2030" (or "30").
            exp_year: m
                .expiry_year
                .parse::<i32>()
                .map(|y| if y < 100 { 2000 + y } else { y })
                .unwrap_or(0),
        })
    }

    async fn charge(&self, c: &Charge<'_>) -> Result<Answer, PspError> {
        let (shopper, id) = split_token(c.method_token)?;
        let mut body = json!({
            "merchantAccount": self.merchant_account,
            "reference": c.intent_id,
            "amount": Self::amount(c.amount_minor, c.currency),
            "paymentMethod": {"type": "scheme", "storedPaymentMethodId": id},
            "shopperReference": shopper,
            "shopperInteraction": if c.off_session { "ContAuth" } else { "Ecommerce" },
            "recurringProcessingModel": "UnscheduledCardOnFile",
        });
        if c.capture == CaptureMethod::Manual {
            body["additionalData"] = json!({"manualCapture": "true"});
        }
        let bytes = self
            .send(
                reqwest::Method::POST,
                "/payments",
                Some(body),
                Some(c.idempotency_key),
            )
            .await?;
        let r: PaymentResponse = serde_json::from_slice(&bytes)
            .map_err(|e| PspError::Unknown(format!("unreadable answer: {e}")))?;
        let mut a = Answer::new(outcome(&r.result_code));
        a.psp_reference = r.psp_reference;
        a.failure_code = r.refusal_reason.as_deref().map(reason_code);
        a.failure_message = r.refusal_reason.map(|reason| match r.refusal_reason_code {
            Some(code) => format!("{reason} (refusalReasonCode {code})"),
            None => reason,
        });
        a.next_action_url = r.action.and_then(|a| a.url);
        Ok(a)
    }

    async fn capture(
        &self,
        _pi: &str,
        reference: &str,
        amount: i64,
        currency: &str,
        key: &str,
    ) -> Result<Answer, PspError> {
        self.modification(reference, "captures", Some((amount, currency)), key)
            .await?;
        // Acknowledged; the CAPTURE notification settles it.
        Ok(Answer::new(Outcome::Authorized))
    }

    async fn cancel(&self, _pi: &str, reference: &str, key: &str) -> Result<(), PspError> {
        self.modification(reference, "cancels", None, key).await?;
        Ok(())
    }

    async fn refund(
        &self,
        _pi: &str,
        reference: &str,
        amount: i64,
        currency: &str,
        key: &str,
    ) -> Result<RefundAnswer, PspError> {
        // The key is our refund id: as the modification's reference, its notification finds it.
        let r = self
            .modification(reference, "refunds", Some((amount, currency)), key)
            .await?;
        Ok(RefundAnswer {
            psp_reference: r,
            succeeded: None,
            failure_code: None,
        })
    }
}

/// Adyen's refusal reason ("Not enough balance") as a failure code (`not_enough_balance`):
/// notifications carry only the reason, so both paths name a refusal alike.
pub fn reason_code(reason: &str) -> String {
    reason
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("_")
}

fn split_token(token: &str) -> Result<(&str, &str), PspError> {
    token
        .split_once(':')
        .filter(|(s, id)| !s.is_empty() && !id.is_empty())
        .ok_or_else(|| PspError::Refused {
            code: "invalid_token".into(),
            message: "an Adyen token is <shopperReference>:<storedPaymentMethodId>".into(),
        })
}

fn url_safe(reference: &str) -> Result<&str, PspError> {
    if !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(reference)
    } else {
        Err(PspError::Refused {
            code: "invalid_reference".into(),
            message: "not a pspReference".into(),
        })
    }
}
