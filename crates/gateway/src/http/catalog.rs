//! The plan catalog, `/v1/plans`: read by every signed-in caller, edited by the operator.
//!
//! Amounts are decimal minor units (`"4900"` is 49.00 USD; `"0.04"` is four hundredths of a
//! cent), given as strings (exact) or JSON numbers. Editing a plan makes a new version;
//! subscriptions keep theirs until moved.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use platform::Problem;
use platform::grpc::Channel;
use rpc::common::v1::{Decimal, PageRequest};
use rpc::subscription::v1 as pb;
use rpc::subscription::v1::price_model::{self as pm, Model};
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::openapi::{BodyErrors, Errors};
use super::wire::{List, call, time};
use crate::auth::Identity;

type Subs = SubscriptionServiceClient<Channel>;
type Result<T> = std::result::Result<T, Problem>;

pub fn router(subs: Subs) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(create_plan, list_plans))
        .routes(routes!(get_plan, update_plan))
        .with_state(subs)
}

/// A decimal as a string (exact) or a JSON number.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Text(String),
    Number(serde_json::Number),
}

// On the wire it documents as a string (what we answer with).
impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <String as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Amount {}

impl Amount {
    fn wire(self) -> Option<Decimal> {
        Some(Decimal {
            value: match self {
                Amount::Text(s) => s,
                Amount::Number(n) => n.to_string(),
            },
        })
    }

