//! The run pipeline: records in batches → a bounded channel → `Limiter::spawn` workers that
//! fold a batch and merge it into the run's totals → once the input ends, the totals are
//! written tenant by tenant, each inside `Limiter::run` (the database budget) and in
//! canonical lock order → progress in a `ThroughputTracker`.
//!
//! Memory is bounded: the channel holds at most its capacity in batches, each worker one
//! (`Limiter::spawn` waits for a free worker, which makes the reader wait in turn), and the
//! totals grow with distinct (tenant, user, metric) keys, not with records. Writing totals
//! once instead of per batch makes the database work proportional to keys too.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use concurrency::{Limiter, ThroughputTracker};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::domain::aggregate::{Batch, KeyTotals, Names, TenantDelta, Total, Usage, merge, named};
use crate::store::summaries::{self, LockOrder, Target};
use crate::store::{runs, shards};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("a worker panicked")]
    Worker,
    #[error("usage of tenant {0}, which the run did not ask for")]
    UnexpectedTenant(String),
    /// The sink's attempt no longer holds the run (its lease lapsed; a later attempt has it).
    #[error("the run was taken over by a later attempt")]
    Superseded,
}

/// Where the run's totals go: each call gets whole tenants, ascending, to write as one unit
/// (one transaction, for the database).
pub trait Sink: Send + Sync + 'static {
    fn write(
        &self,
        deltas: Vec<TenantDelta>,
    ) -> impl Future<Output = Result<(), PipelineError>> + Send;
}

/// Runs every batch `rx` yields through the workers, then writes the totals to `sink`;
/// returns the records processed. The caller bounds it in time with
/// `concurrency::with_deadline`.
pub async fn run<B: Batch, S: Sink>(
    mut rx: mpsc::Receiver<B>,
    limiter: &Limiter,
    sink: Arc<S>,
    progress: Arc<ThroughputTracker>,
) -> Result<u64, PipelineError> {
    let mut started = std::time::Instant::now();
    let names: Arc<Mutex<Names>> = Arc::default();
    // Running totals, one per worker at a time: a worker takes one, folds its batch straight
    // into it and puts it back, so records are hashed once and nothing waits on a shared
    // map; they merge once, at the end.
    let partials: Arc<Mutex<Vec<KeyTotals>>> = Arc::default();
    let mut workers = Workers(Vec::new());
    while let Some(batch) = rx.recv().await {
        let (names, partials, progress) = (names.clone(), partials.clone(), progress.clone());
        let n = batch.records() as u64;
        let worker = limiter
            .spawn(async move {
                let take = || partials.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let mut totals = take().unwrap_or_default();
                batch.fold_into(&names, &mut totals);
                drop(batch);
                partials
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(totals);
                progress.record(n);
                Ok::<(), PipelineError>(())
            })
            .await;
        workers.push(worker).await?;
    }
    workers.join().await?;
    let mut totals = KeyTotals::default();
    for part in std::mem::take(&mut *partials.lock().unwrap_or_else(|p| p.into_inner())) {
        merge(&mut totals, part);
    }
    phase("read_fold", &mut started);
    // The write phase, under the DB budget: tenants ascending, whole tenants per sink call,
    // as many as make about WRITE_ROWS rows (one transaction for many small tenants; each
    // call's keys are still in canonical order, tenant by tenant).
    let names = std::mem::take(&mut *names.lock().unwrap_or_else(|p| p.into_inner()));
    let mut chunks = vec![Vec::new()];
    let mut rows = 0;
    for delta in named(totals, &names) {
        if rows >= WRITE_ROWS {
            chunks.push(Vec::new());
            rows = 0;
        }
        rows += delta.users.len() + 1;
        chunks
            .last_mut()
            .expect("chunks starts non-empty")
            .push(delta);
    }
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let (sink, db) = (sink.clone(), limiter.clone());
        let writer = limiter
            .spawn(async move { db.run(sink.write(chunk)).await })
            .await;
        workers.push(writer).await?;
    }
    workers.join().await?;
    phase("write", &mut started);
    Ok(progress.total())
}

/// About how many summary rows one sink call (one transaction) writes.
const WRITE_ROWS: usize = 2048;

/// Records how long a phase of a run took (`billing_run_phase_seconds{phase}`) and restarts
/// the clock for the next one.
pub fn phase(name: &'static str, started: &mut std::time::Instant) {
    metrics::histogram!("billing_run_phase_seconds", "phase" => name)
        .record(started.elapsed().as_secs_f64());
    *started = std::time::Instant::now();
}

