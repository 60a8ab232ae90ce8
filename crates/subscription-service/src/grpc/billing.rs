//! The two streams billing reads: a period's usage and the billable subscriptions.

use std::pin::Pin;

use futures::Stream;
use platform::grpc::{Caller, timestamp};
use rpc::subscription::v1 as pb;
use tonic::Status;

use super::{SubscriptionApi, tenant_ids};
use crate::convert::{self, plan_pb, segment_pb, sub_pb};
use crate::domain::phases::plan_phases;
use crate::error::SubError;
use crate::store::periods;
use crate::store::subscriptions::{self, SubRow};
use crate::store::usage::Select;
use ids::SubscriptionId;
use std::collections::HashMap;

/// Periods one `StreamUsage` call may name.
const MAX_STREAM_PERIODS: usize = 100_000;
use crate::store::{self, seats};
use ids::TenantId;

impl SubscriptionApi {
    pub(super) async fn stream_usage_inner(
        &self,
        c: &Caller,
        r: pb::StreamUsageRequest,
    ) -> Result<UsageStream, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let size = match r.batch_size {
            0 => 4096,
            n @ 1..=8192 => n as usize,
            _ => return Err(SubError::invalid("batch_size", "1 to 8192")),
        };
        let select = if !r.periods.is_empty() {
            if r.periods.len() > MAX_STREAM_PERIODS {
                return Err(SubError::invalid(
                    "periods",
                    format!("at most {MAX_STREAM_PERIODS}"),
                ));
            }
            let pairs = r
                .periods
                .iter()
                .map(|p| {
                    let tenant = TenantId::parse(&p.tenant_id)
                        .map_err(|e| SubError::invalid("periods.tenant_id", e.to_string()))?;
                    Ok((
                        tenant,
                        convert::time("periods.period_start", &p.period_start)?,
                    ))
                })
                .collect::<Result<_, SubError>>()?;
            Select::Periods(pairs)
        } else {
            let period = convert::period(&r.period)?;
            let tenants = if r.tenant_ids.is_empty() {
                let mut conn = self.inner.pool.acquire().await?;
                subscriptions::list(&mut conn, &[])
                    .await?
                    .into_iter()
                    .map(|s| s.tenant_id)
                    .collect()
            } else {
                tenant_ids(&r.tenant_ids)?
            };
            Select::Window {
                tenants,
                from: period.start,
                to: period.end,
            }
        };
        if r.columnar {
            Ok(usage_stream(self, select, size, |c| pb::UsageBatch {
                records: Vec::new(),
                columns: Some(convert::columns_pb(c)),
            }))
        } else {
            Ok(usage_stream(self, select, size, |rows: Vec<_>| {
                pb::UsageBatch {
                    records: rows.into_iter().map(convert::record_pb).collect(),
                    columns: None,
                }
            }))
        }
    }

    pub(super) async fn billable_inner(
        &self,
        c: &Caller,
        r: pb::ListBillableSubscriptionsRequest,
    ) -> Result<BillableStream, SubError> {
        c.require(authz::Role::PlatformAdmin)?;
        let window = convert::period(&r.period)?;
        let tenants = tenant_ids(&r.tenant_ids)?;
        let mut conn = self.inner.pool.acquire().await?;
        let subs = subscriptions::list(&mut conn, &tenants).await?;
        let mut out = Vec::new();
        if r.by_period {
            let mut ended: HashMap<SubscriptionId, Vec<periods::PeriodRow>> = HashMap::new();
            for p in periods::billable_within(&mut conn, &tenants, window.start, window.end).await?
            {
                ended.entry(p.subscription_id.clone()).or_default().push(p);
            }
            for s in subs {
                let mut billable = pb::BillableSubscription {
                    subscription: Some(sub_pb(&s)),
                    ..Default::default()
                };
                for p in ended.remove(&s.id).unwrap_or_default() {
                    let span = pricing::Period {
                        start: p.period_start,
                        end: p.ended_at.unwrap_or(p.period_end),
                    };
                    let (phases, seats) = self.phases_and_seats(&mut conn, &s, &span).await?;
                    billable.periods.push(pb::BillablePeriod {
                        period: Some(convert::period_pb(p.period_start, p.period_end)),
                        ended_at: p.ended_at.map(timestamp),
                        phases,
                        seats,
                    });
                }
                if !billable.periods.is_empty() {
                    out.push(Ok(billable));
                }
            }
            return Ok(Box::pin(futures::stream::iter(out)));
        }
        for s in subs {
            let ended_before = s.canceled_at.is_some_and(|t| t <= window.start);
            if s.created_at >= window.end || ended_before {
                continue;
            }
            let (phases, seats) = self.phases_and_seats(&mut conn, &s, &window).await?;
            out.push(Ok(pb::BillableSubscription {
                subscription: Some(sub_pb(&s)),
                plan: phases.last().and_then(|p| p.plan.clone()),
                seats,
                phases,
                periods: vec![],
            }));
        }
        Ok(Box::pin(futures::stream::iter(out)))
    }

    /// The plan versions in force over `span` (split at plan changes) and the seat history
    /// over it.
    async fn phases_and_seats(
        &self,
        conn: &mut sqlx::PgConnection,
        s: &SubRow,
        span: &pricing::Period,
    ) -> Result<(Vec<pb::PlanPhase>, Vec<pb::SeatSegment>), SubError> {
        let changes = subscriptions::plan_changes(
            conn,
            &s.tenant_id,
            span.start.max(s.created_at),
            span.end,
            s.canceled_at,
        )
        .await?;
        let current = (s.plan_id.clone(), s.plan_version());
        let mut phases = Vec::new();
        for p in plan_phases(span, current, &changes) {
            let plan = self.inner.plan_version(conn, &p.plan.0, p.plan.1).await?;
            phases.push(pb::PlanPhase {
                plan: Some(plan_pb(&plan)),
                start: Some(timestamp(p.start)),
                end: Some(timestamp(p.end)),
            });
        }
        let segments = seats::history(conn, &s.tenant_id, Some(span.start), Some(span.end)).await?;
        Ok((phases, segments.iter().map(segment_pb).collect()))
    }
}

pub(crate) type UsageStream = Pin<Box<dyn Stream<Item = Result<pb::UsageBatch, Status>> + Send>>;

/// Streams the selected usage as batches of `B`, each turned into a message by `encode`.
fn usage_stream<B: store::usage::StreamBatch>(
    svc: &SubscriptionApi,
    select: Select,
    size: usize,
    encode: fn(B) -> pb::UsageBatch,
) -> UsageStream {
    let parts = svc.inner.settings.usage_read_parts;
    // Two batches in flight per part: a slow reader pauses the query (and Postgres) here.
    let (tx, rx) = tokio::sync::mpsc::channel(2 * parts);
    let pool = svc.inner.pool.clone();
    tokio::spawn(async move {
        let q = store::usage::StreamQuery {
            select,
            size,
            parts,
        };
        store::usage::stream(&pool, q, tx).await;
    });
    Box::pin(tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        move |batch| batch.map(encode).map_err(Status::from),
    ))
}
pub(crate) type BillableStream =
    Pin<Box<dyn Stream<Item = Result<pb::BillableSubscription, Status>> + Send>>;
