//! Billing runs, `/v1/billing/runs`: forwarded to the billing service.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::billing::v1 as pb;
use rpc::billing::v1::billing_service_client::BillingServiceClient;
use rpc::common::v1::{PageRequest, Period};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, instant, time};
use crate::auth::Identity;

type Billing = BillingServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

pub fn router(billing: Billing) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(start_run, list_runs))
        .routes(routes!(get_run))
        .with_state(billing)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Run {
    id: String,
    period_start: Option<String>,
    period_end: Option<String>,
    /// Empty = every billable tenant.
    tenant_ids: Vec<String>,
    /// queued, running, completed, failed or exceeded_deadline.
    status: &'static str,
    records_processed: u64,
    records_per_second: f64,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    /// Per tenant and currency, once the run completed (for a correction: the adjustments).
    totals: Vec<RunTotal>,
    /// Set on a correction: the run it corrects.
    #[serde(skip_serializing_if = "Option::is_none")]
    corrects_run_id: Option<String>,
    created_at: Option<String>,
}

impl From<pb::BillingRun> for Run {
    fn from(r: pb::BillingRun) -> Self {
        let period = r.period.unwrap_or_default();
        let progress = r.progress.unwrap_or_default();
        Run {
            status: match r.status() {
                pb::RunStatus::Queued | pb::RunStatus::Unspecified => "queued",
                pb::RunStatus::Running => "running",
                pb::RunStatus::Completed => "completed",
                pb::RunStatus::Failed => "failed",
                pb::RunStatus::ExceededDeadline => "exceeded_deadline",
            },
            id: r.id,
            period_start: time(period.start),
            period_end: time(period.end),
            tenant_ids: r.tenant_ids,
            records_processed: progress.records_processed,
            records_per_second: progress.records_per_second,
            started_at: time(r.started_at),
            finished_at: time(r.finished_at),
            duration_ms: r.duration_ms,
            error: r.error,
            corrects_run_id: r.corrects_run_id,
            totals: r
                .totals
                .into_iter()
                .map(|t| {
                    let m = t.total.unwrap_or_default();
                    RunTotal {
                        tenant_id: t.tenant_id,
                        currency: m.currency,
                        amount_minor: m.amount_cents,
                    }
                })
                .collect(),
            created_at: time(r.created_at),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunTotal {
    tenant_id: String,
    currency: String,
    /// Integer minor units (cents).
    amount_minor: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// RFC 3339, inclusive.
    period_start: String,
    /// RFC 3339, exclusive.
    period_end: String,
    /// Omit for every billable tenant.
    #[serde(default)]
    tenant_ids: Vec<String>,
    /// Default 120.
    #[serde(default)]
    deadline_seconds: Option<u32>,
    /// Correct the completed run of this period and tenants: bill only the difference, as
    /// adjustment lines.
    #[serde(default)]
    rerun: bool,
}

/// Start a billing run (or get the existing one for the same period and tenants).
#[utoipa::path(post, path = "/v1/billing/runs", tag = "billing", request_body = StartRun, responses((status = 202, body = Run), BodyErrors), security(("bearer" = [])))]
async fn start_run(
    State(mut billing): State<Billing>,
    Extension(id): Extension<Identity>,
    ApiJson(body): ApiJson<StartRun>,
) -> Result<(StatusCode, Json<Run>)> {
    let period = Period {
        start: Some(instant("period_start", &body.period_start)?),
        end: Some(instant("period_end", &body.period_end)?),
    };
    let r = billing
        .start_run(call(
            &id,
            pb::StartRunRequest {
                period: Some(period),
                tenant_ids: body.tenant_ids,
                deadline_seconds: body.deadline_seconds.unwrap_or(0),
                rerun: body.rerun,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok((StatusCode::ACCEPTED, Json(r.into_inner().into())))
}

/// A billing run with its live progress.
#[utoipa::path(get, path = "/v1/billing/runs/{run_id}", tag = "billing", params(("run_id" = String, Path, description = "run id")), responses((status = 200, body = Run), Errors), security(("bearer" = [])))]
async fn get_run(
    State(mut billing): State<Billing>,
    Extension(id): Extension<Identity>,
    Path(run_id): Path<String>,
) -> Result<Json<Run>> {
    let r = billing
        .get_run(call(&id, pb::GetRunRequest { run_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Operator only: runs naming this tenant.
    tenant_id: Option<String>,
}

/// Billing runs, newest first.
#[utoipa::path(get, path = "/v1/billing/runs", tag = "billing", params(RunListQuery), responses((status = 200, body = List<Run>), Errors), security(("bearer" = [])))]
async fn list_runs(
    State(mut billing): State<Billing>,
    Extension(id): Extension<Identity>,
    ApiQuery(q): ApiQuery<RunListQuery>,
) -> Result<Json<List<Run>>> {
    let limit = q.limit.unwrap_or(0);
    if limit > 100 {
        return Err(
            Problem::bad_request("limit must be from 1 to 100").with_field("limit", "at most 100")
        );
    }
    let r = billing
        .list_runs(call(
            &id,
            pb::ListRunsRequest {
                page: Some(PageRequest {
                    limit,
                    cursor: q.cursor.unwrap_or_default(),
                }),
                tenant_id: q.tenant_id,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.runs.into_iter().map(Into::into).collect(),
        r.page,
    )))
}
