//! Payment intents, `/v1/tenants/{tenant_id}/payment_intents`: forwarded to the payment
//! service, which scopes every call to the caller's tenant (methods, refunds and dunning have
//! files of their own beside this one). A tenant's owner or billing admin confirms its own
//! intents; creating ad-hoc intents, capturing, canceling and refunding are the operator's.
//! A POST's `Idempotency-Key` goes on to the service too, which keeps it with the intent,
//! attempt or refund it made.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::common::v1::{Money, PageRequest};
use rpc::payment::v1 as pb;
use rpc::payment::v1::payment_service_client::PaymentServiceClient;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, time};
use crate::auth::Identity;

pub type Payments = PaymentServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

pub fn router(payments: Payments) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_intent, list_intents))
        .routes(routes!(get_intent))
        .routes(routes!(confirm))
        .routes(routes!(capture))
        .routes(routes!(cancel))
        .with_state(payments)
}

pub(super) fn provider_name(p: pb::Provider) -> &'static str {
    match p {
        pb::Provider::Stripe => "stripe",
        pb::Provider::Adyen => "adyen",
        pb::Provider::Sandbox => "sandbox",
        pb::Provider::Unspecified => "",
    }
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> String {
    headers
        .get(super::idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    number: u32,
    provider: &'static str,
    payment_method_id: String,
    /// What every call of this attempt sends the PSP as its idempotency key.
    psp_idempotency_key: String,
    psp_reference: String,
    /// pending, succeeded, authorized, requires_action, declined or error.
    outcome: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    failure_code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    failure_message: String,
    created_at: Option<String>,
    completed_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentIntent {
    id: String,
    tenant_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    invoice_id: String,
    amount_minor: i64,
    currency: String,
    /// requires_payment_method, requires_confirmation, requires_action, processing,
    /// requires_capture, succeeded or canceled.
    status: &'static str,
    /// automatic or manual.
    capture_method: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    payment_method_id: String,
    amount_received: i64,
    amount_capturable: i64,
    amount_refunded: i64,
    /// Where the customer authenticates (3-D Secure), while requires_action.
    #[serde(skip_serializing_if = "String::is_empty")]
    next_action_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_failure_code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_failure_message: String,
    /// The next dunning retry, while dunning runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_retry_at: Option<String>,
    attempts: Vec<Attempt>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

fn status_name(s: pb::IntentStatus) -> &'static str {
    match s {
        pb::IntentStatus::Unspecified | pb::IntentStatus::RequiresPaymentMethod => {
            "requires_payment_method"
        }
        pb::IntentStatus::RequiresConfirmation => "requires_confirmation",
        pb::IntentStatus::RequiresAction => "requires_action",
        pb::IntentStatus::Processing => "processing",
        pb::IntentStatus::RequiresCapture => "requires_capture",
        pb::IntentStatus::Succeeded => "succeeded",
        pb::IntentStatus::Canceled => "canceled",
    }
}

fn outcome_name(o: pb::AttemptOutcome) -> &'static str {
    match o {
        pb::AttemptOutcome::Unspecified | pb::AttemptOutcome::Pending => "pending",
        pb::AttemptOutcome::Succeeded => "succeeded",
        pb::AttemptOutcome::Authorized => "authorized",
        pb::AttemptOutcome::RequiresAction => "requires_action",
        pb::AttemptOutcome::Declined => "declined",
        pb::AttemptOutcome::Error => "error",
    }
}

impl From<pb::PaymentIntent> for PaymentIntent {
    fn from(i: pb::PaymentIntent) -> Self {
        let amount = i.amount.clone().unwrap_or_default();
        PaymentIntent {
            status: status_name(i.status()),
            capture_method: match i.capture_method() {
                pb::CaptureMethod::Manual => "manual",
                pb::CaptureMethod::Automatic => "automatic",
            },
            attempts: i
                .attempts
                .into_iter()
                .map(|a| Attempt {
                    provider: provider_name(a.provider()),
                    outcome: outcome_name(a.outcome()),
                    number: a.number,
                    payment_method_id: a.payment_method_id,
                    psp_idempotency_key: a.psp_idempotency_key,
                    psp_reference: a.psp_reference,
                    failure_code: a.failure_code,
                    failure_message: a.failure_message,
                    created_at: time(a.created_at),
                    completed_at: time(a.completed_at),
                })
                .collect(),
            id: i.id,
            tenant_id: i.tenant_id,
            invoice_id: i.invoice_id,
            amount_minor: amount.amount_cents,
            currency: amount.currency,
            payment_method_id: i.payment_method_id,
            amount_received: i.amount_received,
            amount_capturable: i.amount_capturable,
            amount_refunded: i.amount_refunded,
            next_action_url: i.next_action_url,
            last_failure_code: i.last_failure_code,
            last_failure_message: i.last_failure_message,
            next_retry_at: time(i.next_retry_at),
            created_at: time(i.created_at),
            updated_at: time(i.updated_at),
        }
    }
}

pub(super) const TENANT: &str = "tenant id, e.g. ten_…";
pub(super) const INTENT: &str = "payment intent id, e.g. pay_…";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntentBody {
    /// Integer minor units.
    amount_minor: i64,
    /// ISO 4217, upper case.
    currency: String,
    #[serde(default)]
    invoice_id: Option<String>,
    /// Absent: the tenant's default method.
    #[serde(default)]
    payment_method_id: Option<String>,
    /// automatic (default) or manual.
    #[serde(default)]
    capture_method: Option<String>,
    /// Confirm at once.
    #[serde(default)]
    confirm: bool,
}

/// Operator only: create a payment intent (invoices get theirs automatically).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_intents", tag = "payments", params(("tenant_id" = String, Path, description = TENANT)), request_body = CreateIntentBody, responses((status = 200, body = PaymentIntent), BodyErrors), security(("bearer" = [])))]
async fn create_intent(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateIntentBody>,
) -> Result<Json<PaymentIntent>> {
    id.check_tenant(&tenant_id)?;
    let capture = match body.capture_method.as_deref() {
        None | Some("automatic") => pb::CaptureMethod::Automatic,
        Some("manual") => pb::CaptureMethod::Manual,
        Some(_) => {
            return Err(Problem::bad_request("unknown capture_method")
                .with_field("capture_method", "automatic or manual"));
        }
    };
    let r = p
        .create_payment_intent(call(
            &id,
            pb::CreatePaymentIntentRequest {
                tenant_id,
                invoice_id: body.invoice_id.unwrap_or_default(),
                amount: Some(Money {
                    amount_cents: body.amount_minor,
                    currency: body.currency,
                }),
                idempotency_key: idempotency_key(&headers),
                payment_method_id: body.payment_method_id.unwrap_or_default(),
                capture_method: capture as i32,
                confirm: body.confirm,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IntentListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Only the intents of this invoice.
    invoice_id: Option<String>,
}

/// The tenant's payment intents, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/payment_intents", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), IntentListQuery), responses((status = 200, body = List<PaymentIntent>), Errors), security(("bearer" = [])))]
async fn list_intents(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<IntentListQuery>,
) -> Result<Json<List<PaymentIntent>>> {
    id.check_tenant(&tenant_id)?;
    let limit = q.limit.unwrap_or(0);
    if limit > 100 {
        return Err(
            Problem::bad_request("limit must be from 1 to 100").with_field("limit", "at most 100")
        );
    }
    let r = p
        .list_payment_intents(call(
            &id,
            pb::ListPaymentIntentsRequest {
                tenant_id,
                page: Some(PageRequest {
                    limit,
                    cursor: q.cursor.unwrap_or_default(),
                }),
                invoice_id: q.invoice_id,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.intents.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

fn intent_req(tenant_id: String, payment_intent_id: String) -> pb::PaymentIntentRequest {
    pb::PaymentIntentRequest {
        tenant_id,
        payment_intent_id,
    }
}

/// A payment intent with its attempts.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_intent_id" = String, Path, description = INTENT)), responses((status = 200, body = PaymentIntent), Errors), security(("bearer" = [])))]
async fn get_intent(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, intent)): Path<(String, String)>,
) -> Result<Json<PaymentIntent>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .get_payment_intent(call(&id, intent_req(tenant_id, intent)))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    /// Another of the tenant's methods to try; absent keeps the intent's.
    #[serde(default)]
    payment_method_id: Option<String>,
}

/// Confirm (pay) an intent, e.g. with a new method after a decline.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/confirm", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_intent_id" = String, Path, description = INTENT)), request_body = ConfirmBody, responses((status = 200, body = PaymentIntent), BodyErrors), security(("bearer" = [])))]
async fn confirm(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, payment_intent_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ConfirmBody>,
) -> Result<Json<PaymentIntent>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .confirm_payment_intent(call(
            &id,
            pb::ConfirmPaymentIntentRequest {
                tenant_id,
                payment_intent_id,
                payment_method_id: body.payment_method_id.unwrap_or_default(),
                idempotency_key: idempotency_key(&headers),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    /// Minor units; absent: everything authorized.
    #[serde(default)]
    amount_to_capture: Option<i64>,
}

/// Operator only: capture an authorized (manual-capture) intent.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/capture", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_intent_id" = String, Path, description = INTENT)), request_body = CaptureBody, responses((status = 200, body = PaymentIntent), BodyErrors), security(("bearer" = [])))]
async fn capture(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, payment_intent_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<CaptureBody>,
) -> Result<Json<PaymentIntent>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .capture_payment_intent(call(
            &id,
            pb::CapturePaymentIntentRequest {
                tenant_id,
                payment_intent_id,
                amount_to_capture: body.amount_to_capture.unwrap_or(0),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// Operator only: cancel an intent that has not moved money.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/cancel", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_intent_id" = String, Path, description = INTENT)), responses((status = 200, body = PaymentIntent), BodyErrors), security(("bearer" = [])))]
async fn cancel(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, intent)): Path<(String, String)>,
) -> Result<Json<PaymentIntent>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .cancel_payment_intent(call(&id, intent_req(tenant_id, intent)))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}
