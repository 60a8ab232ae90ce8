//! `saas.billing.v1.BillingService`: transport only.

use chrono::{DateTime, Utc};
use ids::{RunId, TenantId};
use platform::events::enqueue;
use platform::grpc::{Caller, timestamp};
use platform::paging;
use rpc::billing::v1 as pb;
use rpc::billing::v1::billing_service_server::BillingService;
use rpc::common::v1::{Money, PageResponse};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::domain::{LineKind, RunStatus};
use crate::error::BillingError;
use crate::runner::{Runner, requested_event};
use crate::store::charges;
use crate::store::runs::{self, NewRun, RunRow};

/// The longest deadline a run may ask for.
const MAX_DEADLINE_SECS: u32 = 3600;
/// Most tenants one run may name; beyond it, a run over every tenant is the tool.
const MAX_RUN_TENANTS: usize = 1000;

#[derive(Debug, Clone)]
pub struct BillingApi {
    pub pool: PgPool,
    pub runner: Runner,
}

type Reply<T> = Result<Response<T>, Status>;

fn time(
    field: &'static str,
    t: &Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, BillingError> {
    let t = t
        .as_ref()
        .ok_or_else(|| BillingError::invalid(field, "required"))?;
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .ok_or_else(|| BillingError::invalid(field, "out of range"))
}

/// A run as the caller may see it: the operator sees all; a tenant only runs naming it.
fn visible(c: &Caller, r: &RunRow) -> bool {
    c.is_operator() || r.tenant_ids.contains(&c.tenant_id)
}

/// The operator's tenant filter.
fn tenant_filter(t: &str) -> Result<TenantId, BillingError> {
    TenantId::parse(t).map_err(|e| BillingError::invalid("tenant_id", e.to_string()))
}

fn run_pb(r: RunRow) -> pb::BillingRun {
    let status = match r.status {
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Completed => pb::RunStatus::Completed,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::ExceededDeadline => pb::RunStatus::ExceededDeadline,
    };
    let duration_ms = match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => (f - s).num_milliseconds().max(0) as u64,
        _ => 0,
    };
    pb::BillingRun {
        id: r.id.into(),
        period: Some(rpc::common::v1::Period {
            start: Some(timestamp(r.period_start)),
            end: Some(timestamp(r.period_end)),
        }),
        tenant_ids: r.tenant_ids.into_iter().map(String::from).collect(),
        status: status as i32,
        progress: Some(pb::RunProgress {
            records_processed: r.records_processed.max(0) as u64,
            records_per_second: r.records_per_second,
            tenants_done: 0,
            tenants_total: 0,
        }),
        started_at: r.started_at.map(timestamp),
        finished_at: r.finished_at.map(timestamp),
        duration_ms,
        // Money totals arrive with pricing; record and quantity totals are in the event.
        totals: vec![],
        error: r.error,
        corrects_run_id: r.corrects_run_id.map(String::from),
        created_at: Some(timestamp(r.created_at)),
    }
}