    fn from_wire(d: Option<Decimal>) -> Amount {
        Amount::Text(d.map(|d| d.value).unwrap_or_else(|| "0".into()))
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierJson {
    /// Inclusive upper bound; omitted on the last tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    up_to: Option<Amount>,
    #[serde(default)]
    unit_amount: Option<Amount>,
    #[serde(default)]
    flat_amount: Option<Amount>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelJson {
    Flat {
        amount: Amount,
    },
    PerUnit {
        unit_amount: Amount,
    },
    Graduated {
        tiers: Vec<TierJson>,
    },
    Volume {
        tiers: Vec<TierJson>,
    },
    Package {
        package_size: Amount,
        package_amount: Amount,
    },
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceJson {
    id: String,
    /// flat, seat or metered.
    kind: String,
    /// Metered prices only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    model: ModelJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    included_quantity: Option<Amount>,
    /// In minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minimum_amount: Option<i64>,
    /// advance (at the period's start, trued up at its end) or arrears (at its end). Default:
    /// flat and seat prices in advance, metered prices in arrears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    billing: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureJson {
    key: String,
    /// boolean or limit.
    #[serde(rename = "type")]
    kind: String,
    /// Boolean features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    /// Limits: the metric, the cap per billing period, hard or soft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit_kind: Option<String>,
}

/// The tenant-wide API rate limit of a plan's subscribers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitJson {
    per_sec: u32,
    burst: u32,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// Lower-case key, e.g. `pro`; generated when omitted (create only).
    #[serde(default)]
    id: Option<String>,
    name: String,
    currency: String,
    /// month or year.
    interval: String,
    #[serde(default)]
    trial_days: u32,
    /// Seats are a quantity set on the subscription rather than active users.
    #[serde(default)]
    fixed_seats: bool,
    #[serde(default)]
    archived: bool,
    /// Omit for the gateway's default tenant limit.
    #[serde(default)]
    rate_limit: Option<RateLimitJson>,
    #[serde(default)]
    prices: Vec<PriceJson>,
    #[serde(default)]
    features: Vec<FeatureJson>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Plan {
    id: String,
    version: u32,
    name: String,
    currency: String,
    interval: &'static str,
    trial_days: u32,
    fixed_seats: bool,
    archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimitJson>,
    prices: Vec<PriceJson>,
    features: Vec<FeatureJson>,
    created_at: Option<String>,
}

fn invalid(field: &str, reason: &str) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .with_detail(format!("{field}: {reason}"))
        .with_field(field, reason)
}

fn tiers_wire(t: Vec<TierJson>) -> pm::Tiers {
    pm::Tiers {
        tiers: t
            .into_iter()
            .map(|t| pb::Tier {
                up_to: t.up_to.and_then(Amount::wire),
                unit_amount: t.unit_amount.and_then(Amount::wire),
                flat_amount: t.flat_amount.and_then(Amount::wire),
            })
            .collect(),
    }
}

impl PlanBody {
    fn wire(self) -> Result<pb::Plan> {
        let interval = match self.interval.as_str() {
            "month" => pb::Interval::Month,
            "year" => pb::Interval::Year,
            _ => return Err(invalid("interval", "month or year")),
        };
        let prices = self
            .prices
            .into_iter()
            .map(|p| {
                let kind = match p.kind.as_str() {
                    "flat" => pb::ChargeKind::Flat,
                    "seat" => pb::ChargeKind::Seat,
                    "metered" => pb::ChargeKind::Metered,
                    _ => return Err(invalid("prices.kind", "flat, seat or metered")),
                };
                let billing = match p.billing.as_deref() {
                    None => pb::PriceTiming::Unspecified,
                    Some("advance") => pb::PriceTiming::Advance,
                    Some("arrears") => pb::PriceTiming::Arrears,
                    Some(_) => return Err(invalid("prices.billing", "advance or arrears")),
                };
                let model = match p.model {
                    ModelJson::Flat { amount } => Model::Flat(pm::Flat {
                        amount: amount.wire(),
                    }),
                    ModelJson::PerUnit { unit_amount } => Model::PerUnit(pm::PerUnit {
                        unit_amount: unit_amount.wire(),
                    }),
                    ModelJson::Graduated { tiers } => Model::Graduated(tiers_wire(tiers)),
                    ModelJson::Volume { tiers } => Model::Volume(tiers_wire(tiers)),
                    ModelJson::Package {
                        package_size,
                        package_amount,
                    } => Model::Package(pm::Package {
                        package_size: package_size.wire(),
                        package_amount: package_amount.wire(),
                    }),
                };
                Ok(pb::Price {
                    id: p.id,
                    kind: kind as i32,
                    metric: p.metric.unwrap_or_default(),
                    model: Some(pb::PriceModel { model: Some(model) }),
                    included_quantity: p.included_quantity.and_then(Amount::wire),
                    minimum_amount_cents: p.minimum_amount,
                    billing: billing as i32,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let features = self
            .features
            .into_iter()
            .map(|f| {
                let value = match f.kind.as_str() {
                    "boolean" => pb::feature::Value::Enabled(f.enabled.unwrap_or(true)),
                    "limit" => pb::feature::Value::Limit(pb::feature::MeteredLimit {
                        metric: f.metric.unwrap_or_default(),
                        limit: f.limit.and_then(Amount::wire),
                        kind: match f.limit_kind.as_deref() {
                            None | Some("hard") => pb::LimitKind::Hard,
                            Some("soft") => pb::LimitKind::Soft,
                            Some(_) => return Err(invalid("features.limit_kind", "hard or soft")),
                        } as i32,
                    }),
                    _ => return Err(invalid("features.type", "boolean or limit")),
                };
                Ok(pb::Feature {
                    key: f.key,
                    value: Some(value),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(pb::Plan {
            id: self.id.unwrap_or_default(),
            version: 0,
            name: self.name,
            currency: self.currency,
            interval: interval as i32,
            prices,
            features,
            trial_days: self.trial_days,
            archived: self.archived,
            created_at: None,
            fixed_seats: self.fixed_seats,
            rate_limit: self.rate_limit.map(|r| pb::RateLimit {
                per_sec: r.per_sec,
                burst: r.burst,
            }),
        })
    }
}

fn tiers_json(t: pm::Tiers) -> Vec<TierJson> {
    t.tiers
        .into_iter()
        .map(|t| TierJson {
            up_to: t.up_to.map(|d| Amount::from_wire(Some(d))),
            unit_amount: Some(Amount::from_wire(t.unit_amount)),
            flat_amount: Some(Amount::from_wire(t.flat_amount)),
        })
        .collect()
}

impl From<pb::Plan> for Plan {
    fn from(p: pb::Plan) -> Self {
        let prices = p
            .prices
            .iter()
            .cloned()
            .map(|x| {
                let model = match x.model.and_then(|m| m.model) {
                    Some(Model::Flat(f)) => ModelJson::Flat {
                        amount: Amount::from_wire(f.amount),
                    },
                    Some(Model::PerUnit(u)) => ModelJson::PerUnit {
                        unit_amount: Amount::from_wire(u.unit_amount),
                    },
                    Some(Model::Graduated(t)) => ModelJson::Graduated {
                        tiers: tiers_json(t),
                    },
                    Some(Model::Volume(t)) => ModelJson::Volume {
                        tiers: tiers_json(t),
                    },
                    Some(Model::Package(p)) => ModelJson::Package {
                        package_size: Amount::from_wire(p.package_size),
                        package_amount: Amount::from_wire(p.package_amount),
                    },
                    None => ModelJson::Flat {
                        amount: Amount::from_wire(None),
                    },
                };
                PriceJson {
                    kind: match pb::ChargeKind::try_from(x.kind) {
                        Ok(pb::ChargeKind::Seat) => "seat",
                        Ok(pb::ChargeKind::Metered) => "metered",
                        _ => "flat",
                    }
                    .into(),
                    id: x.id,
                    metric: (!x.metric.is_empty()).then_some(x.metric),
                    model,
                    included_quantity: Some(Amount::from_wire(x.included_quantity)),
                    minimum_amount: x.minimum_amount_cents,
                    billing: match pb::PriceTiming::try_from(x.billing) {
                        Ok(pb::PriceTiming::Advance) => Some("advance".into()),
                        Ok(pb::PriceTiming::Arrears) => Some("arrears".into()),
                        _ => None,
                    },
                }
            })
            .collect();
        let features = p
            .features
            .iter()
            .cloned()
            .map(|f| match f.value {
                Some(pb::feature::Value::Limit(l)) => FeatureJson {
                    key: f.key,
                    kind: "limit".into(),
                    enabled: None,
                    limit_kind: Some(
                        match pb::LimitKind::try_from(l.kind) {
                            Ok(pb::LimitKind::Soft) => "soft",
                            _ => "hard",
                        }
                        .into(),
                    ),
                    metric: Some(l.metric),
                    limit: Some(Amount::from_wire(l.limit)),
                },
                other => FeatureJson {
                    key: f.key,
                    kind: "boolean".into(),
                    enabled: Some(matches!(other, Some(pb::feature::Value::Enabled(true)))),
                    metric: None,
                    limit: None,
                    limit_kind: None,
                },
            })
            .collect();
        Plan {
            interval: match p.interval() {
                pb::Interval::Year => "year",
                _ => "month",
            },
            id: p.id,
            version: p.version,
            name: p.name,
            currency: p.currency,
            trial_days: p.trial_days,
            fixed_seats: p.fixed_seats,
            archived: p.archived,
            rate_limit: p.rate_limit.map(|r| RateLimitJson {
                per_sec: r.per_sec,
                burst: r.burst,
            }),
            prices,
            features,
            created_at: time(p.created_at),
        }
    }
}

/// Create a plan (platform_admin).
#[utoipa::path(post, path = "/v1/plans", tag = "plans", request_body = PlanBody, responses((status = 201, body = Plan), BodyErrors), security(("bearer" = [])))]
async fn create_plan(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    ApiJson(body): ApiJson<PlanBody>,
) -> Result<(StatusCode, Json<Plan>)> {
    let plan = body.wire()?;
    let p = subs
        .create_plan(call(&id, pb::CreatePlanRequest { plan: Some(plan) }))
        .await
        .map_err(from_status)?;
    Ok((StatusCode::CREATED, Json(p.into_inner().into())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlanListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    include_archived: Option<bool>,
}

/// List plans (latest versions).
#[utoipa::path(get, path = "/v1/plans", tag = "plans", params(PlanListQuery), responses((status = 200, body = List<Plan>), Errors), security(("bearer" = [])))]
async fn list_plans(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    ApiQuery(q): ApiQuery<PlanListQuery>,
) -> Result<Json<List<Plan>>> {
    let limit = q.limit.unwrap_or(0);
    if limit > 100 {
        return Err(
            Problem::bad_request("limit must be from 1 to 100").with_field("limit", "at most 100")
        );
    }
    let r = subs
        .list_plans(call(
            &id,
            pb::ListPlansRequest {
                page: Some(PageRequest {
                    limit,
                    cursor: q.cursor.unwrap_or_default(),
                }),
                include_archived: q.include_archived.unwrap_or(false),
            },
        ))
        .await
        .map_err(from_status)?
        .into_inner();
    Ok(Json(List::new(
        r.plans.into_iter().map(Into::into).collect(),
        r.page,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// Omit for the latest.
    version: Option<u32>,
}

/// Get a plan (latest version, or `?version=`).
#[utoipa::path(get, path = "/v1/plans/{plan_id}", tag = "plans", params(("plan_id" = String, Path, description = "plan id"), VersionQuery), responses((status = 200, body = Plan), Errors), security(("bearer" = [])))]
async fn get_plan(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(plan_id): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Json<Plan>> {
    let p = subs
        .get_plan(call(
            &id,
            pb::GetPlanRequest {
                plan_id,
                version: q.version.unwrap_or(0),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(p.into_inner().into()))
}

/// Edit a plan: makes a new version (platform_admin).
#[utoipa::path(put, path = "/v1/plans/{plan_id}", tag = "plans", params(("plan_id" = String, Path, description = "plan id")), request_body = PlanBody, responses((status = 200, body = Plan), BodyErrors), security(("bearer" = [])))]
async fn update_plan(
    State(mut subs): State<Subs>,
    Extension(id): Extension<Identity>,
    Path(plan_id): Path<String>,
    ApiJson(body): ApiJson<PlanBody>,
) -> Result<Json<Plan>> {
    let plan = body.wire()?;
    let p = subs
        .update_plan(call(
            &id,
            pb::UpdatePlanRequest {
                plan_id,
                plan: Some(plan),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(p.into_inner().into()))
}
