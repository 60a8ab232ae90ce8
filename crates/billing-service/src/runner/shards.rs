//! A run shared by billing replicas: the process that claims a run cuts its tenants into
//! `BILLING_RUN_SHARDS` ranges (`store::shards`); every replica leases queued shards one at a
//! time and folds the usage of its range's arrears periods into the run's summaries, under
//! the run's deadline (measured from the claim) and fenced by both the run's attempt and the
//! shard's. The worker that finishes the last shard prices the run and completes it in one
//! transaction, as a single process would; a shard whose worker dies is requeued by a sweep
//! and finished by another. One replica alone works every shard itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concurrency::{ThroughputTracker, with_deadline};

use super::{Done, MAX_ATTEMPTS, RunError, Runner};
use crate::domain::{Part, RunStatus};
use crate::pipeline;
use crate::store::runs::{self, RunRow};
use crate::store::shards::{self, ShardRow};

impl Runner {
    /// Cuts the freshly claimed `run` into shards over the tenants it bills.
    pub(super) async fn shard(&self, run: &RunRow) -> Result<usize, RunError> {
        // The run's heartbeat while its periods are listed (many tenants take a while).
        let (id, attempt) = (run.id.clone(), run.attempt);
        let heartbeat = self.beat(move |mut c| {
            let id = id.clone();
            async move {
                let _ = runs::progress(&mut c, &id, attempt, 0, 0.0).await;
            }
        });
        let dues = self.due(run).await;
        heartbeat.abort();
        let dues = dues?;
        let mut tenants: Vec<&str> = dues
            .iter()
            .map(|d| d.period.billable.tenant_id.as_str())
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        let ranges = shards::cut(&tenants, self.shards);
        let mut tx = self.pool.begin().await?;
        if !runs::holds(&mut tx, &run.id, run.attempt).await? {
            return Err(RunError::Superseded);
        }
        shards::create(&mut tx, &run.id, &ranges).await?;
        tx.commit().await?;
        Ok(ranges.len())
    }

    /// Leases and works queued shards (of any run) until none is left.
    pub(super) async fn work(&self) {
        loop {
            let claimed = async {
                let mut conn = self.pool.acquire().await?;
                shards::claim_next(&mut conn, &self.worker).await
            };
            match claimed.await {
                Ok(Some(shard)) => {
                    let span = tracing::info_span!("billing_shard", run = %shard.run_id, shard = shard.shard);
                    let run_id = shard.run_id.clone();
                    if let Err(e) =
                        tracing::Instrument::instrument(self.execute_shard(shard), span).await
                    {
                        tracing::error!(run = %run_id, error = %e, "billing run shard could not be recorded");
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "could not lease a billing run shard");
                    return;
                }
            }
        }
    }