impl BillingApi {
    async fn start_run_inner(
        &self,
        c: &Caller,
        r: pb::StartRunRequest,
    ) -> Result<pb::BillingRun, BillingError> {
        c.require(authz::Role::PlatformAdmin)?;
        let p = r
            .period
            .ok_or_else(|| BillingError::invalid("period", "required"))?;
        let (start, end) = (time("period.start", &p.start)?, time("period.end", &p.end)?);
        if end <= start {
            return Err(BillingError::invalid(
                "period.end",
                "must be after period.start",
            ));
        }
        let deadline = match r.deadline_seconds {
            0 => concurrency::DEFAULT_RUN_DEADLINE.as_secs() as u32,
            n @ 1..=MAX_DEADLINE_SECS => n,
            _ => {
                return Err(BillingError::invalid(
                    "deadline_seconds",
                    format!("1 to {MAX_DEADLINE_SECS}"),
                ));
            }
        };
        if r.tenant_ids.len() > MAX_RUN_TENANTS {
            return Err(BillingError::invalid(
                "tenant_ids",
                format!("at most {MAX_RUN_TENANTS} (omit them to bill every tenant)"),
            ));
        }
        let mut tenants = r
            .tenant_ids
            .iter()
            .map(|t| TenantId::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                BillingError::invalid(
                    "tenant_ids",
                    "1 to 64 printable ASCII characters each, no comma",
                )
            })?;
        tenants.sort();
        tenants.dedup();
        let id = RunId::generate();
        let mut tx = self.pool.begin().await?;
        if r.rerun {
            // A correction of the completed original: it bills only the difference.
            let original = runs::original_for_update(&mut tx, (start, end), &tenants)
                .await?
                .filter(|o| o.status == RunStatus::Completed)
                .ok_or(BillingError::FailedPrecondition(
                    "no completed run of this period and these tenants to correct",
                ))?;
            if runs::correction_in_flight(&mut tx, &original.id).await? {
                return Err(BillingError::FailedPrecondition(
                    "a correction of this run is already queued or running",
                ));
            }
            let row = runs::insert_correction(
                &mut tx,
                &NewRun {
                    id: &id,
                    period: (start, end),
                    tenant_ids: &tenants,
                    deadline_seconds: deadline as i32,
                    corrects_run_id: Some(&original.id),
                },
            )
            .await?;
            enqueue(&mut tx, &requested_event(&row)).await?;
            tx.commit().await?;
            return Ok(run_pb(row));
        }
        let (row, fresh) = runs::insert_or_existing(
            &mut tx,
            &NewRun {
                id: &id,
                period: (start, end),
                tenant_ids: &tenants,
                deadline_seconds: deadline as i32,
                corrects_run_id: None,
            },
        )
        .await?;
        // Asked again for a window whose run failed or ran out of time: it runs again (it
        // claimed nothing, so nothing is billed twice).
        let (row, fresh) = match row.status {
            RunStatus::Failed | RunStatus::ExceededDeadline if !fresh => {
                match runs::retry(&mut tx, &row.id, deadline as i32).await? {
                    Some(queued) => (queued, true),
                    // Another request queued it meanwhile: as it is now.
                    None => (runs::get(&mut tx, &row.id).await?.unwrap_or(row), false),
                }
            }
            _ => (row, fresh),
        };
        if fresh {
            enqueue(&mut tx, &requested_event(&row)).await?;
        }
        tx.commit().await?;
        Ok(run_pb(row))
    }

    async fn get_run_inner(&self, c: &Caller, id: &str) -> Result<pb::BillingRun, BillingError> {
        let id = RunId::parse(id).map_err(|_| BillingError::NotFound("run"))?;
        let mut conn = self.pool.acquire().await?;
        let run = match runs::get(&mut conn, &id).await? {
            Some(r) if visible(c, &r) => r,
            _ => return Err(BillingError::NotFound("run")),
        };
        // Money totals exist once the run completed (a failed run's charges are deleted).
        let totals = charges::totals(&mut conn, &id)
            .await?
            .into_iter()
            .filter(|(tenant, _, _)| c.sees(tenant))
            .map(|(tenant_id, currency, amount_cents)| pb::TenantTotal {
                tenant_id: tenant_id.into(),
                total: Some(Money {
                    amount_cents,
                    currency,
                }),
            })
            .collect();
        Ok(pb::BillingRun {
            totals,
            ..run_pb(run)
        })
    }

    async fn list_runs_inner(
        &self,
        c: &Caller,
        r: pb::ListRunsRequest,
    ) -> Result<pb::ListRunsResponse, BillingError> {
        let page = r.page.unwrap_or_default();
        let limit = paging::limit(page.limit);
        // The operator may filter by tenant; anyone else sees only their own tenant's runs.
        let tenant = if c.is_operator() {
            r.tenant_id.as_deref().map(tenant_filter).transpose()?
        } else {
            Some(c.tenant_id.clone())
        };
        let before = paging::after(&page.cursor)?;
        let mut conn = self.pool.acquire().await?;
        let mut rows = runs::list(&mut conn, before.as_deref(), limit, tenant.as_ref()).await?;
        if !c.is_operator() {
            rows.retain(|r| visible(c, r));
        }
        let page = paging::page(rows, limit, |r| r.id.to_string());
        Ok(pb::ListRunsResponse {
            runs: page.rows.into_iter().map(run_pb).collect(),
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
                has_more: page.has_more,
            }),
        })
    }

    async fn list_charges_inner(
        &self,
        c: &Caller,
        r: pb::ListChargesRequest,
    ) -> Result<pb::ListChargesResponse, BillingError> {
        let run_id = RunId::parse(&r.run_id).map_err(|_| BillingError::NotFound("run"))?;
        let mut conn = self.pool.acquire().await?;
        match runs::get(&mut conn, &run_id).await? {
            Some(run) if visible(c, &run) => {}
            _ => return Err(BillingError::NotFound("run")),
        }
        // Another tenant's lines are never listed to a tenant.
        let tenant = if c.is_operator() {
            r.tenant_id.as_deref().map(tenant_filter).transpose()?
        } else {
            Some(c.tenant_id.clone())
        };
        let page = r.page.unwrap_or_default();
        let limit = paging::limit(page.limit);
        let after = match paging::after(&page.cursor)? {
            None => 0,
            Some(key) => key.parse::<i64>().map_err(|_| paging::BadCursor)?,
        };
        let rows = charges::list(&mut conn, &run_id, tenant.as_ref(), after, limit).await?;
        let page = paging::page(rows, limit, |r| r.id.to_string());
        let (rows, has_more, next_cursor) = (page.rows, page.has_more, page.next_cursor);
        Ok(pb::ListChargesResponse {
            charges: rows
                .into_iter()
                .map(|r| pb::Charge {
                    description: describe(&r),
                    id: r.id.to_string(),
                    run_id: r.run_id.into(),
                    tenant_id: r.tenant_id.into(),
                    user_id: None,
                    kind: match r.kind {
                        LineKind::Flat => pb::ChargeKind::Flat,
                        LineKind::Seat => pb::ChargeKind::Seat,
                        LineKind::Usage => pb::ChargeKind::Usage,
                        LineKind::Minimum => pb::ChargeKind::Minimum,
                        LineKind::Adjustment => pb::ChargeKind::Adjustment,
                        LineKind::Proration => pb::ChargeKind::Proration,
                    } as i32,
                    period: r.period_start.zip(r.period_end).map(|(s, e)| {
                        rpc::common::v1::Period {
                            start: Some(timestamp(s)),
                            end: Some(timestamp(e)),
                        }
                    }),
                    subscription_id: r.subscription_id,
                    part: r.part,
                    price_id: r.price_id,
                    plan_id: r.plan_id,
                    plan_version: u32::try_from(r.plan_version).unwrap_or(0),
                    starts_at: r.starts_at.map(timestamp),
                    ends_at: r.ends_at.map(timestamp),
                    metric: r.metric,
                    quantity: Some(pricing::wire::decimal_pb(r.quantity)),
                    unit_amount: None,
                    amount: Some(Money {
                        amount_cents: r.amount_minor,
                        currency: r.currency,
                    }),
                })
                .collect(),
            page: Some(PageResponse {
                next_cursor,
                has_more,
            }),
        })
    }
}

