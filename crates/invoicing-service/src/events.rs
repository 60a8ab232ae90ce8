//! Events: the ones invoicing publishes (through the outbox, in the transaction that made
//! the change) and the ones it consumes — `billing.run.completed` (the run is recorded and
//! the assembler woken; the run record is durable, the event is the nudge) and
//! `payment.intent.succeeded` (the invoice is marked paid, once; an amount or currency that
//! does not match is flagged, not marked paid).

use std::sync::Arc;

use chrono::Utc;
use event_types::{
    CreditNoteCreated, InvoiceCreated, InvoicePaid, InvoiceReady, InvoiceRef, InvoiceVoided,
    PaymentSucceeded, RunCompleted, data,
};
use platform::events::{CloudEvent, EventHandler, HandlerError, enqueue};
use sqlx::PgConnection;
use tokio::sync::Notify;

use crate::domain::lifecycle::{Action, Kind, Status};
use crate::domain::parties::Snapshot;
use crate::store::invoices::{self, Change, InvoiceRow};
use crate::store::runs;

const SOURCE: &str = "/services/invoicing";

fn reference(r: &InvoiceRow) -> InvoiceRef {
    InvoiceRef {
        invoice_id: r.id.clone(),
        tenant_id: r.tenant_id.clone(),
        kind: r.kind.to_string(),
        subscription_id: r.subscription_id.clone(),
        period_start: r.period_start,
        currency: r.currency.clone(),
    }
}

fn event(kind: &str, r: &InvoiceRow, payload: serde_json::Value) -> CloudEvent {
    CloudEvent::new(SOURCE, kind, payload)
        .with_tenant(r.tenant_id.as_str())
        .with_subject(r.id.as_str())
}

/// `invoice.created` for a new draft.
pub fn created(r: &InvoiceRow) -> CloudEvent {
    let payload = InvoiceCreated {
        invoice: reference(r),
        finalize_after: r.finalize_after,
    };
    event("invoice.created", r, data(&payload))
}

/// What finalizing publishes: `invoice.ready` (and `invoice.paid` when there was nothing to
/// pay) or `credit_note.created`.
pub fn issued(r: &InvoiceRow, snapshot: Option<&Snapshot>) -> Vec<CloudEvent> {
    let number = r.number.clone().unwrap_or_default();
    let issued_at = r.issued_at.unwrap_or(r.created_at);
    match r.kind {
        Kind::CreditNote => vec![event(
            "credit_note.created",
            r,
            data(&CreditNoteCreated {
                invoice: reference(r),
                number,
                amount_minor: r.amount_due_minor.unwrap_or(0),
                issued_at,
                follows: r.follows.clone().unwrap_or_else(|| r.id.clone()),
                pdf_key: r.pdf_key.clone(),
            }),
        )],
        Kind::Invoice => {
            let mut out = vec![event(
                "invoice.ready",
                r,
                data(&InvoiceReady {
                    invoice: reference(r),
                    number,
                    amount_due_minor: r.amount_due_minor.unwrap_or(0),
                    issued_at,
                    due_at: r.due_at.unwrap_or(issued_at),
                    pdf_key: r.pdf_key.clone(),
                    billing_email: snapshot.and_then(|s| s.buyer.email.clone()),
                    follows: r.follows.clone(),
                }),
            )];
            if r.status == Status::Paid {
                out.push(paid(r));
            }
            out
        }
    }
}

pub fn paid(r: &InvoiceRow) -> CloudEvent {
    let payload = InvoicePaid {
        invoice: reference(r),
        number: r.number.clone().unwrap_or_default(),
        amount_paid_minor: r.amount_due_minor.unwrap_or(0),
        paid_at: r.paid_at.unwrap_or_else(Utc::now),
        payment_intent_id: r.payment_intent_id.clone(),
    };
    event("invoice.paid", r, data(&payload))
}

