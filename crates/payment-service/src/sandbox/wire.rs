//! The sandbox's ledger: Stripe-shaped intents and what happens to them.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::cards::{Behaviour, Card};

/// What a client asked with an idempotency key, and what it was answered.
pub enum Keyed {
    Running(String),
    Done(String, StatusCode, Value),
}

/// A callback to send: a Stripe event, or one Adyen notification item.
#[derive(Debug, Clone)]
pub enum Notice {
    Stripe(Value),
    Adyen(Value),
}

/// An answer: status, body, and the callbacks it causes.
pub type Answered = (StatusCode, Value, Vec<Notice>);

/// An Adyen payment: what its modifications need.
#[derive(Debug, Clone)]
pub struct AdyenPayment {
    pub amount: i64,
    pub currency: String,
    pub reference: String,
    pub authorized: bool,
    pub captured: i64,
    pub refunded: i64,
}

pub struct Intent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: &'static str,
    pub capture_manual: bool,
    pub payment_method: Option<String>,
    pub latest_charge: Option<String>,
    pub last_error: Option<(String, String)>,
    pub amount_received: i64,
    pub amount_capturable: i64,
    pub amount_refunded: i64,
    pub next_action_url: Option<String>,
    pub metadata: HashMap<String, String>,
    pub created: i64,
}

impl Intent {
    pub fn new(id: String, amount: i64, currency: String) -> Intent {
        Intent {
            id,
            amount,
            currency,
            status: "requires_payment_method",
            capture_manual: false,
            payment_method: None,
            latest_charge: None,
            last_error: None,
            amount_received: 0,
            amount_capturable: 0,
            amount_refunded: 0,
            next_action_url: None,
            metadata: HashMap::new(),
            created: chrono::Utc::now().timestamp(),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "payment_intent", "amount": self.amount,
            "currency": self.currency, "status": self.status,
            "capture_method": if self.capture_manual { "manual" } else { "automatic" },
            "payment_method": self.payment_method, "latest_charge": self.latest_charge,
            "amount_received": self.amount_received, "amount_capturable": self.amount_capturable,
            "last_payment_error": self.last_error.as_ref().map(|(code, message)| json!({
                "type": "card_error", "code": "card_declined", "decline_code": code,
                "message": message,
            })),
            "next_action": self.next_action_url.as_ref().map(|url| json!({
                "type": "redirect_to_url", "redirect_to_url": {"url": url},
            })),
            "metadata": self.metadata, "created": self.created, "livemode": false,
        })
    }
}

pub struct Ledger {
    base_url: String,
    pub intents: HashMap<String, Intent>,
    pub keys: HashMap<String, Keyed>,
    /// Money movements per intent (authorizations and captures).
    pub charges: HashMap<String, u32>,
    pub adyen: HashMap<String, AdyenPayment>,
    seq: u64,
}

pub fn invalid(message: &str) -> Answered {
    let body = json!({"error": {"type": "invalid_request_error", "message": message}});
    (StatusCode::BAD_REQUEST, body, vec![])
}

pub fn missing(id: &str) -> Answered {
    let body = json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
        "message": format!("No such object: '{id}'")}});
    (StatusCode::NOT_FOUND, body, vec![])
}

fn state_error(pi: &Intent, action: &str) -> Answered {
    let body = json!({"error": {"type": "invalid_request_error",
        "code": "payment_intent_unexpected_state",
        "message": format!("You cannot {action} this PaymentIntent because it has a status of {}.", pi.status),
        "payment_intent": pi.json()}});
    (StatusCode::BAD_REQUEST, body, vec![])
}

impl Ledger {
    pub fn new(base_url: String) -> Ledger {
        Ledger {
            base_url,
            intents: HashMap::new(),
            keys: HashMap::new(),
            charges: HashMap::new(),
            adyen: HashMap::new(),
            seq: 0,
        }
    }

