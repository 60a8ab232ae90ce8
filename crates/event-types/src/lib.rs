//! The contracts between services: the `data` of every CloudEvent a service publishes, one
//! Rust type per payload, used by the producer to build it and by every consumer to read it
//! (never `json!` or `data.get("…")`). [`TYPES`] lists every event type with its payload;
//! [`Payload::decode`] reads any of them, and the tests decode one of each.
//!
//! Adding a field is compatible (consumers ignore what they do not know; a new optional field
//! has `#[serde(default)]`); renaming or removing one is a new event type.

use chrono::{DateTime, Utc};
use ids::{InvoiceId, PlanId, RunId, SubscriptionId, TenantId, UserId};
use serde::{Deserialize, Serialize};

/// `user.created|updated|deactivated|reactivated|deleted` (user service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChanged {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub email: String,
    /// `active` or `deactivated`.
    pub status: String,
    pub roles: Vec<String>,
}

/// `tenant.created` (user service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    pub tenant_id: TenantId,
    pub name: String,
    pub slug: String,
}

/// `tenant.suspended|reactivated` (user service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStatusChanged {
    pub tenant_id: TenantId,
}

/// What a plan change prorated (on `subscription.plan_changed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    pub from_plan_id: PlanId,
    pub from_plan_version: u32,
    pub currency: String,
    pub proration_credit_minor: i64,
    pub proration_charge_minor: i64,
}

/// `subscription.*` (subscription service): the subscription after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionChanged {
    pub tenant_id: TenantId,
    pub subscription_id: SubscriptionId,
    pub plan_id: PlanId,
    pub plan_version: i32,
    pub status: String,
    pub seats: i32,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// On `subscription.seats_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_seats: Option<i32>,
    /// On `subscription.plan_changed`.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub plan_change: Option<PlanChange>,
}

/// A billing run as its events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRun {
    pub run_id: RunId,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Empty: every billable tenant.
    pub tenant_ids: Vec<TenantId>,
    pub status: String,
    pub records_processed: i64,
}

/// Records of one tenant in a completed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecords {
    pub tenant_id: TenantId,
    pub records: i64,
    /// An exact decimal.
    pub quantity: String,
}

/// Money of one tenant in a completed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantAmount {
    pub tenant_id: TenantId,
    pub currency: String,
    pub amount_minor: i64,
}

/// `billing.run.completed` (billing service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCompleted {
    #[serde(flatten)]
    pub run: BillingRun,
    pub totals: Vec<TenantRecords>,
    pub amounts: Vec<TenantAmount>,
}

/// `billing.run.failed` (billing service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailed {
    #[serde(flatten)]
    pub run: BillingRun,
    pub error: String,
}

/// An invoice or credit note as its events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRef {
    pub invoice_id: InvoiceId,
    pub tenant_id: TenantId,
    /// `invoice` or `credit_note`.
    pub kind: String,
    pub subscription_id: String,
    pub period_start: DateTime<Utc>,
    pub currency: String,
}

/// `invoice.created` (invoicing service): a draft opened for a subscription period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceCreated {
    #[serde(flatten)]
    pub invoice: InvoiceRef,
    /// When the draft finalizes unless finalized earlier.
    pub finalize_after: DateTime<Utc>,
}

/// `invoice.ready` (invoicing service): an invoice was finalized and is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceReady {
    #[serde(flatten)]
    pub invoice: InvoiceRef,
    pub number: String,
    pub amount_due_minor: i64,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// Where the PDF is in the blob store, once rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdf_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_email: Option<String>,
    /// Set on a supplementary invoice: the period's original invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<InvoiceId>,
}

/// `credit_note.created` (invoicing service): a credit note was issued against an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteCreated {
    #[serde(flatten)]
    pub invoice: InvoiceRef,
    pub number: String,
    /// Negative: what the customer is credited.
    pub amount_minor: i64,
    pub issued_at: DateTime<Utc>,
    /// The invoice it credits.
    pub follows: InvoiceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdf_key: Option<String>,
}

/// `invoice.paid` (invoicing service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoicePaid {
    #[serde(flatten)]
    pub invoice: InvoiceRef,
    pub number: String,
    pub amount_paid_minor: i64,
    pub paid_at: DateTime<Utc>,
    /// Empty when the operator marked it paid by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent_id: Option<String>,
}

/// `invoice.voided` (invoicing service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceVoided {
    #[serde(flatten)]
    pub invoice: InvoiceRef,
    /// Unset for a draft voided before it had a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub reason: String,
}

/// `payment.intent.succeeded` (payment service): a payment went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub payment_intent_id: String,
    pub tenant_id: TenantId,
    /// Unset for a payment not made for an invoice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    pub amount_minor: i64,
    pub currency: String,
}

