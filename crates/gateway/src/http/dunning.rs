//! A tenant's dunning, `/v1/tenants/{tenant_id}/dunning`: the retries of its failed
//! automatic payments, and whether they ran out.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use platform::Problem;
use rpc::payment::v1 as pb;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::from_status;
use super::openapi::Errors;
use super::payments::{Payments, TENANT};
use super::wire::{call, time};
use crate::auth::Identity;

type Result<T> = std::result::Result<T, Problem>;

pub fn router(payments: Payments) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(dunning))
        .with_state(payments)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DunningStep {
    attempt: u32,
    at: Option<String>,
    done: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    outcome: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DunningSchedule {
    payment_intent_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    invoice_id: String,
    steps: Vec<DunningStep>,
    exhausted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DunningState {
    tenant_id: String,
    /// none, active or exhausted.
    status: &'static str,
    schedules: Vec<DunningSchedule>,
}

/// The tenant's dunning: retries of failed automatic payments, and whether they ran out.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/dunning", tag = "payments", params(("tenant_id" = String, Path, description = TENANT)), responses((status = 200, body = DunningState), Errors), security(("bearer" = [])))]
async fn dunning(
    State(mut p): State<Payments>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<DunningState>> {
    id.check_tenant(&tenant_id)?;
    let r = p
        .get_dunning_state(call(&id, pb::GetDunningStateRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(DunningState {
        status: match r.status() {
            pb::DunningStatus::Active => "active",
            pb::DunningStatus::Exhausted => "exhausted",
            _ => "none",
        },
        tenant_id: r.tenant_id,
        schedules: r
            .schedules
            .into_iter()
            .map(|s| DunningSchedule {
                payment_intent_id: s.payment_intent_id,
                invoice_id: s.invoice_id,
                steps: s
                    .steps
                    .into_iter()
                    .map(|st| DunningStep {
                        attempt: st.attempt,
                        at: time(st.at),
                        done: st.done,
                        outcome: st.outcome,
                    })
                    .collect(),
                exhausted: s.exhausted,
                recovered_at: time(s.recovered_at),
            })
            .collect(),
    }))
}
