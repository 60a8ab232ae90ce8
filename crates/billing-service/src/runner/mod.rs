//! Executes billing runs: claim the queued run; find the parts of subscription periods due in
//! its window and not yet billed (`periods`); stream the usage of those that ended from the
//! subscription service (`StreamUsage`) into the pipeline under the run's deadline, reporting
//! progress (`usage`); then, in one transaction, claim the parts, price them into charges and
//! mark the run `completed` with `billing.run.completed` (per-tenant totals) through the
//! outbox — or mark it `failed` / `exceeded_deadline` with its partial summaries deleted, so
//! they are never visible.

use std::time::{Duration, Instant};

use concurrency::Limiter;
use event_types::{BillingRun, RunCompleted, RunFailed, TenantAmount, TenantRecords, data};
use ids::RunId;
use platform::events::{CloudEvent, enqueue};
use platform::grpc::Channel;
use platform::grpc::{Caller, timestamp};
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::RunStatus;
use crate::pipeline::{self, PipelineError};
use crate::store::charges;
use crate::store::runs::{self, RunRow};

mod periods;
mod shards;
mod usage;

pub use shards::worker_name;

use periods::{Due, price};

const SOURCE: &str = "/services/billing";

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
    /// This attempt lost the run's lease (it stalled) and another took it over.
    #[error("the run was taken over by a later attempt")]
    Superseded,
}

impl RunError {
    fn superseded(&self) -> bool {
        matches!(
            self,
            RunError::Superseded | RunError::Pipeline(PipelineError::Superseded)
        )
    }

    /// The database or the subscription service was away (a restart, a failover): worth
    /// running again rather than failing the run.
    fn transient(&self) -> bool {
        let db = |e: &sqlx::Error| platform::grpc::db_status(e).code() == tonic::Code::Unavailable;
        match self {
            RunError::Db(e) | RunError::Pipeline(PipelineError::Db(e)) => db(e),
            RunError::Events(platform::events::EventError::Db(e)) => db(e),
            RunError::Stream(s) => s.code() == tonic::Code::Unavailable,
            _ => false,
        }
    }
}

/// Attempts of a run (or of a shard) that its transient failures may take; the last one
/// fails it.
const MAX_ATTEMPTS: i32 = 5;

/// How often an idle replica looks for queued shards (an indexed look at a few rows).
const SHARD_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct Runner {
    pub pool: PgPool,
    pub usage: SubscriptionServiceClient<Channel>,
    pub limiter: Limiter,
    /// How long a run's (or a shard's) heartbeat may be silent before its attempt counts as
    /// dead.
    pub lease: Duration,
    /// Into how many shards a run's tenants are cut (`BILLING_RUN_SHARDS`).
    pub shards: usize,
    /// This process, as `billing_run_shards.worker` names it.
    pub worker: String,
}

impl Runner {
    /// Runs queued runs as their ids arrive (and any left queued at start-up) until `stop`,
    /// and the shards of runs other replicas claimed; every third of a lease, requeues and
    /// runs the runs and shards whose process died or stalled.
    pub async fn serve(self, mut ids: mpsc::UnboundedReceiver<RunId>, stop: CancellationToken) {
        let queued: Vec<RunId> =
            sqlx::query_scalar("SELECT id FROM billing_runs WHERE status = 'queued' ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .unwrap_or_default();
        for id in queued {
            self.execute_logged(&id).await;
        }
        let mut sweep = tokio::time::interval(self.lease / 3);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Shards other replicas queued.
        let mut poll = tokio::time::interval(SHARD_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sweep.tick() => {
                    self.requeue_abandoned_shards().await;
                    for id in self.requeue_abandoned().await {
                        self.execute_logged(&id).await;
                    }
                }
                _ = poll.tick() => self.work().await,
                id = ids.recv() => match id {
                    Some(id) => self.execute_logged(&id).await,
                    None => return,
                },
            }
        }
    }

