//! The sandbox's Adyen face (`/adyen/v71`): stored cards, payments and their modifications,
//! as much of Adyen's Checkout API as the connector uses, and a notification per outcome —
//! `AUTHORISATION`, `CAPTURE`, `CANCELLATION`, `REFUND` — each item HMAC-signed like Adyen's.
//! Stored card ids are the sandbox's card tokens (`pm_card_visa`, …), the same for every
//! shopper. Off-session by nature, a card that needs 3-D Secure is refused.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Inner;
use super::cards::{Behaviour, Card};
use super::wire::{AdyenPayment, Answered, Ledger, Notice};
use crate::domain::signature::{AdyenSigned, adyen_sign};

const MERCHANT: &str = "SandboxMerchant";
const STORED: &[&str] = &[
    "pm_card_visa",
    "pm_card_mastercard",
    "pm_card_chargeDeclined",
    "pm_card_chargeDeclinedInsufficientFunds",
    "pm_card_threeDSecureRequired",
];

fn authorized(s: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == s.api_key)
}

fn invalid(code: &str, message: &str) -> Answered {
    let body = json!({"status": 422, "errorCode": code, "message": message,
                      "errorType": "validation"});
    (StatusCode::UNPROCESSABLE_ENTITY, body, vec![])
}

/// A 16-digit pspReference, as Adyen's look.
fn reference(ledger: &mut Ledger) -> String {
    let n = ledger.next_id("psp");
    let digits: String = n
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(char::from)
        .collect();
    format!("{:0>16}", &digits[digits.len().saturating_sub(16)..])
}

/// One notification item (unsigned: [`notification`] signs it on the way out); `refused`
/// holds the reason of a failure.
fn item(
    code: &str,
    (psp, original, merchant_ref): (&str, &str, &str),
    (amount, currency): (i64, &str),
    refused: Option<&str>,
) -> Notice {
    let (success, reason) = match refused {
        None => (true, ""),
        Some(r) => (false, r),
    };
    Notice::Adyen(json!({
        "amount": {"value": amount, "currency": currency},
        "eventCode": code,
        "eventDate": chrono::Utc::now().to_rfc3339(),
        "merchantAccountCode": MERCHANT,
        "merchantReference": merchant_ref,
        "originalReference": original,
        "pspReference": psp,
        "reason": reason,
        "success": if success { "true" } else { "false" },
    }))
}

/// The notification body for `item`, its HMAC (hex key `key`) in `additionalData`.
pub fn notification(mut item: Value, key: &str) -> String {
    let signed: AdyenSigned = serde_json::from_value(item.clone()).unwrap_or_default();
    let sig = adyen_sign(key, &signed).unwrap_or_default();
    item["additionalData"] = json!({"hmacSignature": sig});
    json!({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}).to_string()
}

pub async fn stored(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(_q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let methods: Vec<Value> = STORED
        .iter()
        .filter_map(|t| Card::from_token(t).map(|c| (t, c)))
        .map(|(t, c)| {
            json!({"id": t, "type": "scheme", "brand": c.brand, "lastFour": c.last4(),
                   "expiryMonth": "12", "expiryYear": "2034"})
        })
        .collect();
    axum::Json(json!({"merchantAccount": MERCHANT, "storedPaymentMethods": methods}))
        .into_response()
}

pub async fn pay(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let fingerprint = format!("adyen-pay:{}", String::from_utf8_lossy(&body));
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.keyed(authorized(&s, &headers), &headers, fingerprint, move |st| {
        let amount = req["amount"]["value"].as_i64().filter(|a| *a > 0);
        let currency = req["amount"]["currency"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ours = req["reference"].as_str().unwrap_or_default().to_string();
        let card = req["paymentMethod"]["storedPaymentMethodId"]
            .as_str()
            .and_then(Card::from_token);
        let (Some(amount), Some(card)) = (amount, card) else {
            return invalid("15_002", "amount or stored payment method invalid");
        };
        let psp = reference(st);
        let refused = match card.behaviour() {
            Behaviour::Succeeds => None,
            Behaviour::Declines("insufficient_funds") => Some(("51", "Not enough balance")),
            Behaviour::Declines(_) => Some(("2", "Refused")),
            Behaviour::RequiresAction => Some(("38", "Authentication required")),
        };
        let (result, notices) = match refused {
            None => {
                st.adyen.insert(
                    psp.clone(),
                    AdyenPayment {
                        amount,
                        currency: currency.clone(),
                        reference: ours.clone(),
                        authorized: true,
                        captured: 0,
                        refunded: 0,
                    },
                );
                *st.charges.entry(psp.clone()).or_default() += 1;
                let n = item(
                    "AUTHORISATION",
                    (&psp, "", &ours),
                    (amount, &currency),
                    None,
                );
                (
                    json!({"pspReference": psp, "resultCode": "Authorised",
                        "merchantReference": ours}),
                    vec![n],
                )
            }
            Some((code, reason)) => {
                let n = item(
                    "AUTHORISATION",
                    (&psp, "", &ours),
                    (amount, &currency),
                    Some(reason),
                );
                (
                    json!({"pspReference": psp, "resultCode": "Refused", "refusalReason": reason,
                        "refusalReasonCode": code, "merchantReference": ours}),
                    vec![n],
                )
            }
        };
        (StatusCode::OK, result, notices)
    })
    .await
}

pub async fn modify(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path((original, kind)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let fingerprint = format!("adyen-{kind}:{original}:{}", String::from_utf8_lossy(&body));
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.keyed(authorized(&s, &headers), &headers, fingerprint, move |st| {
        let psp = reference(st);
        let Some(p) = st.adyen.get_mut(&original) else {
            return invalid("167", "Original pspReference required for this operation");
        };
        let asked = req["amount"]["value"].as_i64();
        let ours = req["reference"].as_str().unwrap_or_default().to_string();
        let (code, amount) = match kind.as_str() {
            "captures" => {
                let a = asked.unwrap_or(p.amount);
                if !p.authorized || p.captured > 0 || a <= 0 || a > p.amount {
                    return invalid("167", "Nothing to capture");
                }
                p.captured = a;
                ("CAPTURE", a)
            }
            "cancels" => {
                if p.captured > 0 {
                    return invalid("167", "Already captured");
                }
                p.authorized = false;
                ("CANCELLATION", p.amount)
            }
            "refunds" => {
                let paid = if p.captured > 0 { p.captured } else { p.amount };
                let a = asked.unwrap_or(paid - p.refunded);
                if a <= 0 || a > paid - p.refunded {
                    return invalid("137", "Invalid amount specified");
                }
                p.refunded += a;
                ("REFUND", a)
            }
            _ => return invalid("000", "unknown modification"),
        };
        let merchant_ref = if code == "REFUND" {
            ours.clone()
        } else {
            p.reference.clone()
        };
        let currency = p.currency.clone();
        if code == "CAPTURE" {
            *st.charges.entry(original.clone()).or_default() += 1;
        }
        let n = item(
            code,
            (&psp, &original, &merchant_ref),
            (amount, &currency),
            None,
        );
        let body = json!({"merchantAccount": MERCHANT, "paymentPspReference": original,
                          "pspReference": psp, "reference": ours, "status": "received"});
        (StatusCode::CREATED, body, vec![n])
    })
    .await
}
