//! PSP callbacks, as the gateway forwards them (raw body and headers). Nothing in one is
//! believed before its signature verifies ([`signature`](crate::domain::signature)); each
//! event is applied once (`psp_events`), and applied through [`settle`], which ignores news
//! older than what the intent already knows — so replayed and reordered callbacks have one
//! effect. A callback signed with the sandbox's secret can only touch sandbox intents, and a
//! Stripe-signed one only Stripe intents.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use ids::{PaymentIntentId, RefundId};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};

use crate::actions::settle_refund;
use crate::domain::intent::Outcome;
use crate::domain::provider::Provider;
use crate::domain::signature::{self, AdyenSigned, SignatureError};
use crate::error::PaymentError;
use crate::events::end_dunning;
use crate::psp::Answer;
use crate::psp::stripe::PaymentIntentObject;
use crate::settings::Settings;
use crate::settle::settle;
use crate::store::dunning::DunningStatus;
use crate::store::intents::{self, AttemptRow, IntentRow};
use crate::store::psp_events;
use crate::store::refunds::{self, RefundRow, RefundStatus};

type Result<T, E = PaymentError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Callbacks {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
}

/// What a callback did: whether anything in it was new, and its (first) event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub processed: bool,
    pub event_id: String,
}

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct StripeRefund {
    id: String,
    status: String,
    #[serde(default)]
    failure_reason: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

#[derive(Deserialize)]
struct AdyenNotification {
    #[serde(rename = "notificationItems")]
    items: Vec<AdyenWrapped>,
}

#[derive(Deserialize)]
struct AdyenWrapped {
    #[serde(rename = "NotificationRequestItem")]
    item: AdyenItem,
}

#[derive(Deserialize)]
struct AdyenItem {
    #[serde(flatten)]
    signed: AdyenSigned,
    #[serde(default, rename = "additionalData")]
    additional: HashMap<String, serde_json::Value>,
    #[serde(default)]
    reason: String,
}

fn malformed(e: serde_json::Error) -> PaymentError {
    PaymentError::invalid("body", format!("not a PSP event: {e}"))
}

impl Callbacks {
    pub async fn stripe(&self, body: &[u8], headers: &HashMap<String, String>) -> Result<Handled> {
        let header = headers.get("stripe-signature").map(String::as_str);
        let now = Utc::now().timestamp();
        let tolerance = self.settings.callback_tolerance_secs;
        let stripe: Vec<&str> = self
            .settings
            .stripe_webhook_secrets
            .iter()
            .map(|s| s.expose())
            .collect();
        let sandbox = [self.settings.sandbox_webhook_secret.expose()];
        let signer = match signature::stripe_verify(&stripe, header, body, now, tolerance) {
            Ok(()) => Provider::Stripe,
            Err(first) => match signature::stripe_verify(&sandbox, header, body, now, tolerance) {
                Ok(()) if self.settings.sandbox != crate::settings::SandboxMode::Off => {
                    Provider::Sandbox
                }
                _ => return Err(first.into()),
            },
        };
        let event: StripeEvent = serde_json::from_slice(body).map_err(malformed)?;
        let mut tx = self.pool.begin().await?;
        if !psp_events::first_sight(&mut tx, signer, &event.id, &event.kind).await? {
            return Ok(Handled {
                processed: false,
                event_id: event.id,
            });
        }
        if event.kind.starts_with("payment_intent.") {
            let pi: PaymentIntentObject =
                serde_json::from_value(event.data.object).map_err(malformed)?;
            self.stripe_intent(&mut tx, signer, &event.kind, &pi)
                .await?;
        } else if event.kind.starts_with("refund.") {
            let r: StripeRefund = serde_json::from_value(event.data.object).map_err(malformed)?;
            let status = match r.status.as_str() {
                "succeeded" => RefundStatus::Succeeded,
                "failed" | "canceled" => RefundStatus::Failed,
                _ => RefundStatus::Pending,
            };
            let ours = r
                .metadata
                .get("refund")
                .and_then(|id| RefundId::parse(id).ok());
            if let Some(id) = ours
                && let Some(row) = refund_of(&mut tx, &id, signer).await?
            {
                settle_refund(
                    &mut tx,
                    &row,
                    status,
                    Some(&r.id),
                    r.failure_reason.as_deref(),
                )
                .await?;
            }
        }
        tx.commit().await?;
        metrics::counter!("payment_callbacks_total", "provider" => signer.as_str()).increment(1);
        Ok(Handled {
            processed: true,
            event_id: event.id,
        })
    }

    async fn stripe_intent(
        &self,
        tx: &mut PgConnection,
        signer: Provider,
        kind: &str,
        pi: &PaymentIntentObject,
    ) -> Result<()> {
        let mut intent = match intents::lock_by_psp(tx, &[signer], &pi.id).await? {
            Some(i) => i,
            // The answer that named the PSP intent was lost; our id is in its metadata.
            None => {
                let ours = pi
                    .metadata
                    .get("payment_intent")
                    .and_then(|id| PaymentIntentId::parse(id).ok());
                match ours {
                    Some(id) => match intents::get(tx, &id, None, true).await? {
                        Some(i) if i.provider == Some(signer) => i,
                        _ => return Ok(()),
                    },
                    None => return Ok(()),
                }
            }
        };
        match kind {
            "payment_intent.canceled" => return cancel(tx, &mut intent).await,
            "payment_intent.succeeded"
            | "payment_intent.payment_failed"
            | "payment_intent.requires_action"
            | "payment_intent.amount_capturable_updated" => {}
            // Created, processing, …: nothing about a result.
            _ => return Ok(()),
        }
        let attempts = intents::attempts(tx, std::slice::from_ref(&intent.id)).await?;
        let Some(mut attempt) = current_attempt(attempts, pi.latest_charge.as_deref()) else {
            return Ok(());
        };
        let answer = pi.answer();
        settle(
            tx,
            &self.settings.dunning,
            &mut intent,
            &mut attempt,
            &answer,
            Utc::now(),
        )
        .await
    }

    pub async fn adyen(&self, body: &[u8]) -> Result<Handled> {
        let n: AdyenNotification = serde_json::from_slice(body).map_err(malformed)?;
        if n.items.is_empty() {
            return Err(PaymentError::invalid("notificationItems", "no items"));
        }
        let keys: Vec<&str> = self
            .settings
            .adyen_hmac_keys
            .iter()
            .map(|k| k.expose())
            .collect();
        if keys.is_empty() {
            return Err(SignatureError::Mismatch.into());
        }
        // Every item first: one forged item refuses them all.
        for (i, w) in n.items.iter().enumerate() {
            let sig = w
                .item
                .additional
                .get("hmacSignature")
                .and_then(|v| v.as_str());
            signature::adyen_verify(&keys, &w.item.signed, sig, i)?;
        }
        let mut tx = self.pool.begin().await?;
        let mut processed = false;
        let mut first = None;
        for w in &n.items {
            let s = &w.item.signed;
            let id = format!("{}:{}:{}", s.psp_reference, s.event_code, s.success);
            first.get_or_insert_with(|| id.clone());
            if psp_events::first_sight(&mut tx, Provider::Adyen, &id, &s.event_code).await? {
                processed = true;
                self.adyen_item(&mut tx, &w.item).await?;
            }
        }
        tx.commit().await?;
        metrics::counter!("payment_callbacks_total", "provider" => "adyen").increment(1);
        Ok(Handled {
            processed,
            event_id: first.unwrap_or_default(),
        })
    }

    async fn adyen_item(&self, tx: &mut PgConnection, item: &AdyenItem) -> Result<()> {
        let s = &item.signed;
        let success = s.success == "true";
        if s.event_code == "REFUND" || s.event_code == "REFUND_FAILED" {
            let status = if success && s.event_code == "REFUND" {
                RefundStatus::Succeeded
            } else {
                RefundStatus::Failed
            };
            if let Ok(id) = RefundId::parse(&s.merchant_reference)
                && let Some(row) = refund_of(tx, &id, Provider::Adyen).await?
            {
                let code = (!item.reason.is_empty()).then_some(item.reason.as_str());
                settle_refund(tx, &row, status, Some(&s.psp_reference), code).await?;
            }
            return Ok(());
        }
        let Ok(id) = PaymentIntentId::parse(&s.merchant_reference) else {
            return Ok(());
        };
        let Some(mut intent) = intents::get(tx, &id, None, true).await? else {
            return Ok(());
        };
        if intent.provider != Some(Provider::Adyen) {
            return Ok(());
        }
        let reference = match s.event_code.as_str() {
            "CAPTURE" | "CANCELLATION" => &s.original_reference,
            _ => &s.psp_reference,
        };
        let attempts = intents::attempts(tx, std::slice::from_ref(&intent.id)).await?;
        let Some(mut attempt) = current_attempt(attempts, Some(reference)) else {
            return Ok(());
        };
        let outcome = match (s.event_code.as_str(), success) {
            ("AUTHORISATION", true) => Outcome::Authorized,
            ("AUTHORISATION", false) => Outcome::Declined,
            ("CAPTURE", true) => Outcome::Succeeded,
            ("CANCELLATION", true) => return cancel(tx, &mut intent).await,
            _ => return Ok(()),
        };
        let mut answer = Answer::new(outcome);
        answer.psp_reference = Some(s.psp_reference.clone());
        if !success {
            answer.failure_code = Some(crate::psp::adyen::reason_code(&item.reason));
            answer.failure_message = Some(item.reason.clone());
        }
        settle(
            tx,
            &self.settings.dunning,
            &mut intent,
            &mut attempt,
            &answer,
            Utc::now(),
        )
        .await
    }
}

/// The attempt news about `reference` is for: the last one, if the reference is its — or it
/// has none yet (its answer was lost) and no earlier attempt has it. News of an attempt
/// overtaken by a later one finds nothing.
fn current_attempt(attempts: Vec<AttemptRow>, reference: Option<&str>) -> Option<AttemptRow> {
    let earlier = |r: &str| {
        attempts[..attempts.len().saturating_sub(1)]
            .iter()
            .any(|a| a.psp_reference.as_deref() == Some(r))
    };
    let last = attempts.last()?;
    let stale = match (reference, last.psp_reference.as_deref()) {
        (Some(theirs), Some(ours)) => theirs != ours,
        (Some(theirs), None) => earlier(theirs),
        (None, _) => false,
    };
    if stale {
        None
    } else {
        attempts.last().cloned()
    }
}

/// A refund a callback from `signer` may speak of: one of an intent that PSP handled.
async fn refund_of(
    tx: &mut PgConnection,
    id: &RefundId,
    signer: Provider,
) -> Result<Option<RefundRow>> {
    let Some(row) = refunds::get(tx, id).await? else {
        return Ok(None);
    };
    let intent = intents::get(tx, &row.intent_id, None, false).await?;
    Ok(intent.filter(|i| i.provider == Some(signer)).map(|_| row))
}

async fn cancel(tx: &mut PgConnection, intent: &mut IntentRow) -> Result<()> {
    if let Ok(Some(to)) = intent.status.cancel() {
        intent.status = to;
        intent.amount_capturable = 0;
        *intent = intents::save(tx, intent).await?;
        end_dunning(tx, intent, DunningStatus::Recovered).await?;
    }
    Ok(())
}