pub fn voided(r: &InvoiceRow) -> CloudEvent {
    let payload = InvoiceVoided {
        invoice: reference(r),
        number: r.number.clone(),
        reason: r.void_reason.clone().unwrap_or_default(),
    };
    event("invoice.voided", r, data(&payload))
}

/// An event's payload, or a permanent failure (a malformed event never gets better).
fn payload<T: serde::de::DeserializeOwned>(event: &CloudEvent) -> Result<T, HandlerError> {
    event_types::read(&event.data)
        .map_err(|e| HandlerError::Permanent(format!("{}: {e}", event.event_type)))
}

/// `billing.run.completed` → a run to invoice.
#[derive(Debug, Clone)]
pub struct RunsCompleted {
    pub wake: Arc<Notify>,
}

impl EventHandler for RunsCompleted {
    async fn handle(&self, tx: &mut PgConnection, event: &CloudEvent) -> Result<(), HandlerError> {
        let done: RunCompleted = payload(event)?;
        runs::received(tx, &done.run.run_id).await?;
        // The assembler may look before this transaction commits; it also polls.
        self.wake.notify_one();
        Ok(())
    }
}

/// `payment.intent.succeeded` → the invoice is paid.
#[derive(Debug, Clone)]
pub struct PaymentsSucceeded;

impl EventHandler for PaymentsSucceeded {
    async fn handle(&self, tx: &mut PgConnection, event: &CloudEvent) -> Result<(), HandlerError> {
        let p: PaymentSucceeded = payload(event)?;
        // A payment not made for an invoice is none of invoicing's business.
        let Some(invoice) = p.invoice_id.clone() else {
            return Ok(());
        };
        match pay(tx, &invoice, &p).await? {
            Paid::Marked | Paid::Already => Ok(()),
            Paid::Flagged(why) => {
                metrics::counter!("invoicing_payment_mismatches_total").increment(1);
                tracing::warn!(%invoice, intent = %p.payment_intent_id, %why,
                    "payment flagged, invoice not marked paid");
                Ok(())
            }
        }
    }
}

/// What a payment did to its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    Marked,
    /// The same payment was already applied.
    Already,
    /// Not applied; the reason is stored on the invoice.
    Flagged(String),
}

/// Applies a payment to its invoice in the caller's transaction (the consumer's, or the
/// operator's `MarkPaid`).
pub async fn pay(
    tx: &mut PgConnection,
    invoice: &ids::InvoiceId,
    p: &PaymentSucceeded,
) -> Result<Paid, crate::error::InvoicingError> {
    let Some(inv) = invoices::lock(tx, invoice, Some(&p.tenant_id), false).await? else {
        return Err(crate::error::InvoicingError::NotFound("invoice"));
    };
    let due = inv.amount_due_minor.unwrap_or(0);
    let why = if inv.status == Status::Paid {
        if inv.payment_intent_id.as_deref() == Some(p.payment_intent_id.as_str()) {
            return Ok(Paid::Already);
        }
        format!(
            "payment {} arrived for an invoice already paid",
            p.payment_intent_id
        )
    } else if inv.kind == Kind::CreditNote {
        format!("payment {} names a credit note", p.payment_intent_id)
    } else if p.currency != inv.currency || p.amount_minor != due {
        format!(
            "payment {} of {} {} does not match the amount due of {} {}",
            p.payment_intent_id, p.amount_minor, p.currency, due, inv.currency
        )
    } else {
        match inv.status.apply(Action::Pay) {
            Ok(_) => {
                let row = invoices::set_status(
                    tx,
                    &inv.id,
                    Status::Paid,
                    &Change {
                        paid_at: Some(Utc::now()),
                        payment_intent_id: Some(&p.payment_intent_id),
                        ..Change::default()
                    },
                )
                .await?;
                enqueue(tx, &paid(&row)).await?;
                return Ok(Paid::Marked);
            }
            Err(e) => format!("payment {}: {e}", p.payment_intent_id),
        }
    };
    invoices::flag_payment(tx, &inv.id, &why).await?;
    Ok(Paid::Flagged(why))
}