/// `payment.intent.failed` (payment service): an attempt was declined (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub payment_intent_id: String,
    pub tenant_id: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    pub amount_minor: i64,
    pub currency: String,
    /// The attempt's number (0 when no attempt could be made: no payment method).
    pub attempt: u32,
    /// The PSP's code (`insufficient_funds`, …) or ours (`no_payment_method`).
    pub failure_code: String,
    pub failure_message: String,
    /// When dunning retries next; unset when it does not (not dunned, or exhausted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// `payment.refunded` (payment service): a refund went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub refund_id: String,
    pub payment_intent_id: String,
    pub tenant_id: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    pub amount_minor: i64,
    pub currency: String,
    /// Everything refunded of the payment so far, this refund included.
    pub amount_refunded_minor: i64,
}

/// `payment.dunning.exhausted` (payment service): the last retry failed; the tenant's
/// subscription is suspended until a payment succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DunningExhausted {
    pub payment_intent_id: String,
    pub tenant_id: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    pub retries: u32,
}

/// Which payload an event type carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    UserChanged,
    TenantCreated,
    TenantStatusChanged,
    SubscriptionChanged,
    RunRequested,
    RunCompleted,
    RunFailed,
    InvoiceCreated,
    InvoiceReady,
    CreditNoteCreated,
    InvoicePaid,
    InvoiceVoided,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    DunningExhausted,
}

/// Every event type a service publishes, with its payload and producer. ARCHITECTURE.md's
/// subject table is this list.
pub const TYPES: &[(&str, Kind, &str)] = &[
    ("user.created", Kind::UserChanged, "user"),
    ("user.updated", Kind::UserChanged, "user"),
    ("user.deactivated", Kind::UserChanged, "user"),
    ("user.reactivated", Kind::UserChanged, "user"),
    ("user.deleted", Kind::UserChanged, "user"),
    ("tenant.created", Kind::TenantCreated, "user"),
    ("tenant.suspended", Kind::TenantStatusChanged, "user"),
    ("tenant.reactivated", Kind::TenantStatusChanged, "user"),
    (
        "subscription.created",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.plan_changed",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.seats_changed",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.cancel_scheduled",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.canceled",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.suspended",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.reactivated",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.past_due",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.trial_ended",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    (
        "subscription.renewed",
        Kind::SubscriptionChanged,
        "subscription",
    ),
    ("billing.run.requested", Kind::RunRequested, "billing"),
    ("billing.run.completed", Kind::RunCompleted, "billing"),
    ("billing.run.failed", Kind::RunFailed, "billing"),
    ("invoice.created", Kind::InvoiceCreated, "invoicing"),
    ("invoice.ready", Kind::InvoiceReady, "invoicing"),
    ("credit_note.created", Kind::CreditNoteCreated, "invoicing"),
    ("invoice.paid", Kind::InvoicePaid, "invoicing"),
    ("invoice.voided", Kind::InvoiceVoided, "invoicing"),
    (
        "payment.intent.succeeded",
        Kind::PaymentSucceeded,
        "payment",
    ),
    ("payment.intent.failed", Kind::PaymentFailed, "payment"),
    ("payment.refunded", Kind::PaymentRefunded, "payment"),
    (
        "payment.dunning.exhausted",
        Kind::DunningExhausted,
        "payment",
    ),
];

/// Any event's payload, read by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    UserChanged(UserChanged),
    TenantCreated(TenantCreated),
    TenantStatusChanged(TenantStatusChanged),
    SubscriptionChanged(SubscriptionChanged),
    RunRequested(BillingRun),
    RunCompleted(RunCompleted),
    RunFailed(RunFailed),
    InvoiceCreated(InvoiceCreated),
    InvoiceReady(InvoiceReady),
    CreditNoteCreated(CreditNoteCreated),
    InvoicePaid(InvoicePaid),
    InvoiceVoided(InvoiceVoided),
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
    DunningExhausted(DunningExhausted),
}

