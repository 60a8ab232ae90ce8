//! Rows to and from `saas.payment.v1` messages.

use platform::grpc::timestamp;
use rpc::common::v1::Money;
use rpc::payment::v1 as pb;

use crate::domain::intent::{CaptureMethod, Outcome, Status};
use crate::domain::provider::Provider;
use crate::store::dunning::{DunningRow, DunningStatus};
use crate::store::intents::{AttemptRow, IntentRow};
use crate::store::methods::MethodRow;
use crate::store::refunds::{RefundRow, RefundStatus};

pub fn provider_pb(p: Provider) -> pb::Provider {
    match p {
        Provider::Stripe => pb::Provider::Stripe,
        Provider::Adyen => pb::Provider::Adyen,
        Provider::Sandbox => pb::Provider::Sandbox,
    }
}

pub fn provider(p: pb::Provider) -> Option<Provider> {
    match p {
        pb::Provider::Unspecified => None,
        pb::Provider::Stripe => Some(Provider::Stripe),
        pb::Provider::Adyen => Some(Provider::Adyen),
        pb::Provider::Sandbox => Some(Provider::Sandbox),
    }
}

fn status_pb(s: Status) -> pb::IntentStatus {
    match s {
        Status::RequiresPaymentMethod => pb::IntentStatus::RequiresPaymentMethod,
        Status::RequiresConfirmation => pb::IntentStatus::RequiresConfirmation,
        Status::RequiresAction => pb::IntentStatus::RequiresAction,
        Status::Processing => pb::IntentStatus::Processing,
        Status::RequiresCapture => pb::IntentStatus::RequiresCapture,
        Status::Succeeded => pb::IntentStatus::Succeeded,
        Status::Canceled => pb::IntentStatus::Canceled,
    }
}

fn outcome_pb(o: Outcome) -> pb::AttemptOutcome {
    match o {
        Outcome::Pending => pb::AttemptOutcome::Pending,
        Outcome::Succeeded => pb::AttemptOutcome::Succeeded,
        Outcome::Authorized => pb::AttemptOutcome::Authorized,
        Outcome::RequiresAction => pb::AttemptOutcome::RequiresAction,
        Outcome::Declined => pb::AttemptOutcome::Declined,
        Outcome::Error => pb::AttemptOutcome::Error,
    }
}

pub fn capture(c: pb::CaptureMethod) -> CaptureMethod {
    match c {
        pb::CaptureMethod::Automatic => CaptureMethod::Automatic,
        pb::CaptureMethod::Manual => CaptureMethod::Manual,
    }
}

/// An optional string field: empty is unset.
pub fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub fn method_pb(m: MethodRow) -> pb::PaymentMethod {
    pb::PaymentMethod {
        id: m.id.to_string(),
        tenant_id: m.tenant_id.to_string(),
        provider: provider_pb(m.provider) as i32,
        psp_token: m.psp_token,
        brand: m.brand,
        last4: m.last4,
        exp_month: m.exp_month.max(0) as u32,
        exp_year: m.exp_year.max(0) as u32,
        is_default: m.is_default,
        created_at: Some(timestamp(m.created_at)),
        detached_at: m.detached_at.map(timestamp),
    }
}

fn attempt_pb(a: AttemptRow) -> pb::PaymentAttempt {
    pb::PaymentAttempt {
        number: a.number.max(0) as u32,
        provider: provider_pb(a.provider) as i32,
        payment_method_id: a.payment_method_id.to_string(),
        psp_idempotency_key: a.psp_idempotency_key,
        psp_reference: a.psp_reference.unwrap_or_default(),
        outcome: outcome_pb(a.outcome) as i32,
        failure_code: a.failure_code.unwrap_or_default(),
        failure_message: a.failure_message.unwrap_or_default(),
        created_at: Some(timestamp(a.created_at)),
        completed_at: a.completed_at.map(timestamp),
    }
}

pub fn intent_pb(
    r: IntentRow,
    attempts: Vec<AttemptRow>,
    dunning: Option<&DunningRow>,
) -> pb::PaymentIntent {
    pb::PaymentIntent {
        id: r.id.to_string(),
        tenant_id: r.tenant_id.to_string(),
        invoice_id: r.invoice_id.map(|i| i.to_string()).unwrap_or_default(),
        amount: Some(Money {
            amount_cents: r.amount_minor,
            currency: r.currency,
        }),
        status: status_pb(r.status) as i32,
        payment_method_id: r
            .payment_method_id
            .map(|m| m.to_string())
            .unwrap_or_default(),
        attempts: attempts.into_iter().map(attempt_pb).collect(),
        next_retry_at: dunning
            .filter(|d| d.status == DunningStatus::Active)
            .and_then(|d| d.next_retry_at)
            .map(timestamp),
        created_at: Some(timestamp(r.created_at)),
        capture_method: match r.capture_method {
            CaptureMethod::Automatic => pb::CaptureMethod::Automatic,
            CaptureMethod::Manual => pb::CaptureMethod::Manual,
        } as i32,
        amount_received: r.amount_received,
        amount_capturable: r.amount_capturable,
        amount_refunded: r.amount_refunded,
        next_action_url: r.next_action_url.unwrap_or_default(),
        last_failure_code: r.last_failure_code.unwrap_or_default(),
        last_failure_message: r.last_failure_message.unwrap_or_default(),
        provider: r.provider.map_or(pb::Provider::Unspecified, provider_pb) as i32,
        psp_intent_id: r.psp_intent_id.unwrap_or_default(),
        updated_at: Some(timestamp(r.updated_at)),
    }
}

pub fn refund_pb(r: RefundRow) -> pb::Refund {
    pb::Refund {
        id: r.id.to_string(),
        tenant_id: r.tenant_id.to_string(),
        payment_intent_id: r.intent_id.to_string(),
        amount: Some(Money {
            amount_cents: r.amount_minor,
            currency: r.currency,
        }),
        status: match r.status {
            RefundStatus::Pending => pb::RefundStatus::Pending,
            RefundStatus::Succeeded => pb::RefundStatus::Succeeded,
            RefundStatus::Failed => pb::RefundStatus::Failed,
        } as i32,
        reason: r.reason,
        psp_reference: r.psp_reference.unwrap_or_default(),
        failure_code: r.failure_code.unwrap_or_default(),
        created_at: Some(timestamp(r.created_at)),
    }
}

pub fn schedule_pb(
    d: DunningRow,
    planned: &crate::domain::dunning::Schedule,
) -> pb::DunningSchedule {
    let steps = (0..planned.retries())
        .map(|n| pb::DunningStep {
            attempt: n as u32 + 1,
            at: planned.due(d.started_at, n).map(timestamp),
            done: (n as i32) < d.retries_done,
            outcome: d.outcomes.get(n).cloned().unwrap_or_default(),
        })
        .collect();
    pb::DunningSchedule {
        payment_intent_id: d.intent_id.to_string(),
        invoice_id: d.invoice_id.map(|i| i.to_string()).unwrap_or_default(),
        steps,
        exhausted: d.status == DunningStatus::Exhausted,
        recovered_at: (d.status == DunningStatus::Recovered)
            .then_some(d.ended_at)
            .flatten()
            .map(timestamp),
    }
}