#[tonic::async_trait]
impl BillingService for BillingApi {
    async fn start_run(&self, req: Request<pb::StartRunRequest>) -> Reply<pb::BillingRun> {
        let c = Caller::of(&req).map_err(BillingError::from)?;
        Ok(Response::new(
            self.start_run_inner(&c, req.into_inner()).await?,
        ))
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Reply<pb::BillingRun> {
        let c = Caller::of(&req).map_err(BillingError::from)?;
        let id = req.into_inner().run_id;
        Ok(Response::new(self.get_run_inner(&c, &id).await?))
    }

    async fn list_runs(&self, req: Request<pb::ListRunsRequest>) -> Reply<pb::ListRunsResponse> {
        let c = Caller::of(&req).map_err(BillingError::from)?;
        Ok(Response::new(
            self.list_runs_inner(&c, req.into_inner()).await?,
        ))
    }

    async fn list_charges(
        &self,
        req: Request<pb::ListChargesRequest>,
    ) -> Reply<pb::ListChargesResponse> {
        let c = Caller::of(&req).map_err(BillingError::from)?;
        Ok(Response::new(
            self.list_charges_inner(&c, req.into_inner()).await?,
        ))
    }
}

/// A line's label for people (invoices, dashboards): the price and the plan version it bills.
fn describe(r: &charges::ChargeRow) -> String {
    let what = if r.plan_id.is_empty() {
        r.price_id.clone()
    } else {
        format!("{} (plan {} v{})", r.price_id, r.plan_id, r.plan_version)
    };
    match (r.kind, r.starts_at) {
        (LineKind::Adjustment, None) => format!("credit: {what}"),
        (LineKind::Adjustment, Some(_)) => format!("correction: {what}"),
        (LineKind::Proration, None) => format!("unused time: {what}"),
        (LineKind::Proration, Some(_)) => format!("proration: {what}"),
        _ => what,
    }
}
