//! Invoices and credit notes, `/v1/tenants/{tenant_id}/invoices`: forwarded to the invoicing
//! service, which scopes every call to the caller's tenant and keeps the money-changing
//! actions (finalize, void, mark uncollectible or paid) to the operator.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::common::v1::{PageRequest, Period};
use rpc::invoicing::v1 as pb;
use rpc::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, instant, time};
use crate::auth::Identity;

pub type Invoicing = InvoicingServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

pub fn router(invoicing: Invoicing) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_invoices))
        .routes(routes!(get_invoice))
        .routes(routes!(get_pdf))
        .routes(routes!(finalize))
        .routes(routes!(void))
        .routes(routes!(mark_uncollectible))
        .routes(routes!(mark_paid))
        .with_state(invoicing)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    id: String,
    tenant_id: String,
    /// invoice or credit_note.
    kind: &'static str,
    /// `INV-2026-000042`, `CN-2026-000007`; absent while draft.
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<String>,
    /// draft, open, paid, void or uncollectible.
    status: &'static str,
    subscription_id: String,
    period_start: Option<String>,
    period_end: Option<String>,
    currency: String,
    /// On a single invoice (lists leave them out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lines: Vec<Line>,
    /// Integer minor units; set once finalized.
    net_minor: Option<i64>,
    tax_minor: Option<i64>,
    total_minor: Option<i64>,
    amount_due_minor: Option<i64>,
    tax_summary: Vec<TaxShare>,
    #[serde(skip_serializing_if = "String::is_empty")]
    tax_notice: String,
    /// The period's original invoice, on a supplementary invoice or credit note.
    #[serde(skip_serializing_if = "String::is_empty")]
    follows: String,
    billing_run_id: String,
    created_at: Option<String>,
    /// When a draft finalizes unless finalized earlier.
    finalize_after: Option<String>,
    issued_at: Option<String>,
    due_at: Option<String>,
    paid_at: Option<String>,
    voided_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    void_reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    payment_intent_id: String,
    /// A payment that did not match, flagged for a person.
    #[serde(skip_serializing_if = "String::is_empty")]
    payment_mismatch: String,
    /// SHA-256 (hex) of the PDF stored at finalization; its `ETag`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pdf_sha256: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Line {
    charge_id: String,
    description: String,
    /// An exact decimal.
    quantity: String,
    /// Exact, in minor units, when the charge has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_amount: Option<String>,
    /// The charge as billed, integer minor units.
    amount_minor: i64,
    net_minor: Option<i64>,
    tax_minor: Option<i64>,
    gross_minor: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaxShare {
    /// Absent for untaxed lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<super::taxes::TaxRate>,
    net_minor: i64,
    tax_minor: i64,
}

fn status_name(s: pb::InvoiceStatus) -> &'static str {
    match s {
        pb::InvoiceStatus::Unspecified | pb::InvoiceStatus::Draft => "draft",
        pb::InvoiceStatus::Open => "open",
        pb::InvoiceStatus::Paid => "paid",
        pb::InvoiceStatus::Void => "void",
        pb::InvoiceStatus::Uncollectible => "uncollectible",
    }
}

fn decimal(d: Option<rpc::common::v1::Decimal>) -> Option<String> {
    d.map(|d| d.value)
}