    /// Requeues the shards whose worker died or stalled.
    pub(super) async fn requeue_abandoned_shards(&self) {
        let requeued = async {
            let mut tx = self.pool.begin().await?;
            let shards = shards::requeue_abandoned(&mut tx, self.lease).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(shards)
        };
        match requeued.await {
            Ok(s) if !s.is_empty() => {
                metrics::counter!("billing_run_shards_requeued_total").increment(s.len() as u64);
                tracing::warn!(shards = ?s, "requeued billing run shards whose worker died or stalled");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not requeue abandoned shards"),
        }
    }

    async fn execute_shard(&self, shard: ShardRow) -> Result<(), RunError> {
        let Some(run) = runs::get(&mut *self.pool.acquire().await?, &shard.run_id).await? else {
            return Ok(());
        };
        if run.status != RunStatus::Running {
            return Ok(());
        }
        let tracker = Arc::new(ThroughputTracker::new());
        let reporter = {
            let (tracker, shard) = (tracker.clone(), shard.clone());
            self.beat(move |mut c| {
                let (records, shard) = (tracker.total() as i64, shard.clone());
                async move {
                    let _ = shards::progress(&mut c, &shard, records).await;
                }
            })
        };
        let left = remaining(&run);
        let outcome = with_deadline(left, self.fold_shard(&run, &shard, tracker.clone())).await;
        reporter.abort();
        let records = tracker.total();
        metrics::counter!("billing_records_processed_total").increment(records);
        let result = match outcome {
            Ok(Ok(arrears)) => {
                self.finish_shard(&run, &shard, records as i64, &arrears)
                    .await
            }
            Ok(Err(e)) => Err(e),
            Err(e) => {
                metrics::counter!("billing_run_deadline_exceeded_total").increment(1);
                let done = self.done(&run).await?;
                self.fail(&run, RunStatus::ExceededDeadline, &e.to_string(), done)
                    .await
            }
        };
        match result {
            Err(e) if e.transient() && shard.attempt < MAX_ATTEMPTS => {
                // Left `running` with its heartbeat stopped: once the lease lapses a sweep
                // requeues the shard (its partial rows deleted) — the lease is the back-off.
                metrics::counter!("billing_run_transient_failures_total").increment(1);
                tracing::warn!(run = %run.id, shard = shard.shard, attempt = shard.attempt, error = %e, "billing run shard hit a transient failure; it runs again once its lease lapses");
                Ok(())
            }
            Err(e) if e.superseded() => {
                tracing::warn!(run = %run.id, shard = shard.shard, "billing run shard taken over by a later attempt");
                Ok(())
            }
            Err(e) => {
                let done = self.done(&run).await?;
                match self
                    .fail(&run, RunStatus::Failed, &e.to_string(), done)
                    .await
                {
                    Err(e) if e.superseded() => Ok(()),
                    other => other,
                }
            }
            Ok(()) => Ok(()),
        }
    }

    /// Folds the usage of the shard's arrears periods; which periods those were.
    async fn fold_shard(
        &self,
        run: &RunRow,
        shard: &ShardRow,
        tracker: Arc<ThroughputTracker>,
    ) -> Result<Vec<String>, RunError> {
        let mut dues = self.due(run).await?;
        dues.retain(|d| shard.covers(d.period.billable.tenant_id.as_str()));
        self.aggregate(run, Some(shard), &dues, tracker).await?;
        Ok(dues
            .iter()
            .filter(|d| d.parts.contains(&Part::Arrears))
            .map(|d| {
                shards::arrears_key(d.period.billable.tenant_id.as_str(), d.period.period.start)
            })
            .collect())
    }

    /// Marks the shard done; the last one's worker completes the run.
    async fn finish_shard(
        &self,
        run: &RunRow,
        shard: &ShardRow,
        records: i64,
        arrears: &[String],
    ) -> Result<(), RunError> {
        let mut tx = self.pool.begin().await?;
        let left = shards::finish(&mut tx, shard, run.attempt, records, arrears)
            .await?
            .ok_or(RunError::Superseded)?;
        tx.commit().await?;
        if left > 0 {
            return Ok(());
        }
        let mut finishing = Instant::now();
        let (folded, done) = {
            let mut conn = self.pool.acquire().await?;
            let (records, folded) = shards::folded(&mut conn, &run.id).await?;
            (
                folded.into_iter().collect::<HashSet<String>>(),
                done_of(run, records),
            )
        };
        // What is due now, but usage priced only for the periods a shard read: one that ended
        // since waits for a later run rather than be billed without its usage.
        let mut dues = self.due(run).await?;
        for d in &mut dues {
            let key =
                shards::arrears_key(d.period.billable.tenant_id.as_str(), d.period.period.start);
            if d.parts.contains(&Part::Arrears) && !folded.contains(&key) {
                d.parts.retain(|p| *p != Part::Arrears);
                d.settles_advance = false;
            }
        }
        dues.retain(|d| !d.parts.is_empty());
        metrics::histogram!("billing_run_seconds").record(elapsed(run).as_secs_f64());
        let result = self.complete(run, dues, done).await;
        pipeline::phase("finish", &mut finishing);
        result
    }

    /// Runs `beat` on a pooled connection every quarter lease (at most every 0.5 s) until the
    /// returned task is aborted: a lease's heartbeat, with progress.
    fn beat<F, Fut>(&self, beat: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(sqlx::pool::PoolConnection<sqlx::Postgres>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let pool = self.pool.clone();
        let every = (self.lease / 4).min(Duration::from_millis(500));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(every);
            loop {
                every.tick().await;
                if let Ok(c) = pool.acquire().await {
                    beat(c).await;
                }
            }
        })
    }

    /// What the run's shards did so far, for its record.
    async fn done(&self, run: &RunRow) -> Result<Done, RunError> {
        let (records, _) = shards::folded(&mut *self.pool.acquire().await?, &run.id).await?;
        Ok(done_of(run, records))
    }
}

/// Time since the run was claimed.
fn elapsed(run: &RunRow) -> Duration {
    run.started_at
        .and_then(|s| (chrono::Utc::now() - s).to_std().ok())
        .unwrap_or_default()
}

/// What is left of the run's deadline.
fn remaining(run: &RunRow) -> Duration {
    Duration::from_secs(run.deadline_seconds.max(1) as u64).saturating_sub(elapsed(run))
}

fn done_of(run: &RunRow, records: i64) -> Done {
    Done {
        records,
        rate: records as f64 / elapsed(run).as_secs_f64().max(1e-9),
    }
}

/// A runner's name in `billing_run_shards.worker`: host, pid and which runner of the process
/// (tests run several in one).
pub fn worker_name() -> String {
    static RUNNERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "billing".into());
    format!("{host}:{}/{n}", std::process::id())
}
