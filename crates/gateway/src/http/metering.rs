//! Subscriptions, usage and entitlements: forwarded to the subscription service.
//!
//! `POST /v1/usage` takes up to 10,000 records and answers with a partial-success report:
//! records whose shape is wrong here (a timestamp that is not RFC 3339, a quantity that is not
//! a number) are rejected by index beside those the service rejects, and the rest are stored.
//! Quantities may be JSON numbers or decimal strings; strings are exact, numbers are read as
//! their shortest decimal form.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::common::v1::Decimal;
use rpc::subscription::v1 as pb;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{call, instant, time};
use crate::auth::Identity;

type Subs = SubscriptionServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

/// Most records per `POST /v1/usage`.
const MAX_RECORDS: usize = 10_000;
/// A full batch of 10,000 records is about 1.5 MB of JSON; allow room.
pub(crate) const USAGE_BODY_LIMIT: usize = 8 << 20;

pub fn router(subs: Subs) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(ingest_usage))
        .layer(DefaultBodyLimit::max(USAGE_BODY_LIMIT))
        .routes(routes!(get_usage))
        .routes(routes!(check_entitlement))
        .routes(routes!(create_subscription, get_subscription))
        .routes(routes!(change_plan))
        .routes(routes!(cancel_subscription))
        .routes(routes!(seat_history))
        .with_state(subs)
}

fn dec(d: Option<Decimal>) -> String {
    d.map(|d| d.value).unwrap_or_else(|| "0".into())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    id: String,
    tenant_id: String,
    plan_id: String,
    plan_version: u32,
    /// trialing, active, past_due, suspended or canceled.
    status: &'static str,
    current_period_start: Option<String>,
    current_period_end: Option<String>,
    trial_end: Option<String>,
    cancel_at_period_end: bool,
    canceled_at: Option<String>,
    seats: u32,
    created_at: Option<String>,
}

