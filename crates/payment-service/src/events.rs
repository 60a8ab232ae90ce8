//! Events: the ones the payment service publishes (through the outbox, in the transaction
//! that made the change) and the ones it consumes — `invoice.ready` (an intent is created for
//! the amount due, to be confirmed off-session by the [`worker`](crate::worker)),
//! `invoice.paid` by another way and `invoice.voided` (the invoice's open intent is canceled
//! and its dunning ends: nothing is charged for an invoice that no longer asks for it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_types::{
    DunningExhausted, InvoicePaid, InvoiceReady, InvoiceVoided, PaymentFailed, PaymentRefunded,
    PaymentSucceeded, data,
};
use platform::events::{CloudEvent, EventHandler, HandlerError};
use sqlx::PgConnection;
use tokio::sync::Notify;

use crate::domain::intent::{CaptureMethod, Status};
use crate::error::PaymentError;
use crate::store::dunning::{self as dunning_store, DunningStatus};
use crate::store::intents::{self, IntentRow, NewIntent};
use crate::store::{methods, refunds::RefundRow};

const SOURCE: &str = "/services/payment";

fn event(kind: &str, r: &IntentRow, payload: serde_json::Value) -> CloudEvent {
    CloudEvent::new(SOURCE, kind, payload)
        .with_tenant(r.tenant_id.as_str())
        .with_subject(r.id.as_str())
}

pub fn succeeded(r: &IntentRow) -> CloudEvent {
    let payload = PaymentSucceeded {
        payment_intent_id: r.id.to_string(),
        tenant_id: r.tenant_id.clone(),
        invoice_id: r.invoice_id.clone(),
        amount_minor: r.amount_received,
        currency: r.currency.clone(),
    };
    event("payment.intent.succeeded", r, data(&payload))
}

pub fn failed(r: &IntentRow, attempt: u32, next_retry_at: Option<DateTime<Utc>>) -> CloudEvent {
    let payload = PaymentFailed {
        payment_intent_id: r.id.to_string(),
        tenant_id: r.tenant_id.clone(),
        invoice_id: r.invoice_id.clone(),
        amount_minor: r.amount_minor,
        currency: r.currency.clone(),
        attempt,
        failure_code: r.last_failure_code.clone().unwrap_or_default(),
        failure_message: r.last_failure_message.clone().unwrap_or_default(),
        next_retry_at,
    };
    event("payment.intent.failed", r, data(&payload))
}

pub fn refunded(r: &IntentRow, refund: &RefundRow) -> CloudEvent {
    let payload = PaymentRefunded {
        refund_id: refund.id.to_string(),
        payment_intent_id: r.id.to_string(),
        tenant_id: r.tenant_id.clone(),
        invoice_id: r.invoice_id.clone(),
        amount_minor: refund.amount_minor,
        currency: refund.currency.clone(),
        amount_refunded_minor: r.amount_refunded,
    };
    event("payment.refunded", r, data(&payload))
}

pub fn exhausted(r: &IntentRow, retries: u32) -> CloudEvent {
    let payload = DunningExhausted {
        payment_intent_id: r.id.to_string(),
        tenant_id: r.tenant_id.clone(),
        invoice_id: r.invoice_id.clone(),
        retries,
    };
    event("payment.dunning.exhausted", r, data(&payload))
}

/// An event's payload, or a permanent failure (a malformed event never gets better).
fn payload<T: serde::de::DeserializeOwned>(event: &CloudEvent) -> Result<T, HandlerError> {
    event_types::read(&event.data)
        .map_err(|e| HandlerError::Permanent(format!("{}: {e}", event.event_type)))
}

/// `invoice.ready` → an intent for the amount due, with the tenant's default method. Without
/// one the invoice waits: the intent needs a method, and dunning starts at once.
#[derive(Debug, Clone)]
pub struct InvoicesReady {
    pub schedule: crate::domain::dunning::Schedule,
    pub wake: Arc<Notify>,
}

impl EventHandler for InvoicesReady {
    async fn handle(&self, tx: &mut PgConnection, event: &CloudEvent) -> Result<(), HandlerError> {
        let ready: InvoiceReady = payload(event)?;
        let inv = &ready.invoice;
        if ready.amount_due_minor <= 0 || inv.kind != "invoice" {
            return Ok(());
        }
        if intents::of_invoice(tx, &inv.invoice_id)
            .await
            .map_err(PaymentError::from)?
            .is_some()
        {
            return Ok(());
        }
        let method = methods::default_of(tx, &inv.tenant_id)
            .await
            .map_err(PaymentError::from)?;
        let row = intents::insert(
            tx,
            &NewIntent {
                tenant: &inv.tenant_id,
                invoice: Some(&inv.invoice_id),
                amount_minor: ready.amount_due_minor,
                currency: &inv.currency,
                capture: CaptureMethod::Automatic,
                off_session: true,
                method: method.as_ref().map(|m| (&m.id, m.provider)),
                idempotency_key: None,
                request_digest: None,
            },
        )
        .await
        .map_err(PaymentError::from)?;
        let Some(mut row) = row else {
            return Ok(());
        };
        if row.status == Status::RequiresPaymentMethod {
            crate::settle::no_method(tx, &self.schedule, &mut row, Utc::now())
                .await
                .map_err(HandlerError::from)?;
        }
        self.wake.notify_one();
        Ok(())
    }
}

/// `invoice.paid` (by hand, or by another intent) and `invoice.voided` → the invoice's open
/// intent is canceled and its dunning ends.
#[derive(Debug, Clone)]
pub struct InvoicesSettled;

impl EventHandler for InvoicesSettled {
    async fn handle(&self, tx: &mut PgConnection, event: &CloudEvent) -> Result<(), HandlerError> {
        let (invoice, paid_by) = match event.event_type.as_str() {
            "invoice.paid" => {
                let p: InvoicePaid = payload(event)?;
                (p.invoice.invoice_id, p.payment_intent_id)
            }
            _ => {
                let v: InvoiceVoided = payload(event)?;
                (v.invoice.invoice_id, None)
            }
        };
        let Some(intent) = intents::of_invoice(tx, &invoice)
            .await
            .map_err(PaymentError::from)?
        else {
            return Ok(());
        };
        if paid_by.as_deref() == Some(intent.id.as_str()) {
            return Ok(());
        }
        let mut intent = intents::get(tx, &intent.id, None, true)
            .await
            .map_err(PaymentError::from)?
            .ok_or(HandlerError::Transient("intent vanished".into()))?;
        // Only what has not moved money yet is canceled; a processing attempt finishes, and a
        // payment that lands on a settled invoice is flagged by invoicing.
        if let Ok(Some(to)) = intent.status.cancel() {
            intent.status = to;
            intents::save(tx, &intent)
                .await
                .map_err(PaymentError::from)?;
        }
        end_dunning(tx, &intent, DunningStatus::Recovered)
            .await
            .map_err(PaymentError::from)?;
        Ok(())
    }
}

/// Ends an intent's dunning, if it runs or ran out.
pub async fn end_dunning(
    tx: &mut PgConnection,
    intent: &IntentRow,
    to: DunningStatus,
) -> Result<(), sqlx::Error> {
    if let Some(mut d) = dunning_store::get(tx, &intent.id, true).await?
        && d.status != DunningStatus::Recovered
    {
        d.status = to;
        d.next_retry_at = None;
        d.ended_at = Some(Utc::now());
        dunning_store::save(tx, &d).await?;
    }
    Ok(())
}
