//! Executes billing runs: claim the queued run, stream its usage from the subscription service
//! (`StreamUsage`) into the pipeline under the run's deadline, report progress while it goes,
//! and finish it — `completed` with `billing.run.completed` (per-tenant totals) through the
//! outbox, or `failed` / `exceeded_deadline` with its partial summaries deleted in the same
//! transaction, so they are never visible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use concurrency::{Limiter, ThroughputTracker, with_deadline};
use event_types::{BillingRun, RunCompleted, RunFailed, TenantAmount, TenantRecords, data};
use ids::{RunId, TenantId};
use platform::events::{CloudEvent, enqueue};
use platform::grpc::Channel;
use platform::grpc::{Caller, timestamp};
use rpc::subscription::v1 as sub;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::RunStatus;
use crate::domain::aggregate::Columns;
use crate::domain::charges::Billable;
use crate::pipeline::{self, PipelineError, SummarySink};
use crate::store::charges;
use crate::store::runs::{self, RunRow};

const SOURCE: &str = "/services/billing";
/// Records per `StreamUsage` message and per pipeline batch.
const BATCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("usage stream: {0}")]
    Stream(#[from] tonic::Status),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("bad usage record: {0}")]
    Record(String),
    #[error("events: {0}")]
    Events(#[from] platform::events::EventError),
    #[error("pricing: {0}")]
    Pricing(#[from] pricing::PricingError),
}

#[derive(Debug, Clone)]
pub struct Runner {
    pub pool: PgPool,
    pub usage: SubscriptionServiceClient<Channel>,
    pub limiter: Limiter,
}

/// A streamed batch, checked: lengths agree, indexes in range, quantities well-formed.
fn columns(c: sub::UsageColumns) -> Result<Columns, RunError> {
    let bad = |m: String| RunError::Record(m);
    if c.units.len() != c.scale.len() {
        return Err(bad(format!(
            "{} units but {} scales",
            c.units.len(),
            c.scale.len()
        )));
    }
    let mut quantity = c
        .units
        .iter()
        .zip(&c.scale)
        .map(|(&u, &s)| {
            rust_decimal::Decimal::try_new(u, s).map_err(|_| bad(format!("quantity {u}e-{s}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, d) in c.wide {
        let v = d.value;
        let q = quantity
            .get_mut(i as usize)
            .ok_or_else(|| bad(format!("wide quantity for record {i} of a shorter batch")))?;
        *q = v.parse().map_err(|_| bad(format!("quantity {v:?}")))?;
    }
    Columns::new(c.strings, c.tenant, c.user, c.metric, quantity).map_err(bad)
}

impl Runner {
    /// Runs queued runs as their ids arrive (and any left queued at start-up) until `stop`.
    pub async fn serve(self, mut ids: mpsc::UnboundedReceiver<RunId>, stop: CancellationToken) {
        // A run left `running` by a process that died is retried from scratch, once its
        // deadline has passed (by then no live process can still be running it).
        match self.pool.begin().await {
            Ok(mut tx) => match runs::requeue_abandoned(&mut tx).await {
                Ok(ids) => {
                    if tx.commit().await.is_ok() && !ids.is_empty() {
                        tracing::warn!(runs = ?ids, "requeued billing runs abandoned by a stopped process");
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not requeue abandoned runs"),
            },
            Err(e) => tracing::error!(error = %e, "could not requeue abandoned runs"),
        }
        let queued: Vec<RunId> =
            sqlx::query_scalar("SELECT id FROM billing_runs WHERE status = 'queued' ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        for id in queued {
            self.execute_logged(&id).await;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                id = ids.recv() => match id {
                    Some(id) => self.execute_logged(&id).await,
                    None => return,
                },
            }
        }
    }

    async fn execute_logged(&self, id: &RunId) {
        let span = tracing::info_span!("billing_run", run = %id);
        if let Err(e) = self.execute(id).instrument(span).await {
            tracing::error!(run = %id, error = %e, "billing run could not be recorded");
        }
    }

    /// Executes one run if it is still queued.
    pub async fn execute(&self, id: &RunId) -> Result<(), RunError> {
        let Some(run) = runs::claim(&mut *self.pool.acquire().await?, id).await? else {
            return Ok(());
        };
        // Time from the request to the claim: the outbox, JetStream and the consumer.
        if let Some(claimed) = run.started_at {
            let queued = (claimed - run.created_at).to_std().unwrap_or_default();
            metrics::histogram!("billing_run_phase_seconds", "phase" => "queue")
                .record(queued.as_secs_f64());
        }
        let started = Instant::now();
        let tracker = Arc::new(ThroughputTracker::new());
        let reporter = {
            let (pool, tracker, id) = (self.pool.clone(), tracker.clone(), run.id.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(500));
                loop {
                    every.tick().await;
                    let s = tracker.snapshot();
                    if let Ok(mut c) = pool.acquire().await {
                        let _ = runs::progress(&mut c, &id, s.total as i64, s.window_per_sec).await;
                    }
                }
            })
        };
        let deadline = Duration::from_secs(run.deadline_seconds.max(1) as u64);
        let outcome = with_deadline(deadline, self.pipeline(&run, tracker.clone())).await;
        reporter.abort();
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let records = tracker.total();
        let rate = records as f64 / secs;
        metrics::counter!("billing_records_processed_total").increment(records);
        metrics::histogram!("billing_run_seconds").record(secs);
        let (status, error) = match &outcome {
            Ok(Ok(())) => (RunStatus::Completed, String::new()),
            Ok(Err(e)) => (RunStatus::Failed, e.to_string()),
            Err(e) => {
                metrics::counter!("billing_run_deadline_exceeded_total").increment(1);
                (RunStatus::ExceededDeadline, e.to_string())
            }
        };
        tracing::info!(run = %run.id, %status, records, records_per_second = rate, "billing run finished");
        let mut finishing = Instant::now();
        let mut tx = self.pool.begin().await?;
        let row = runs::finish(&mut tx, &run.id, status, records as i64, rate, &error).await?;
        let event = if status == RunStatus::Completed {
            let totals = runs::totals(&mut tx, &run.id)
                .await?
                .into_iter()
                .map(|(tenant_id, records, quantity)| TenantRecords {
                    tenant_id,
                    records,
                    quantity: quantity.to_string(),
                })
                .collect();
            let amounts = charges::totals(&mut tx, &run.id)
                .await?
                .into_iter()
                .map(|(tenant_id, currency, amount_minor)| TenantAmount {
                    tenant_id,
                    currency,
                    amount_minor,
                })
                .collect();
            let payload = RunCompleted {
                run: run_payload(&row),
                totals,
                amounts,
            };
            run_event("billing.run.completed", &row, data(&payload))
        } else {
            let payload = RunFailed {
                run: run_payload(&row),
                error: error.to_string(),
            };
            run_event("billing.run.failed", &row, data(&payload))
        };
        enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        pipeline::phase("finish", &mut finishing);
        Ok(())
    }

    async fn pipeline(
        &self,
        run: &RunRow,
        tracker: Arc<ThroughputTracker>,
    ) -> Result<(), RunError> {
        let (tx, rx) = mpsc::channel(self.limiter.max_workers() * 2);
        let sink = Arc::new(SummarySink {
            pool: self.pool.clone(),
            run_id: run.id.clone(),
        });
        let req = as_operator(
            run,
            sub::StreamUsageRequest {
                tenant_ids: run.tenant_ids.iter().map(|t| t.to_string()).collect(),
                period: Some(period_pb(run)),
                batch_size: BATCH as u32,
                columnar: true,
                periods: vec![],
            },
        );
        let mut stream = self.usage.clone().stream_usage(req).await?.into_inner();
        let producer = async move {
            while let Some(batch) = stream.message().await? {
                let columns = columns(batch.columns.unwrap_or_default())?;
                if tx.send(columns).await.is_err() {
                    return Ok(());
                }
            }
            Ok::<(), RunError>(())
        };
        let consumer = async {
            pipeline::run(rx, &self.limiter, sink, tracker)
                .await
                .map_err(RunError::from)
        };
        // What to price with is fetched while the usage streams (one message per tenant).
        let (_, _, billables) = tokio::try_join!(producer, consumer, self.billables(run))?;
        let mut started = Instant::now();
        self.price(run, billables).await?;
        pipeline::phase("price", &mut started);
        Ok(())
    }

    /// The run's billable subscriptions: plan phases and seat history for the period.
    async fn billables(&self, run: &RunRow) -> Result<Vec<sub::BillableSubscription>, RunError> {
        let req = as_operator(
            run,
            sub::ListBillableSubscriptionsRequest {
                period: Some(period_pb(run)),
                tenant_ids: run.tenant_ids.iter().map(|t| t.to_string()).collect(),
                by_period: false,
            },
        );
        let mut stream = self
            .usage
            .clone()
            .list_billable_subscriptions(req)
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(b) = stream.message().await? {
            out.push(b);
        }
        Ok(out)
    }

    /// Prices every billable subscription of the run's tenants into charge lines, at the
    /// usage the run wrote.
    async fn price(
        &self,
        run: &RunRow,
        billables: Vec<sub::BillableSubscription>,
    ) -> Result<(), RunError> {
        let period = pricing::Period::new(run.period_start, run.period_end)?;
        let mut tx = self.pool.begin().await?;
        let billed = match &run.corrects_run_id {
            Some(original) => Some(charges::billed_so_far(&mut tx, original).await?),
            None => None,
        };
        let usage = charges::usage(&mut tx, &run.id).await?;
        let mut all = Vec::new();
        for b in billables {
            let (s, plan) = (
                b.subscription.unwrap_or_default(),
                b.plan.unwrap_or_default(),
            );
            // A subscription service that does not send phases: the end plan over the period.
            let phases = if b.phases.is_empty() {
                vec![sub::PlanPhase {
                    plan: Some(plan.clone()),
                    start: Some(timestamp(period.start)),
                    end: Some(timestamp(period.end)),
                }]
            } else {
                b.phases
            };
            let billable = Billable {
                currency: pricing::Currency::parse(&plan.currency)?,
                phases: phases
                    .into_iter()
                    .map(|p| phase(p, &period))
                    .collect::<Result<_, _>>()?,
                created_at: instant(s.created_at).unwrap_or(run.period_start),
                trial_end: s.trial_end.and_then(|t| instant(Some(t))),
                canceled_at: s.canceled_at.and_then(|t| instant(Some(t))),
                seats: b
                    .seats
                    .into_iter()
                    .filter_map(|g| {
                        Some(pricing::SeatSegment {
                            from: instant(g.from)?,
                            to: g.to.and_then(|t| instant(Some(t))),
                            seats: g.seats,
                        })
                    })
                    .collect(),
                tenant_id: s.tenant_id,
            };
            let used = usage.get(&billable.tenant_id).cloned().unwrap_or_default();
            let mut lines = crate::domain::charges::price(&billable, &period, &used)?;
            if let Some(billed) = &billed {
                lines = crate::domain::charges::adjustments(
                    lines,
                    billed,
                    &billable.tenant_id,
                    billable.currency,
                );
            }
            all.extend(lines);
        }
        charges::insert(&mut tx, &run.id, &all).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A plan phase as pricing sees it; its bounds default to the period's.
fn phase(
    p: sub::PlanPhase,
    period: &pricing::Period,
) -> Result<crate::domain::charges::Phase, pricing::PricingError> {
    let plan = p.plan.unwrap_or_default();
    Ok(crate::domain::charges::Phase {
        prices: plan
            .prices
            .iter()
            .map(pricing::wire::price_from_pb)
            .collect::<Result<_, _>>()?,
        plan_id: plan.id,
        plan_version: plan.version,
        start: instant(p.start).unwrap_or(period.start),
        end: instant(p.end).unwrap_or(period.end),
    })
}

fn instant(t: Option<prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t?;
    chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
}

fn period_pb(run: &RunRow) -> rpc::common::v1::Period {
    rpc::common::v1::Period {
        start: Some(timestamp(run.period_start)),
        end: Some(timestamp(run.period_end)),
    }
}

/// A call to the subscription service as the platform, bounded by the run's deadline.
fn as_operator<T>(run: &RunRow, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    Caller {
        tenant_id: TenantId::parse("platform").expect("a valid tenant id"),
        subject: "billing-service".into(),
        roles: vec!["platform_admin".into()],
        scopes: Vec::new(),
        request_id: Some(run.id.to_string()),
    }
    .apply(&mut req);
    req.set_timeout(Duration::from_secs(run.deadline_seconds.max(1) as u64));
    req
}

/// A run as its events carry it.
fn run_payload(r: &RunRow) -> BillingRun {
    BillingRun {
        run_id: r.id.clone(),
        period_start: r.period_start,
        period_end: r.period_end,
        tenant_ids: r.tenant_ids.clone(),
        status: r.status.to_string(),
        records_processed: r.records_processed,
    }
}

fn run_event(kind: &str, r: &RunRow, payload: serde_json::Value) -> CloudEvent {
    CloudEvent::new(SOURCE, kind, payload).with_subject(r.id.as_str())
}

/// `billing.run.requested` → the runner (the run record is durable; the event is the nudge).
#[derive(Debug, Clone)]
pub struct RunRequested {
    pub ids: mpsc::UnboundedSender<RunId>,
}

impl platform::events::EventHandler for RunRequested {
    async fn handle(
        &self,
        _tx: &mut sqlx::PgConnection,
        event: &CloudEvent,
    ) -> Result<(), platform::events::HandlerError> {
        let run: BillingRun = event_types::read(&event.data)
            .map_err(|e| platform::events::HandlerError::Permanent(e.to_string()))?;
        let _ = self.ids.send(run.run_id);
        Ok(())
    }
}

pub(crate) fn requested_event(r: &RunRow) -> CloudEvent {
    run_event("billing.run.requested", r, data(&run_payload(r)))
}
