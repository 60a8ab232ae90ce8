//! Who is billed and how they are taxed: a tenant's billing profile
//! (`/v1/tenants/{tenant_id}/billing_profile`) and the operator's tax rates (`/v1/tax_rates`),
//! forwarded to the invoicing service.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use platform::Problem;
use rpc::common::v1::Decimal;
use rpc::invoicing::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiJson, ApiQuery, from_status};
use super::invoices::Invoicing;
use super::openapi::{BodyErrors, Errors};
use super::wire::{call, time};
use crate::auth::Identity;

type Result<T> = std::result::Result<T, Problem>;

pub fn router(invoicing: Invoicing) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(get_profile, put_profile))
        .routes(routes!(create_rate, list_rates))
        .routes(routes!(archive_rate))
        .with_state(invoicing)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Profile {
    tenant_id: String,
    legal_name: String,
    address_lines: Vec<String>,
    country: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    region: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    tax_id: String,
    tax_exempt: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    billing_email: String,
    updated_at: Option<String>,
}

impl From<pb::BillingProfile> for Profile {
    fn from(p: pb::BillingProfile) -> Self {
        Profile {
            tenant_id: p.tenant_id,
            legal_name: p.legal_name,
            address_lines: p.address_lines,
            country: p.country,
            region: p.region,
            tax_id: p.tax_id,
            tax_exempt: p.tax_exempt,
            billing_email: p.billing_email,
            updated_at: time(p.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// Printed as the buyer; 1 to 200 characters.
    legal_name: String,
    /// At most 6 lines.
    #[serde(default)]
    address_lines: Vec<String>,
    /// ISO 3166-1 alpha-2, upper case (`DE`).
    country: String,
    /// A state or province (`CA`): picks a regional tax rate.
    #[serde(default)]
    region: Option<String>,
    /// A VAT id makes an EU business in another member state than the seller reverse-charged.
    #[serde(default)]
    tax_id: Option<String>,
    /// Only the operator may change it.
    #[serde(default)]
    tax_exempt: bool,
    #[serde(default)]
    billing_email: Option<String>,
}

/// A tenant's billing profile.
#[utoipa::path(get, path = "/v1/tenants/{tenant_id}/billing_profile", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), responses((status = 200, body = Profile), Errors), security(("bearer" = [])))]
async fn get_profile(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
) -> Result<Json<Profile>> {
    id.check_tenant(&tenant_id)?;
    let r = invoicing
        .get_billing_profile(call(&id, pb::GetBillingProfileRequest { tenant_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

/// Set a tenant's billing profile (the whole of it). Issued invoices keep the profile they
/// were issued with.
#[utoipa::path(put, path = "/v1/tenants/{tenant_id}/billing_profile", tag = "invoicing", params(("tenant_id" = String, Path, description = "tenant id, e.g. ten_…")), request_body = ProfileBody, responses((status = 200, body = Profile), BodyErrors), security(("bearer" = [])))]
async fn put_profile(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path(tenant_id): Path<String>,
    ApiJson(b): ApiJson<ProfileBody>,
) -> Result<Json<Profile>> {
    id.check_tenant(&tenant_id)?;
    let profile = pb::BillingProfile {
        tenant_id,
        legal_name: b.legal_name,
        address_lines: b.address_lines,
        country: b.country,
        region: b.region.unwrap_or_default(),
        tax_id: b.tax_id.unwrap_or_default(),
        tax_exempt: b.tax_exempt,
        billing_email: b.billing_email.unwrap_or_default(),
        updated_at: None,
    };
    let r = invoicing
        .put_billing_profile(call(
            &id,
            pb::PutBillingProfileRequest {
                profile: Some(profile),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaxRate {
    id: String,
    country: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    region: String,
    /// Percent as an exact decimal: `19`, `8.875`.
    percentage: String,
    name: String,
    /// Whether line amounts already include the tax.
    inclusive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archived_at: Option<String>,
}

impl From<pb::TaxRate> for TaxRate {
    fn from(r: pb::TaxRate) -> Self {
        TaxRate {
            id: r.id,
            country: r.country,
            region: r.region,
            percentage: r.percentage.map(|d| d.value).unwrap_or_default(),
            name: r.name,
            inclusive: r.inclusive,
            created_at: time(r.created_at),
            archived_at: time(r.archived_at),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxRateBody {
    /// ISO 3166-1 alpha-2, upper case.
    country: String,
    /// A region of the country; omit for a country-wide rate.
    #[serde(default)]
    region: Option<String>,
    /// Percent as a string holding an exact decimal, 0 to 100: `"19"`, `"8.875"`.
    percentage: String,
    /// As printed on invoices: `VAT`, `Sales tax`.
    name: String,
    #[serde(default)]
    inclusive: bool,
}

/// Operator only: the tax rate of a country or region; it replaces (archives) the live rate of
/// the same place for invoices finalized from now on.
#[utoipa::path(post, path = "/v1/tax_rates", tag = "invoicing", request_body = TaxRateBody, responses((status = 201, body = TaxRate), BodyErrors), security(("bearer" = [])))]
async fn create_rate(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    ApiJson(b): ApiJson<TaxRateBody>,
) -> Result<(StatusCode, Json<TaxRate>)> {
    let rate = pb::TaxRate {
        id: String::new(),
        country: b.country,
        region: b.region.unwrap_or_default(),
        percentage: Some(Decimal {
            value: b.percentage,
        }),
        name: b.name,
        inclusive: b.inclusive,
        created_at: None,
        archived_at: None,
    };
    let r = invoicing
        .create_tax_rate(call(&id, pb::CreateTaxRateRequest { rate: Some(rate) }))
        .await
        .map_err(from_status)?;
    Ok((StatusCode::CREATED, Json(r.into_inner().into())))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RateListQuery {
    /// Archived rates too.
    include_archived: Option<bool>,
}

/// The tax rates, by place.
#[utoipa::path(get, path = "/v1/tax_rates", tag = "invoicing", params(RateListQuery), responses((status = 200, body = Vec<TaxRate>), Errors), security(("bearer" = [])))]
async fn list_rates(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    ApiQuery(q): ApiQuery<RateListQuery>,
) -> Result<Json<Vec<TaxRate>>> {
    let r = invoicing
        .list_tax_rates(call(
            &id,
            pb::ListTaxRatesRequest {
                include_archived: q.include_archived.unwrap_or(false),
            },
        ))
        .await
        .map_err(from_status)?;
    Ok(Json(
        r.into_inner().rates.into_iter().map(Into::into).collect(),
    ))
}

/// Operator only: stop using a rate (issued invoices keep it).
#[utoipa::path(post, path = "/v1/tax_rates/{tax_rate_id}/archive", tag = "invoicing", params(("tax_rate_id" = String, Path, description = "tax rate id, e.g. txr_…")), responses((status = 200, body = TaxRate), BodyErrors), security(("bearer" = [])))]
async fn archive_rate(
    State(mut invoicing): State<Invoicing>,
    Extension(id): Extension<Identity>,
    Path(tax_rate_id): Path<String>,
) -> Result<Json<TaxRate>> {
    let r = invoicing
        .archive_tax_rate(call(&id, pb::ArchiveTaxRateRequest { tax_rate_id }))
        .await
        .map_err(from_status)?;
    Ok(Json(r.into_inner().into()))
}
