//! Rows to and from `saas.invoicing.v1` messages.

use chrono::{DateTime, Utc};
use platform::grpc::timestamp;
use pricing::wire::decimal_pb;
use rpc::common::v1::{Money, Period};
use rpc::invoicing::v1 as pb;

use crate::domain::lifecycle::{Kind, Status};
use crate::error::InvoicingError;
use crate::store::invoices::{InvoiceRow, LineRow};
use crate::store::profiles::ProfileRow;
use crate::store::tax_rates::RateRow;

pub fn status_pb(s: Status) -> pb::InvoiceStatus {
    match s {
        Status::Draft => pb::InvoiceStatus::Draft,
        Status::Open => pb::InvoiceStatus::Open,
        Status::Paid => pb::InvoiceStatus::Paid,
        Status::Void => pb::InvoiceStatus::Void,
        Status::Uncollectible => pb::InvoiceStatus::Uncollectible,
    }
}

pub fn status(s: pb::InvoiceStatus) -> Option<Status> {
    match s {
        pb::InvoiceStatus::Unspecified => None,
        pb::InvoiceStatus::Draft => Some(Status::Draft),
        pb::InvoiceStatus::Open => Some(Status::Open),
        pb::InvoiceStatus::Paid => Some(Status::Paid),
        pb::InvoiceStatus::Void => Some(Status::Void),
        pb::InvoiceStatus::Uncollectible => Some(Status::Uncollectible),
    }
}

pub fn kind(k: pb::InvoiceKind) -> Option<Kind> {
    match k {
        pb::InvoiceKind::Unspecified => None,
        pb::InvoiceKind::Invoice => Some(Kind::Invoice),
        pb::InvoiceKind::CreditNote => Some(Kind::CreditNote),
    }
}

fn kind_pb(k: Kind) -> pb::InvoiceKind {
    match k {
        Kind::Invoice => pb::InvoiceKind::Invoice,
        Kind::CreditNote => pb::InvoiceKind::CreditNote,
    }
}

/// A required or optional instant of a request.
pub fn time(
    field: &'static str,
    t: &Option<prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, InvoicingError> {
    t.as_ref()
        .map(|t| {
            DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| InvoicingError::invalid(field, "out of range"))
        })
        .transpose()
}

fn line_pb(l: LineRow, currency: &str) -> pb::InvoiceLine {
    pb::InvoiceLine {
        description: l.description,
        quantity: Some(decimal_pb(l.quantity)),
        unit_amount: l.unit_amount.map(decimal_pb),
        amount: Some(Money {
            amount_cents: l.amount_minor,
            currency: currency.to_string(),
        }),
        net_minor: l.net_minor,
        tax_minor: l.tax_minor,
        gross_minor: l.gross_minor,
        charge_id: l.charge_id,
    }
}

pub fn invoice_pb(r: InvoiceRow, lines: Vec<LineRow>) -> pb::Invoice {
    let (tax_summary, tax_notice) = match &r.document {
        Some(doc) => (
            doc.tax_summary
                .iter()
                .map(|s| pb::TaxSummary {
                    rate: s.rate.as_ref().map(|r| pb::TaxRate {
                        id: r.id.clone(),
                        country: r.country.clone(),
                        region: r.region.clone().unwrap_or_default(),
                        percentage: Some(decimal_pb(r.percentage)),
                        name: r.name.clone(),
                        inclusive: r.inclusive,
                        created_at: None,
                        archived_at: None,
                    }),
                    net_minor: s.net,
                    tax_minor: s.tax,
                })
                .collect(),
            doc.notice.clone().unwrap_or_default(),
        ),
        None => (Vec::new(), String::new()),
    };
    pb::Invoice {
        lines: lines.into_iter().map(|l| line_pb(l, &r.currency)).collect(),
        id: r.id.into(),
        tenant_id: r.tenant_id.into(),
        kind: kind_pb(r.kind) as i32,
        number: r.number.unwrap_or_default(),
        status: status_pb(r.status) as i32,
        subscription_id: r.subscription_id,
        period: Some(Period {
            start: Some(timestamp(r.period_start)),
            end: r.period_end.map(timestamp),
        }),
        currency: r.currency,
        net_minor: r.net_minor,
        tax_minor: r.tax_minor,
        total_minor: r.total_minor,
        amount_due_minor: r.amount_due_minor,
        tax_summary,
        tax_notice,
        follows: r.follows.map(String::from).unwrap_or_default(),
        billing_run_id: r.billing_run_id,
        created_at: Some(timestamp(r.created_at)),
        finalize_after: Some(timestamp(r.finalize_after)),
        issued_at: r.issued_at.map(timestamp),
        due_at: r.due_at.map(timestamp),
        paid_at: r.paid_at.map(timestamp),
        voided_at: r.voided_at.map(timestamp),
        void_reason: r.void_reason.unwrap_or_default(),
        payment_intent_id: r.payment_intent_id.unwrap_or_default(),
        pdf_sha256: r.pdf_sha256.unwrap_or_default(),
        payment_mismatch: r.payment_mismatch.unwrap_or_default(),
    }
}

pub fn profile_pb(p: ProfileRow) -> pb::BillingProfile {
    pb::BillingProfile {
        tenant_id: p.tenant_id.into(),
        legal_name: p.legal_name,
        address_lines: p.address_lines,
        country: p.country,
        region: p.region.unwrap_or_default(),
        tax_id: p.tax_id.unwrap_or_default(),
        tax_exempt: p.tax_exempt,
        billing_email: p.billing_email.unwrap_or_default(),
        updated_at: Some(timestamp(p.updated_at)),
    }
}

pub fn rate_pb(r: RateRow) -> pb::TaxRate {
    pb::TaxRate {
        id: r.id.into(),
        country: r.country,
        region: r.region.unwrap_or_default(),
        percentage: Some(decimal_pb(r.percentage)),
        name: r.name,
        inclusive: r.inclusive,
        created_at: Some(timestamp(r.created_at)),
        archived_at: r.archived_at.map(timestamp),
    }
}

/// Empty text as absent.
pub fn some(s: String) -> Option<String> {
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}