impl From<pb::Invoice> for Invoice {
    fn from(i: pb::Invoice) -> Self {
        let period = i.period.unwrap_or_default();
        Invoice {
            kind: match i.kind() {
                pb::InvoiceKind::CreditNote => "credit_note",
                _ => "invoice",
            },
            status: status_name(i.status()),
            id: i.id,
            tenant_id: i.tenant_id,
            number: (!i.number.is_empty()).then_some(i.number),
            subscription_id: i.subscription_id,
            period_start: time(period.start),
            period_end: time(period.end),
            currency: i.currency,
            lines: i
                .lines
                .into_iter()
                .map(|l| Line {
                    charge_id: l.charge_id,
                    description: l.description,
                    quantity: decimal(l.quantity).unwrap_or_default(),
                    unit_amount: decimal(l.unit_amount),
                    amount_minor: l.amount.map(|m| m.amount_cents).unwrap_or(0),
                    net_minor: l.net_minor,
                    tax_minor: l.tax_minor,
                    gross_minor: l.gross_minor,
                })
                .collect(),
            net_minor: i.net_minor,
            tax_minor: i.tax_minor,
            total_minor: i.total_minor,
            amount_due_minor: i.amount_due_minor,
            tax_summary: i
                .tax_summary
                .into_iter()
                .map(|s| TaxShare {
                    rate: s.rate.map(Into::into),
                    net_minor: s.net_minor,
                    tax_minor: s.tax_minor,
                })
                .collect(),
            tax_notice: i.tax_notice,
            follows: i.follows,
            billing_run_id: i.billing_run_id,
            created_at: time(i.created_at),
            finalize_after: time(i.finalize_after),
            issued_at: time(i.issued_at),
            due_at: time(i.due_at),
            paid_at: time(i.paid_at),
            voided_at: time(i.voided_at),
            void_reason: i.void_reason,
            payment_intent_id: i.payment_intent_id,
            payment_mismatch: i.payment_mismatch,
            pdf_sha256: i.pdf_sha256,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// draft, open, paid, void or uncollectible.
    status: Option<String>,
    /// invoice or credit_note.
    kind: Option<String>,
    /// Invoices of periods starting at or after this RFC 3339 time.
    period_from: Option<String>,
    /// Invoices of periods starting before this RFC 3339 time.
    period_to: Option<String>,
}

fn status_filter(s: &str) -> Result<pb::InvoiceStatus> {
    Ok(match s {
        "draft" => pb::InvoiceStatus::Draft,
        "open" => pb::InvoiceStatus::Open,
        "paid" => pb::InvoiceStatus::Paid,
        "void" => pb::InvoiceStatus::Void,
        "uncollectible" => pb::InvoiceStatus::Uncollectible,
        _ => {
            return Err(Problem::bad_request("unknown status")
                .with_field("status", "draft, open, paid, void or uncollectible"));
        }
    })
}

fn kind_filter(s: &str) -> Result<pb::InvoiceKind> {
    match s {
        "invoice" => Ok(pb::InvoiceKind::Invoice),
        "credit_note" => Ok(pb::InvoiceKind::CreditNote),
        _ => Err(Problem::bad_request("unknown kind").with_field("kind", "invoice or credit_note")),
    }
}

/// A tenant's invoices and credit notes, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/invoices", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), InvoiceListQuery), responses((status = 200, body = List<Invoice>), Errors), security(("bearer" = [])))]
async fn list_invoices(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<InvoiceListQuery>,
) -> Result<Json<List<Invoice>>> {
    id.check_tenant(&tenant_id)?;
    let limit = q.limit.unwrap_or(0);
    if limit > 100 {
        return Err(
            Problem::bad_request("limit must be from 1 to 100").with_field("limit", "at most 100")
        );
    }
    let status = q.status.as_deref().map(status_filter).transpose()?;
    let kind = q.kind.as_deref().map(kind_filter).transpose()?;
    let period = Period {
        start: q
            .period_from
            .as_deref()
            .map(|v| instant("period_from", v))
            .transpose()?,
        end: q
            .period_to
            .as_deref()
            .map(|v| instant("period_to", v))
            .transpose()?,
    };
    let r = invoicing
        .list_invoices(call(
            &id,
            pb::ListInvoicesRequest {
                tenant_id,
                page: Some(PageRequest {
                    limit,
                    cursor: q.cursor.unwrap_or_default(),
                }),
                status: status.unwrap_or_default() as i32,
                kind: kind.unwrap_or_default() as i32,
                period: Some(period),
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.invoices.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

/// An invoice or credit note with its lines.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/invoices/{invoice_id}", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("invoice_id" = String, Path, description = "invoice id, e.g. inv_…")), responses((status = 200, body = Invoice), Errors), security(("bearer" = [])))]
async fn get_invoice(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, invoice_id)): Path<(String, String)>,
) -> Result<Json<Invoice>> {
    id.check_tenant(&tenant_id)?;
    let r = invoicing
        .get_invoice(call(
            &id,
            pb::GetInvoiceRequest {
                tenant_id,
                invoice_id,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// The largest PDF the gateway passes on (a 500-line invoice is well under 1 MiB).
const MAX_PDF_BYTES: usize = 32 * 1024 * 1024;

/// A finalized invoice's PDF, as stored when it was finalized. `ETag` is its SHA-256; send it
/// back in `If-None-Match` to get 304 when you have it already.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/invoices/{invoice_id}/pdf", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("invoice_id" = String, Path, description = "invoice id, e.g. inv_…")), responses((status = 200, description = "the PDF", content_type = "application/pdf", body = String), (status = 304, description = "the PDF named by If-None-Match is current"), Errors), security(("bearer" = [])))]
async fn get_pdf(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, invoice_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    id.check_tenant(&tenant_id)?;
    let req = pb::GetInvoiceRequest {
        tenant_id,
        invoice_id,
    };
    let invoice = invoicing
        .get_invoice(call(&id, req.clone()))
        .await
        .map_err(from_status)?
        .into_inner();
    let etag = format!("\"{}\"", invoice.pdf_sha256);
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if current && !invoice.pdf_sha256.is_empty() {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut stream = invoicing
        .get_invoice_pdf(call(&id, req))
        .await
        .map_err(from_status)?
        .into_inner();
    let mut pdf = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(from_status)? {
        if pdf.len() + chunk.data.len() > MAX_PDF_BYTES {
            return Err(Problem::new(StatusCode::BAD_GATEWAY, "pdf_too_large")
                .with_detail("the stored PDF is larger than the gateway passes on"));
        }
        pdf.extend_from_slice(&chunk.data);
    }
    // Numbers are letters, digits and -_/. : safe in a quoted filename once '/' is replaced.
    let filename = invoice.number.replace('/', "-");
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}.pdf\""),
            ),
            (header::ETAG, etag),
            (
                header::CACHE_CONTROL,
                "private, max-age=0, must-revalidate".into(),
            ),
        ],
        pdf,
    )
        .into_response())
}

fn action(tenant_id: String, invoice_id: String, reason: String) -> pb::InvoiceActionRequest {
    pb::InvoiceActionRequest {
        tenant_id,
        invoice_id,
        reason,
    }
}

/// Operator only: finalize a draft now (number, tax and PDF are fixed); repeating it is a
/// no-op.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/invoices/{invoice_id}/finalize", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("invoice_id" = String, Path, description = "invoice id, e.g. inv_…")), responses((status = 200, body = Invoice), BodyErrors), security(("bearer" = [])))]
async fn finalize(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, invoice_id)): Path<(String, String)>,
) -> Result<Json<Invoice>> {
    id.check_tenant(&tenant_id)?;
    let r = invoicing
        .finalize_invoice(call(&id, action(tenant_id, invoice_id, String::new())))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    /// Kept on the invoice and sent with `invoice.voided`.
    #[serde(default)]
    reason: Option<String>,
}

/// Operator only: void a draft, open or uncollectible invoice (its number stays used).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/invoices/{invoice_id}/void", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("invoice_id" = String, Path, description = "invoice id, e.g. inv_…")), request_body = VoidBody, responses((status = 200, body = Invoice), BodyErrors), security(("bearer" = [])))]
async fn void(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, invoice_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<VoidBody>,
) -> Result<Json<Invoice>> {
    id.check_tenant(&tenant_id)?;
    let reason = body.reason.unwrap_or_default();
    let r = invoicing
        .void_invoice(call(&id, action(tenant_id, invoice_id, reason)))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// Operator only: an open invoice that will not be paid (a late payment is still taken).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/invoices/{invoice_id}/mark_uncollectible", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("invoice_id" = String, Path, description = "invoice id, e.g. inv_…")), responses((status = 200, body = Invoice), BodyErrors), security(("bearer" = [])))]
async fn mark_uncollectible(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, invoice_id)): Path<(String, String)>,
) -> Result<Json<Invoice>> {
    id.check_tenant(&tenant_id)?;
    let r = invoicing
        .mark_uncollectible(call(&id, action(tenant_id, invoice_id, String::new())))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPaidBody {
    /// The payment's reference (the same reference marks it once).
    payment_intent_id: String,
    /// Must equal the amount due, in integer minor units.
    amount_minor: i64,
}

/// Operator only: money received outside the payment service.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/invoices/{invoice_id}/mark_paid", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…"), ("invoice_id" = String, Path, description = "invoice id, e.g. inv_…")), request_body = MarkPaidBody, responses((status = 200, body = Invoice), BodyErrors), security(("bearer" = [])))]
async fn mark_paid(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, invoice_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<MarkPaidBody>,
) -> Result<Json<Invoice>> {
    id.check_tenant(&tenant_id)?;
    let r = invoicing
        .mark_paid(call(
            &id,
            pb::MarkPaidRequest {
                tenant_id,
                invoice_id,
                payment_intent_id: body.payment_intent_id,
                amount_minor: body.amount_minor,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}