    pub fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!(
            "{prefix}_sbx{}{:08}",
            uuid::Uuid::new_v4().simple(),
            self.seq
        )
    }

    fn event(&mut self, kind: &str, object: Value) -> Notice {
        Notice::Stripe(json!({
            "id": self.next_id("evt"), "object": "event", "type": kind,
            "created": chrono::Utc::now().timestamp(), "livemode": false,
            "data": {"object": object},
        }))
    }

    /// The intent reached money: authorized (manual capture) or succeeded.
    fn charged(&mut self, id: &str) -> Vec<Notice> {
        *self.charges.entry(id.to_string()).or_default() += 1;
        let pi = self.intents.get_mut(id).expect("the caller checked");
        pi.last_error = None;
        pi.next_action_url = None;
        let kind = if pi.capture_manual {
            pi.status = "requires_capture";
            pi.amount_capturable = pi.amount;
            "payment_intent.amount_capturable_updated"
        } else {
            pi.status = "succeeded";
            pi.amount_received = pi.amount;
            "payment_intent.succeeded"
        };
        let object = pi.json();
        vec![self.event(kind, object)]
    }

    fn declined(&mut self, id: &str, code: &str, message: &str) -> Answered {
        let pi = self.intents.get_mut(id).expect("the caller checked");
        pi.status = "requires_payment_method";
        pi.next_action_url = None;
        pi.last_error = Some((code.to_string(), message.to_string()));
        let object = pi.json();
        let body = json!({"error": {"type": "card_error", "code": "card_declined",
            "decline_code": code, "message": message, "payment_intent": object}});
        let events = vec![self.event("payment_intent.payment_failed", object)];
        (StatusCode::PAYMENT_REQUIRED, body, events)
    }

    /// Off-session, a card that needs 3-D Secure declines (`authentication_required`), as
    /// Stripe's does: nobody is there to authenticate.
    pub fn confirm(&mut self, id: &str, method: Option<String>, off_session: bool) -> Answered {
        let charge = self.next_id("ch");
        let base = self.base_url.clone();
        let pi = self.intents.get_mut(id).expect("the caller checked");
        if !matches!(
            pi.status,
            "requires_payment_method" | "requires_confirmation"
        ) {
            return state_error(pi, "confirm");
        }
        if let Some(m) = method {
            pi.payment_method = Some(m);
        }
        let Some(card) = pi.payment_method.as_deref().and_then(Card::from_token) else {
            return invalid("payment_method is missing or unknown");
        };
        pi.latest_charge = Some(charge);
        match card.behaviour() {
            Behaviour::Succeeds => {
                let events = self.charged(id);
                (StatusCode::OK, self.intents[id].json(), events)
            }
            Behaviour::Declines(code) => {
                let message = match code {
                    "insufficient_funds" => "Your card has insufficient funds.",
                    _ => "Your card was declined.",
                };
                self.declined(id, code, message)
            }
            Behaviour::RequiresAction if off_session => self.declined(
                id,
                "authentication_required",
                "This payment requires authentication by the customer.",
            ),
            Behaviour::RequiresAction => {
                pi.status = "requires_action";
                pi.next_action_url = Some(format!("{base}/sandbox/3ds/{id}"));
                let object = pi.json();
                let events = vec![self.event("payment_intent.requires_action", object.clone())];
                (StatusCode::OK, object, events)
            }
        }
    }

    pub fn authenticate(&mut self, id: &str, succeed: bool) -> Option<Vec<Notice>> {
        let pi = self.intents.get(id)?;
        if pi.status != "requires_action" {
            return None;
        }
        Some(if succeed {
            self.charged(id)
        } else {
            let msg = "The customer did not authenticate.";
            self.declined(id, "authentication_required", msg).2
        })
    }

    pub fn capture(&mut self, id: &str, amount: Option<i64>) -> Answered {
        let pi = self.intents.get_mut(id).expect("the caller checked");
        if pi.status != "requires_capture" {
            return state_error(pi, "capture");
        }
        let amount = amount.unwrap_or(pi.amount_capturable);
        if amount <= 0 || amount > pi.amount_capturable {
            return invalid("amount_to_capture exceeds the capturable amount");
        }
        pi.status = "succeeded";
        pi.amount_received = amount;
        pi.amount_capturable = 0;
        let object = pi.json();
        *self.charges.entry(id.to_string()).or_default() += 1;
        let events = vec![self.event("payment_intent.succeeded", object.clone())];
        (StatusCode::OK, object, events)
    }

    pub fn cancel(&mut self, id: &str) -> Answered {
        let pi = self.intents.get_mut(id).expect("the caller checked");
        if matches!(pi.status, "succeeded" | "canceled" | "processing") {
            return state_error(pi, "cancel");
        }
        pi.status = "canceled";
        pi.amount_capturable = 0;
        let object = pi.json();
        let events = vec![self.event("payment_intent.canceled", object.clone())];
        (StatusCode::OK, object, events)
    }

    pub fn refund(&mut self, id: &str, amount: Option<i64>, ours: Option<String>) -> Answered {
        let refund_id = self.next_id("re");
        let Some(pi) = self.intents.get_mut(id) else {
            return missing(id);
        };
        let left = pi.amount_received - pi.amount_refunded;
        let amount = amount.unwrap_or(left);
        if pi.status != "succeeded" || amount <= 0 || amount > left {
            return invalid("the amount exceeds what is left to refund");
        }
        pi.amount_refunded += amount;
        let object = json!({
            "id": refund_id, "object": "refund", "amount": amount, "currency": pi.currency,
            "payment_intent": id, "status": "succeeded", "metadata": {"refund": ours},
        });
        let events = vec![self.event("refund.updated", object.clone())];
        (StatusCode::OK, object, events)
    }
}
