//! Refunds of a payment, `/v1/tenants/{tenant_id}/payment_intents/{id}/refunds`: full or
//! partial, each its own object; creating one is the operator's.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use platform::Problem;
use rpc::payment::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, from_status};
use super::openapi::{BodyErrors, Errors};
use super::payments::{INTENT, Payments, TENANT, idempotency_key};
use super::wire::{List, call, time};
use crate::auth::Identity;

type Result<T> = std::result::Result<T, Problem>;

pub fn router(payments: Payments) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(refund, list_refunds))
        .with_state(payments)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refund {
    id: String,
    tenant_id: String,
    payment_intent_id: String,
    amount_minor: i64,
    currency: String,
    /// pending, succeeded or failed.
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    psp_reference: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    failure_code: String,
    created_at: Option<String>,
}

impl From<pb::Refund> for Refund {
    fn from(r: pb::Refund) -> Self {
        let amount = r.amount.clone().unwrap_or_default();
        Refund {
            status: match r.status() {
                pb::RefundStatus::Succeeded => "succeeded",
                pb::RefundStatus::Failed => "failed",
                _ => "pending",
            },
            id: r.id,
            tenant_id: r.tenant_id,
            payment_intent_id: r.payment_intent_id,
            amount_minor: amount.amount_cents,
            currency: amount.currency,
            reason: r.reason,
            psp_reference: r.psp_reference,
            failure_code: r.failure_code,
            created_at: time(r.created_at),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Minor units; absent: what is left of the payment.
    #[serde(default)]
    amount_minor: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

/// Operator only: refund a succeeded payment, fully or in part.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/refunds", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_intent_id" = String, Path, description = INTENT)), request_body = RefundBody, responses((status = 200, body = Refund), BodyErrors), security(("bearer" = [])))]
async fn refund(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, payment_intent_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundBody>,
) -> Result<Json<Refund>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .create_refund(call(
            &id,
            pb::CreateRefundRequest {
                tenant_id,
                payment_intent_id,
                amount: body.amount_minor.unwrap_or(0),
                reason: body.reason.unwrap_or_default(),
                idempotency_key: idempotency_key(&headers),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// The refunds of a payment intent.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/payment_intents/{payment_intent_id}/refunds", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_intent_id" = String, Path, description = INTENT)), responses((status = 200, body = List<Refund>), Errors), security(("bearer" = [])))]
async fn list_refunds(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, payment_intent_id)): Path<(String, String)>,
) -> Result<Json<List<Refund>>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .list_refunds(call(
            &id,
            pb::ListRefundsRequest {
                tenant_id,
                payment_intent_id,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.refunds.into_iter().map(Into::into).collect(),
        None,
    )))
}
