//! A tenant's payment methods, `/v1/tenants/{tenant_id}/payment_methods`: PSP tokens only
//! (brand, last4 and expiry asked of the PSP), managed by the tenant's owner or billing admin.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use platform::Problem;
use rpc::payment::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, from_status};
use super::openapi::{BodyErrors, Errors};
use super::payments::{Payments, TENANT, provider_name};
use super::wire::{List, call, time};
use crate::auth::Identity;

type Result<T> = std::result::Result<T, Problem>;

const METHOD: &str = "payment method id, e.g. pmt_…";

pub fn router(payments: Payments) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(attach_method, list_methods))
        .routes(routes!(default_method))
        .routes(routes!(detach_method))
        .with_state(payments)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentMethod {
    id: String,
    tenant_id: String,
    /// stripe, adyen or sandbox.
    provider: &'static str,
    /// The PSP's token; never a card number.
    psp_token: String,
    brand: String,
    last4: String,
    exp_month: u32,
    exp_year: u32,
    is_default: bool,
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detached_at: Option<String>,
}

impl From<pb::PaymentMethod> for PaymentMethod {
    fn from(m: pb::PaymentMethod) -> Self {
        PaymentMethod {
            provider: provider_name(m.provider()),
            id: m.id,
            tenant_id: m.tenant_id,
            psp_token: m.psp_token,
            brand: m.brand,
            last4: m.last4,
            exp_month: m.exp_month,
            exp_year: m.exp_year,
            is_default: m.is_default,
            created_at: time(m.created_at),
            detached_at: time(m.detached_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    /// stripe, adyen or sandbox.
    provider: String,
    /// A token the PSP issued client-side (`pm_…`; for Adyen `<shopperReference>:<storedPaymentMethodId>`;
    /// in the sandbox `pm_card_visa`, `pm_card_chargeDeclined`, …). Never a card number.
    psp_token: String,
    /// The tenant's first method becomes its default regardless.
    #[serde(default)]
    make_default: bool,
}

/// Attach a PSP token as a payment method; brand, last4 and expiry come from the PSP.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_methods", tag = "payments", params(("tenant_id" = String, Path, description = TENANT)), request_body = AttachBody, responses((status = 200, body = PaymentMethod), BodyErrors), security(("bearer" = [])))]
async fn attach_method(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<AttachBody>,
) -> Result<Json<PaymentMethod>> {
    id.check_tenant(&tenant_id)?;
    let provider = match body.provider.as_str() {
        "stripe" => pb::Provider::Stripe,
        "adyen" => pb::Provider::Adyen,
        "sandbox" => pb::Provider::Sandbox,
        _ => {
            return Err(Problem::bad_request("unknown provider")
                .with_field("provider", "stripe, adyen or sandbox"));
        }
    };
    let r = p
        .attach_payment_method(call(
            &id,
            pb::AttachPaymentMethodRequest {
                tenant_id,
                provider: provider as i32,
                psp_token: body.psp_token,
                make_default: body.make_default,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// The tenant's payment methods (detached ones are left out).
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/payment_methods", tag = "payments", params(("tenant_id" = String, Path, description = TENANT)), responses((status = 200, body = List<PaymentMethod>), Errors), security(("bearer" = [])))]
async fn list_methods(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<List<PaymentMethod>>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .list_payment_methods(call(&id, pb::ListPaymentMethodsRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.methods.into_iter().map(Into::into).collect(),
        None,
    )))
}

/// Make a payment method the tenant's default (what invoices are charged to).
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_methods/{payment_method_id}/default", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_method_id" = String, Path, description = METHOD)), responses((status = 200, body = PaymentMethod), BodyErrors), security(("bearer" = [])))]
async fn default_method(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, payment_method_id)): Path<(String, String)>,
) -> Result<Json<PaymentMethod>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::PaymentMethodRequest {
        tenant_id,
        payment_method_id,
    };
    let r = p
        .set_default_payment_method(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// Detach a payment method: it is never charged again.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/payment_methods/{payment_method_id}/detach", tag = "payments", params(("tenant_id" = String, Path, description = TENANT), ("payment_method_id" = String, Path, description = METHOD)), responses((status = 200, body = PaymentMethod), BodyErrors), security(("bearer" = [])))]
async fn detach_method(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, payment_method_id)): Path<(String, String)>,
) -> Result<Json<PaymentMethod>> {
    id.check_tenant(&tenant_id)?;
    let req = pb::PaymentMethodRequest {
        tenant_id,
        payment_method_id,
    };
    let r = p
        .detach_payment_method(call(&id, req))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}