/// The run's worker tasks. Dropping the run (deadline, failure) aborts the ones still going:
/// their open transactions roll back and their permits return.
struct Workers(Vec<tokio::task::JoinHandle<Result<(), PipelineError>>>);

impl Workers {
    /// Adds a worker; reaps one that already finished, failing fast on its error.
    async fn push(
        &mut self,
        w: tokio::task::JoinHandle<Result<(), PipelineError>>,
    ) -> Result<(), PipelineError> {
        self.0.push(w);
        if let Some(done) = self.0.iter().position(|w| w.is_finished()) {
            let w = self.0.swap_remove(done);
            w.await.map_err(|_| PipelineError::Worker)??;
        }
        Ok(())
    }

    /// Waits for every worker.
    async fn join(&mut self) -> Result<(), PipelineError> {
        while let Some(w) = self.0.pop() {
            w.await.map_err(|_| PipelineError::Worker)??;
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &self.0 {
            w.abort();
        }
    }
}

/// Totals kept in memory: the synthetic mode's sink (no database).
#[derive(Debug, Default)]
pub struct MemorySink {
    totals: Mutex<HashMap<(String, String, String), Total>>,
}

impl MemorySink {
    pub fn totals(&self) -> HashMap<(String, String, String), Total> {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Sink for MemorySink {
    async fn write(&self, deltas: Vec<TenantDelta>) -> Result<(), PipelineError> {
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for d in deltas {
            for ((user, metric), t) in d.users {
                totals
                    .entry((d.tenant_id.clone(), user, metric))
                    .or_default()
                    .add(t);
            }
        }
        Ok(())
    }
}

/// Writes each folded batch in one transaction, tenants in order, each in canonical lock
/// order.
#[derive(Debug, Clone)]
pub struct SummarySink {
    pub pool: PgPool,
    pub run_id: ids::RunId,
    /// The attempt writing; its writes are refused once a later attempt holds the run.
    pub attempt: i32,
    /// The shard writing, and its attempt: its writes are refused once a later attempt of
    /// the shard holds it. `None`: the run is not sharded (the whole run's attempt fences).
    pub shard: Option<(i32, i32)>,
    /// The subscription period each tenant's records were counted in (a pipeline pass reads
    /// at most one period per tenant).
    pub periods: Arc<HashMap<String, DateTime<Utc>>>,
}

impl Sink for SummarySink {
    async fn write(&self, deltas: Vec<TenantDelta>) -> Result<(), PipelineError> {
        // A process frozen mid-write would hold its run's row lock (and keep the run from
        // being requeued) for ever: the server ends such a transaction after 60 s idle.
        // No wait for the WAL flush here: the run's final transaction (status `completed`)
        // commits synchronously, and flushing its WAL flushes these earlier commits too. A
        // crash before it loses only rows of a run that never completed, which is re-run from
        // scratch. (One round trip: the setting rides with BEGIN.)
        let mut tx = self
            .pool
            .begin_with(
                "BEGIN; SET LOCAL synchronous_commit = off; \
                 SET LOCAL idle_in_transaction_session_timeout = '60s'",
            )
            .await?;
        let held = match self.shard {
            None => runs::holds(&mut tx, &self.run_id, self.attempt).await?,
            Some(shard) => shards::holds(&mut tx, (&self.run_id, self.attempt), shard).await?,
        };
        if !held {
            return Err(PipelineError::Superseded);
        }
        for d in &deltas {
            let period_start = *self
                .periods
                .get(&d.tenant_id)
                .ok_or_else(|| PipelineError::UnexpectedTenant(d.tenant_id.clone()))?;
            let to = Target {
                run_id: &self.run_id,
                period_start,
            };
            summaries::apply(&mut tx, to, d, LockOrder::Canonical).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `n` deterministic synthetic records over `tenants` tenants with 200 users each and four
/// metrics (xorshift64*, so every run sees the same records).
pub fn synthetic(n: u64, tenants: u32) -> impl Iterator<Item = Usage> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n).map(move |_| {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let tenant = (r % u64::from(tenants.max(1))) as u32;
        Usage {
            tenant_id: format!("ten_{tenant:05}"),
            user_id: format!("usr_{:03}", (r >> 8) % 200),
            metric: ["api_calls", "storage_gb", "seats", "emails"][((r >> 20) % 4) as usize]
                .to_string(),
            quantity: rust_decimal::Decimal::from(1 + (r >> 32) % 100),
        }
    })
}