    async fn requeue_abandoned(&self) -> Vec<RunId> {
        let requeued = async {
            let mut tx = self.pool.begin().await?;
            let ids = runs::requeue_abandoned(&mut tx, self.lease).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ids)
        };
        match requeued.await {
            Ok(ids) => {
                if !ids.is_empty() {
                    metrics::counter!("billing_runs_requeued_total").increment(ids.len() as u64);
                    tracing::warn!(runs = ?ids, "requeued billing runs whose process died or stalled");
                }
                ids
            }
            Err(e) => {
                tracing::error!(error = %e, "could not requeue abandoned runs");
                Vec::new()
            }
        }
    }

    async fn execute_logged(&self, id: &RunId) {
        let span = tracing::info_span!("billing_run", run = %id);
        if let Err(e) = self.execute(id).instrument(span).await {
            tracing::error!(run = %id, error = %e, "billing run could not be recorded");
        }
    }

    /// Claims the run if it is still queued, cuts it into shards and works them (with any
    /// other replica that leases some): see [`shards`].
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
        match self.shard(&run).await {
            Ok(n) => tracing::info!(run = %run.id, shards = n, "billing run claimed and sharded"),
            Err(e) if e.superseded() => return Ok(()),
            Err(e) if e.transient() && run.attempt < MAX_ATTEMPTS => {
                // Left `running` with its heartbeat stopped: a sweep requeues it once its
                // lease lapses.
                metrics::counter!("billing_run_transient_failures_total").increment(1);
                tracing::warn!(run = %run.id, attempt = run.attempt, error = %e, "billing run could not be sharded; it runs again once its lease lapses");
                return Ok(());
            }
            Err(e) => {
                let done = Done {
                    records: 0,
                    rate: 0.0,
                };
                return match self
                    .fail(&run, RunStatus::Failed, &e.to_string(), done)
                    .await
                {
                    Err(e) if e.superseded() => Ok(()),
                    other => other,
                };
            }
        }
        self.work().await;
        Ok(())
    }

    /// Prices the run's parts and marks it `completed`, in one transaction: its claims, its
    /// charges, its status and its event commit together or not at all.
    async fn complete(&self, run: &RunRow, dues: Vec<Due>, done: Done) -> Result<(), RunError> {
        let mut started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let lines = price(&mut tx, run, dues).await?;
        charges::insert(&mut tx, &run.id, &lines).await?;
        pipeline::phase("price", &mut started);
        let row = runs::finish(
            &mut tx,
            &run.id,
            run.attempt,
            RunStatus::Completed,
            (done.records, done.rate),
            "",
        )
        .await?
        .ok_or(RunError::Superseded)?;
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
        enqueue(
            &mut tx,
            &run_event("billing.run.completed", &row, data(&payload)),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(run = %run.id, records = done.records, records_per_second = done.rate, "billing run completed");
        Ok(())
    }

    /// Marks the run `status` (failed or out of time), dropping whatever it wrote.
    async fn fail(
        &self,
        run: &RunRow,
        status: RunStatus,
        error: &str,
        done: Done,
    ) -> Result<(), RunError> {
        tracing::warn!(run = %run.id, %status, error, "billing run did not complete");
        let mut tx = self.pool.begin().await?;
        let row = runs::finish(
            &mut tx,
            &run.id,
            run.attempt,
            status,
            (done.records, done.rate),
            error,
        )
        .await?
        .ok_or(RunError::Superseded)?;
        let payload = RunFailed {
            run: run_payload(&row),
            error: error.to_string(),
        };
        enqueue(
            &mut tx,
            &run_event("billing.run.failed", &row, data(&payload)),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What a run did, for its record.
#[derive(Debug, Clone, Copy)]
struct Done {
    records: i64,
    rate: f64,
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
    Caller::service("billing-service", Some(run.id.to_string())).apply(&mut req);
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