/// An event whose type is unknown or whose data does not fit its type.
#[derive(Debug)]
pub enum DecodeError {
    UnknownType(String),
    Data(serde_json::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownType(t) => write!(f, "unknown event type {t:?}"),
            DecodeError::Data(e) => write!(f, "event data: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads `data` as the payload of `T`.
pub fn read<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Result<T, DecodeError> {
    T::deserialize(data).map_err(DecodeError::Data)
}

/// `payload` as event data.
pub fn data<T: Serialize>(payload: &T) -> serde_json::Value {
    serde_json::to_value(payload).expect("event payloads are plain data")
}

impl Payload {
    pub fn decode(event_type: &str, data: &serde_json::Value) -> Result<Payload, DecodeError> {
        let kind = TYPES
            .iter()
            .find(|(t, _, _)| *t == event_type)
            .map(|(_, k, _)| *k)
            .ok_or_else(|| DecodeError::UnknownType(event_type.to_string()))?;
        Ok(match kind {
            Kind::UserChanged => Payload::UserChanged(read(data)?),
            Kind::TenantCreated => Payload::TenantCreated(read(data)?),
            Kind::TenantStatusChanged => Payload::TenantStatusChanged(read(data)?),
            Kind::SubscriptionChanged => Payload::SubscriptionChanged(read(data)?),
            Kind::RunRequested => Payload::RunRequested(read(data)?),
            Kind::RunCompleted => Payload::RunCompleted(read(data)?),
            Kind::RunFailed => Payload::RunFailed(read(data)?),
            Kind::InvoiceCreated => Payload::InvoiceCreated(read(data)?),
            Kind::InvoiceReady => Payload::InvoiceReady(read(data)?),
            Kind::CreditNoteCreated => Payload::CreditNoteCreated(read(data)?),
            Kind::InvoicePaid => Payload::InvoicePaid(read(data)?),
            Kind::InvoiceVoided => Payload::InvoiceVoided(read(data)?),
            Kind::PaymentSucceeded => Payload::PaymentSucceeded(read(data)?),
            Kind::PaymentFailed => Payload::PaymentFailed(read(data)?),
            Kind::PaymentRefunded => Payload::PaymentRefunded(read(data)?),
            Kind::DunningExhausted => Payload::DunningExhausted(read(data)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("ten_1").unwrap()
    }

    fn run() -> BillingRun {
        BillingRun {
            run_id: RunId::parse("run_0190f1e0c0de7000800000000000000a").unwrap(),
            period_start: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            period_end: DateTime::from_timestamp(1_702_000_000, 0).unwrap(),
            tenant_ids: vec![],
            status: "completed".into(),
            records_processed: 3,
        }
    }

    fn sub(extra: Option<PlanChange>) -> SubscriptionChanged {
        SubscriptionChanged {
            tenant_id: tenant(),
            subscription_id: SubscriptionId::parse("sub_0190f1e0c0de7000800000000000000b").unwrap(),
            plan_id: PlanId::parse("pro").unwrap(),
            plan_version: 2,
            status: "active".into(),
            seats: 4,
            period_start: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            period_end: DateTime::from_timestamp(1_702_000_000, 0).unwrap(),
            previous_seats: None,
            plan_change: extra,
        }
    }

    fn invoice() -> InvoiceRef {
        InvoiceRef {
            invoice_id: InvoiceId::parse("inv_0190f1e0c0de7000800000000000000d").unwrap(),
            tenant_id: tenant(),
            kind: "invoice".into(),
            subscription_id: "sub_0190f1e0c0de7000800000000000000b".into(),
            period_start: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            currency: "EUR".into(),
        }
    }

    /// One sample payload of `kind`, as its producer builds it.
    fn sample(kind: Kind) -> serde_json::Value {
        match kind {
            Kind::UserChanged => data(&UserChanged {
                tenant_id: tenant(),
                user_id: UserId::parse("usr_0190f1e0c0de7000800000000000000c").unwrap(),
                email: "a@b.example".into(),
                status: "active".into(),
                roles: vec!["member".into()],
            }),
            Kind::TenantCreated => data(&TenantCreated {
                tenant_id: tenant(),
                name: "Acme".into(),
                slug: "acme".into(),
            }),
            Kind::TenantStatusChanged => data(&TenantStatusChanged {
                tenant_id: tenant(),
            }),
            Kind::SubscriptionChanged => data(&sub(Some(PlanChange {
                from_plan_id: PlanId::parse("basic").unwrap(),
                from_plan_version: 1,
                currency: "EUR".into(),
                proration_credit_minor: -500,
                proration_charge_minor: 900,
            }))),
            Kind::RunRequested => data(&run()),
            Kind::RunCompleted => data(&RunCompleted {
                run: run(),
                totals: vec![TenantRecords {
                    tenant_id: tenant(),
                    records: 3,
                    quantity: "2.5".into(),
                }],
                amounts: vec![TenantAmount {
                    tenant_id: tenant(),
                    currency: "EUR".into(),
                    amount_minor: 1234,
                }],
            }),
            Kind::RunFailed => data(&RunFailed {
                run: run(),
                error: "deadline".into(),
            }),
            Kind::InvoiceCreated => data(&InvoiceCreated {
                invoice: invoice(),
                finalize_after: DateTime::from_timestamp(1_700_003_600, 0).unwrap(),
            }),
            Kind::InvoiceReady => data(&InvoiceReady {
                invoice: invoice(),
                number: "INV-2026-000001".into(),
                amount_due_minor: 5831,
                issued_at: DateTime::from_timestamp(1_700_003_600, 0).unwrap(),
                due_at: DateTime::from_timestamp(1_702_595_600, 0).unwrap(),
                pdf_key: Some("invoices/ten_1/inv_1.pdf".into()),
                billing_email: None,
                follows: None,
            }),
            Kind::CreditNoteCreated => data(&CreditNoteCreated {
                invoice: InvoiceRef {
                    kind: "credit_note".into(),
                    ..invoice()
                },
                number: "CN-2026-000001".into(),
                amount_minor: -1190,
                issued_at: DateTime::from_timestamp(1_700_003_600, 0).unwrap(),
                follows: InvoiceId::parse("inv_0190f1e0c0de7000800000000000000e").unwrap(),
                pdf_key: None,
            }),
            Kind::InvoicePaid => data(&InvoicePaid {
                invoice: invoice(),
                number: "INV-2026-000001".into(),
                amount_paid_minor: 5831,
                paid_at: DateTime::from_timestamp(1_700_007_200, 0).unwrap(),
                payment_intent_id: Some("pi_1".into()),
            }),
            Kind::InvoiceVoided => data(&InvoiceVoided {
                invoice: invoice(),
                number: None,
                reason: "duplicate".into(),
            }),
            Kind::PaymentSucceeded => data(&PaymentSucceeded {
                payment_intent_id: "pay_1".into(),
                tenant_id: tenant(),
                invoice_id: Some(invoice().invoice_id),
                amount_minor: 5831,
                currency: "EUR".into(),
            }),
            Kind::PaymentFailed => data(&PaymentFailed {
                payment_intent_id: "pay_1".into(),
                tenant_id: tenant(),
                invoice_id: Some(invoice().invoice_id),
                amount_minor: 5831,
                currency: "EUR".into(),
                attempt: 1,
                failure_code: "insufficient_funds".into(),
                failure_message: "Your card has insufficient funds.".into(),
                next_retry_at: Some(DateTime::from_timestamp(1_700_090_000, 0).unwrap()),
            }),
            Kind::PaymentRefunded => data(&PaymentRefunded {
                refund_id: "rfd_1".into(),
                payment_intent_id: "pay_1".into(),
                tenant_id: tenant(),
                invoice_id: None,
                amount_minor: 500,
                currency: "EUR".into(),
                amount_refunded_minor: 500,
            }),
            Kind::DunningExhausted => data(&DunningExhausted {
                payment_intent_id: "pay_1".into(),
                tenant_id: tenant(),
                invoice_id: Some(invoice().invoice_id),
                retries: 4,
            }),
        }
    }

    #[test]
    fn every_type_decodes_as_its_payload() {
        for (event_type, kind, _) in TYPES {
            let decoded = Payload::decode(event_type, &sample(*kind)).unwrap();
            let matches = matches!(
                (kind, &decoded),
                (Kind::UserChanged, Payload::UserChanged(_))
                    | (Kind::TenantCreated, Payload::TenantCreated(_))
                    | (Kind::TenantStatusChanged, Payload::TenantStatusChanged(_))
                    | (Kind::SubscriptionChanged, Payload::SubscriptionChanged(_))
                    | (Kind::RunRequested, Payload::RunRequested(_))
                    | (Kind::RunCompleted, Payload::RunCompleted(_))
                    | (Kind::RunFailed, Payload::RunFailed(_))
                    | (Kind::InvoiceCreated, Payload::InvoiceCreated(_))
                    | (Kind::InvoiceReady, Payload::InvoiceReady(_))
                    | (Kind::CreditNoteCreated, Payload::CreditNoteCreated(_))
                    | (Kind::InvoicePaid, Payload::InvoicePaid(_))
                    | (Kind::InvoiceVoided, Payload::InvoiceVoided(_))
                    | (Kind::PaymentSucceeded, Payload::PaymentSucceeded(_))
                    | (Kind::PaymentFailed, Payload::PaymentFailed(_))
                    | (Kind::PaymentRefunded, Payload::PaymentRefunded(_))
                    | (Kind::DunningExhausted, Payload::DunningExhausted(_))
            );
            assert!(matches, "{event_type}: {decoded:?}");
        }
        assert!(matches!(
            Payload::decode("user.exploded", &serde_json::json!({})),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            Payload::decode("tenant.suspended", &serde_json::json!({"tenant": 1})),
            Err(DecodeError::Data(_))
        ));
    }

    #[test]
    fn optional_parts_are_absent_unless_set_and_survive_a_round_trip() {
        let plain = data(&sub(None));
        assert!(plain.get("previous_seats").is_none());
        assert!(plain.get("from_plan_id").is_none());
        let back: SubscriptionChanged = read(&plain).unwrap();
        assert_eq!(back, sub(None));
        let changed: SubscriptionChanged = read(&sample(Kind::SubscriptionChanged)).unwrap();
        assert_eq!(changed.plan_change.unwrap().proration_charge_minor, 900);
    }
}