impl From<pb::Subscription> for Subscription {
    fn from(s: pb::Subscription) -> Self {
        use pb::SubscriptionStatus as S;
        let period = s.current_period.unwrap_or_default();
        Subscription {
            status: match s.status() {
                S::Trialing => "trialing",
                S::Active | S::Unspecified => "active",
                S::PastDue => "past_due",
                S::Suspended => "suspended",
                S::Canceled => "canceled",
            },
            id: s.id,
            tenant_id: s.tenant_id,
            plan_id: s.plan_id,
            plan_version: s.plan_version,
            current_period_start: time(period.start),
            current_period_end: time(period.end),
            trial_end: time(s.trial_end),
            cancel_at_period_end: s.cancel_at_period_end,
            canceled_at: time(s.canceled_at),
            seats: s.seats,
            created_at: time(s.created_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    plan_id: String,
    /// Overrides the plan's trial; 0 = none.
    trial_days: Option<u32>,
    /// A fixed seat count instead of following active users.
    seats: Option<u32>,
}

/// Subscribe the tenant to a plan's latest version.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/subscription", tag = "subscriptions", params(("tenant_id" = String, Path, description = "tenant id")), request_body = CreateSubscription, responses((status = 201, body = Subscription), BodyErrors), security(("bearer" = [])))]
async fn create_subscription(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<CreateSubscription>,
) -> Result<(StatusCode, Json<Subscription>)> {
    id.check_tenant(&tenant_id)?;
    let s = subs
        .create_subscription(call(
            &id,
            pb::CreateSubscriptionRequest {
                tenant_id,
                plan_id: body.plan_id,
                trial_days: body.trial_days,
                seats: body.seats,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok((StatusCode::CREATED, Json(s.into_inner().into())))
}

/// The tenant's subscription.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/subscription", tag = "subscriptions", params(("tenant_id" = String, Path, description = "tenant id")), responses((status = 200, body = Subscription), Errors), security(("bearer" = [])))]
async fn get_subscription(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<Subscription>> {
    id.check_tenant(&tenant_id)?;
    let s = subs
        .get_subscription(call(&id, pb::GetSubscriptionRequest { tenant_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(s.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlan {
    plan_id: String,
    /// Omit for the latest version.
    plan_version: Option<u32>,
}

/// Move to another plan (or version); recurring charges are prorated by seconds.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/subscription/change_plan", tag = "subscriptions", params(("tenant_id" = String, Path, description = "tenant id")), request_body = ChangePlan, responses((status = 200, body = Subscription), BodyErrors), security(("bearer" = [])))]
async fn change_plan(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<ChangePlan>,
) -> Result<Json<Subscription>> {
    id.check_tenant(&tenant_id)?;
    let s = subs
        .change_plan(call(
            &id,
            pb::ChangePlanRequest {
                tenant_id,
                plan_id: body.plan_id,
                plan_version: body.plan_version.unwrap_or(0),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(s.into_inner().into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// false (default): at the end of the current period.
    #[serde(default)]
    immediately: bool,
}

/// Cancel now or at the period's end.
#[utoipa::path(post, path = "/v1/tenants/{tenant_id}/subscription/cancel", tag = "subscriptions", params(("tenant_id" = String, Path, description = "tenant id")), request_body = Cancel, responses((status = 200, body = Subscription), BodyErrors), security(("bearer" = [])))]
async fn cancel_subscription(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(body): ApiJson<Cancel>,
) -> Result<Json<Subscription>> {
    id.check_tenant(&tenant_id)?;
    let s = subs
        .cancel_subscription(call(
            &id,
            pb::CancelSubscriptionRequest {
                tenant_id,
                immediately: body.immediately,
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(s.into_inner().into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeatSegment {
    from: Option<String>,
    /// Absent while current.
    to: Option<String>,
    seats: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeatHistory {
    data: Vec<SeatSegment>,
}

/// Seat history (what billing prorates).
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/subscription/seats", tag = "subscriptions", params(("tenant_id" = String, Path, description = "tenant id")), responses((status = 200, body = SeatHistory), Errors), security(("bearer" = [])))]
async fn seat_history(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<SeatHistory>> {
    id.check_tenant(&tenant_id)?;
    let r = subs
        .list_seat_history(call(&id, pb::GetSubscriptionRequest { tenant_id }))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(SeatHistory {
        data: r
            .segments
            .into_iter()
            .map(|s| SeatSegment {
                from: time(s.from),
                to: time(s.to),
                seats: s.seats,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UsageRecord {
    /// Client-chosen, unique per tenant: a re-sent id is counted once.
    id: String,
    tenant_id: String,
    #[serde(default)]
    user_id: Option<String>,
    metric: String,
    /// A JSON number or a decimal string (exact).
    #[schema(value_type = String)]
    quantity: serde_json::Value,
    /// RFC 3339.
    timestamp: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    records: Vec<UsageRecord>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    index: u32,
    id: String,
    /// unknown_tenant, unknown_metric, too_old or invalid.
    reason: &'static str,
    message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    /// Stored and counted now.
    accepted: u32,
    /// Seen before: accepted, not counted again.
    duplicates: u32,
    rejected: Vec<Rejected>,
}

fn quantity(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Record usage: up to 10,000 records; partial success.
#[utoipa::path(post, path = "/v1/usage", tag = "usage", request_body = UsageBatch, responses((status = 200, body = IngestReport), BodyErrors), security(("bearer" = [])))]
async fn ingest_usage(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    ApiJson(body): ApiJson<UsageBatch>,
) -> Result<Json<IngestReport>> {
    if body.records.len() > MAX_RECORDS {
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
                .with_detail(format!("at most {MAX_RECORDS} records per request"))
                .with_field("records", format!("at most {MAX_RECORDS}")),
        );
    }
    let mut rejected = Vec::new();
    let mut forwarded = Vec::with_capacity(body.records.len());
    let mut positions = Vec::with_capacity(body.records.len());
    for (i, r) in body.records.into_iter().enumerate() {
        let ts = chrono::DateTime::parse_from_rfc3339(&r.timestamp);
        let (Ok(ts), Some(q)) = (ts, quantity(&r.quantity)) else {
            rejected.push(Rejected {
                index: i as u32,
                id: r.id.chars().take(128).collect(),
                reason: "invalid",
                message: "timestamp must be RFC 3339 and quantity a number or decimal string"
                    .into(),
            });
            continue;
        };
        positions.push(i as u32);
        forwarded.push(pb::UsageRecord {
            id: r.id,
            tenant_id: r.tenant_id,
            user_id: r.user_id.unwrap_or_default(),
            metric: r.metric,
            quantity: Some(Decimal { value: q }),
            timestamp: Some(platform::grpc::timestamp(ts.to_utc())),
        });
    }
    let r = subs
        .ingest_usage(call(&id, pb::IngestUsageRequest { records: forwarded }))
        .await
        .map_err(from_status)?
        .into_inner();
    for x in r.rejected {
        rejected.push(Rejected {
            index: positions.get(x.index as usize).copied().unwrap_or(x.index),
            reason: match x.reason() {
                pb::RejectReason::UnknownTenant => "unknown_tenant",
                pb::RejectReason::UnknownMetric => "unknown_metric",
                pb::RejectReason::TooOld => "too_old",
                _ => "invalid",
            },
            id: x.id,
            message: x.message,
        });
    }
    rejected.sort_by_key(|x| x.index);
    Ok(Json(IngestReport {
        accepted: r.accepted,
        duplicates: r.duplicates,
        rejected,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    metric: String,
    /// RFC 3339, inclusive.
    from: String,
    /// RFC 3339, exclusive.
    to: String,
    /// hour, day (default) or period.
    granularity: Option<String>,
    user_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsagePoint {
    start: Option<String>,
    quantity: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    metric: String,
    granularity: String,
    points: Vec<UsagePoint>,
    total: String,
}

/// Usage of a metric over time, from the rollups.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/usage", tag = "usage", params(("tenant_id" = String, Path, description = "tenant id"), UsageQuery), responses((status = 200, body = Usage), Errors), security(("bearer" = [])))]
async fn get_usage(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Usage>> {
    id.check_tenant(&tenant_id)?;
    let granularity = q.granularity.unwrap_or_else(|| "day".into());
    let g = match granularity.as_str() {
        "hour" => pb::Granularity::Hour,
        "day" => pb::Granularity::Day,
        "period" => pb::Granularity::Period,
        _ => {
            return Err(
                Problem::bad_request("granularity must be hour, day or period")
                    .with_field("granularity", "hour, day or period"),
            );
        }
    };
    let r = subs
        .get_usage(call(
            &id,
            pb::GetUsageRequest {
                tenant_id,
                metric: q.metric.clone(),
                from: Some(instant("from", &q.from)?),
                to: Some(instant("to", &q.to)?),
                granularity: g as i32,
                user_id: q.user_id,
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(Usage {
        metric: q.metric,
        granularity,
        points: r
            .points
            .into_iter()
            .map(|p| UsagePoint {
                start: time(p.start),
                quantity: dec(p.quantity),
            })
            .collect(),
        total: dec(r.total),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntitlementQuery {
    /// Also deny when this user is known to be deactivated.
    user_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Entitlement {
    feature: String,
    allowed: bool,
    /// Absent for boolean features.
    limit: Option<String>,
    used: String,
    remaining: Option<String>,
    /// ok, not_in_plan, limit_reached, soft_limit_exceeded, subscription_suspended,
    /// subscription_canceled, no_subscription or user_inactive.
    reason: String,
}

/// May the tenant use a feature now?
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/entitlements/{feature}", tag = "usage", params(("tenant_id" = String, Path, description = "tenant id"), ("feature" = String, Path, description = "feature key, e.g. api_calls"), EntitlementQuery), responses((status = 200, body = Entitlement), Errors), security(("bearer" = [])))]
async fn check_entitlement(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path((tenant_id, feature)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<EntitlementQuery>,
) -> Result<Json<Entitlement>> {
    id.check_tenant(&tenant_id)?;
    let e = subs
        .check_entitlement(call(
            &id,
            pb::CheckEntitlementRequest {
                tenant_id,
                user_id: q.user_id,
                feature: feature.clone(),
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(Entitlement {
        feature,
        allowed: e.allowed,
        limit: e.limit.map(|d| d.value),
        used: dec(e.used),
        remaining: e.remaining.map(|d| d.value),
        reason: e.reason,
    }))
}
