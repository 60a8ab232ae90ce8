//! Group commit of usage batches: concurrent `IngestUsage` calls hand their batches to a
//! writer, which stores whatever is queued when it gets to it as one statement in one
//! transaction: fewer commits and fewer passes over the same rollup rows. With one caller it
//! costs nothing (its batch goes alone, at once).
//!
//! `USAGE_WRITERS` writers take batches in turn: while one group's rollup upsert waits on the
//! rows another group holds, its insert of raw records has already run beside it (writers by
//! tenant would serialize a busy tenant on one core). Each batch stays all-or-nothing: a group
//! commits whole batches or none. A group (even of one batch) is first inserted as all new —
//! the common case, and a plain insert costs less than one that skips what it has seen. A
//! re-sent record makes the primary key refuse it, a failure fails it; either way it is rolled
//! back and each batch is stored alone, skipping what was seen, so each learns its own count
//! and one bad batch fails only its sender. The writer is a task of its own: a caller that
//! hangs up does not cancel the write it queued (its re-send finds the records there, as
//! duplicates).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use ids::TenantId;

use super::usage::{self, Placed, Seen};
use crate::error::SubError;

/// Most records one statement takes (several full batches).
const MAX_GROUP: usize = 20_000;
/// Batches queued per writer before callers wait to queue.
const QUEUE: usize = 64;

/// What one batch stored: how many of its records were new, and the tenants that got them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub accepted: u64,
    pub tenants: Vec<TenantId>,
}

struct Job {
    batch: Vec<Placed>,
    reply: oneshot::Sender<Result<Stored, SubError>>,
}

/// The writers; cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    writers: Vec<mpsc::Sender<Job>>,
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} records)", self.batch.len())
    }
}

impl GroupCommit {
    /// Starts `writers` writer tasks (at least one) on the current runtime.
    pub fn start(pool: PgPool, writers: usize) -> GroupCommit {
        let writers = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(write_loop(pool.clone(), rx));
                tx
            })
            .collect();
        GroupCommit {
            writers,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Stores `batch` (no two records with the same tenant and id), committed, possibly with
    /// other callers' batches: how many records were new, and the tenants that got them.
    pub async fn store(&self, batch: Vec<Placed>) -> Result<Stored, SubError> {
        if batch.is_empty() {
            return Ok(Stored::default());
        }
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % self.writers.len();
        let (reply, answer) = oneshot::channel();
        self.writers[shard]
            .send(Job { batch, reply })
            .await
            .map_err(|_| SubError::Unavailable("usage writer stopped"))?;
        answer
            .await
            .map_err(|_| SubError::Unavailable("usage writer stopped"))?
    }
}

async fn write_loop(pool: PgPool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut records = jobs[0].batch.len();
        while records < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => {
                    records += job.batch.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("usage_ingest_group_batches").record(jobs.len() as f64);
        write_group(&pool, jobs).await;
    }
}

/// One statement for all of `jobs` when every record is new; else each alone.
async fn write_group(pool: &PgPool, jobs: Vec<Job>) {
    // A record sent twice within the group counts for the first batch. One batch has no
    // repeats (the service drops them before it queues).
    let mine: Vec<Vec<&Placed>> = if jobs.len() == 1 {
        vec![jobs[0].batch.iter().collect()]
    } else {
        let mut seen = HashSet::new();
        jobs.iter()
            .map(|job| {
                job.batch
                    .iter()
                    .filter(|p| seen.insert((p.record.tenant_id.as_str(), p.record.id.as_str())))
                    .collect()
            })
            .collect()
    };
    let all: Vec<&Placed> = mine.iter().flatten().copied().collect();
    match write_if_all_new(pool, &all).await {
        Ok(true) => {
            let stored: Vec<Stored> = mine
                .iter()
                .map(|mine| Stored {
                    accepted: mine.len() as u64,
                    tenants: mine
                        .iter()
                        .map(|p| &p.record.tenant_id)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .cloned()
                        .collect(),
                })
                .collect();
            if jobs.len() > 1 {
                metrics::counter!("usage_ingest_grouped_batches_total")
                    .increment(jobs.len() as u64);
            }
            for (job, stored) in jobs.into_iter().zip(stored) {
                // A caller gone meanwhile has nothing to be told.
                let _ = job.reply.send(Ok(stored));
            }
            return;
        }
        Ok(false) => {}
        Err(e) if jobs.len() == 1 => {
            // Alone it would fail the same way again.
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, batches = jobs.len(), "a group of usage batches failed; each goes alone")
        }
    }
    for job in jobs {
        let result = write(pool, &job.batch).await;
        let _ = job.reply.send(result);
    }
}

/// Stores `records` in one transaction if every one of them is new; false (nothing stored)
/// when one was stored before. The common case, so it inserts without `ON CONFLICT` and lets
/// the primary key refuse the rare group with a re-sent record.
async fn write_if_all_new(pool: &PgPool, records: &[&Placed]) -> Result<bool, SubError> {
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    match usage::ingest(&mut tx, records, Seen::Fail).await {
        Ok(_) => {}
        Err(SubError::Db(ref e)) if super::is_unique_violation(e) => {
            tx.rollback().await?;
            metrics::counter!("usage_ingest_regrouped_total").increment(1);
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    tx.commit().await?;
    metrics::histogram!("usage_ingest_db_seconds").record(started.elapsed().as_secs_f64());
    Ok(true)
}

/// Stores one batch in a transaction of its own.
async fn write(pool: &PgPool, batch: &[Placed]) -> Result<Stored, SubError> {
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    let (accepted, tenants) = usage::ingest(&mut tx, batch, Seen::Skip).await?;
    tx.commit().await?;
    metrics::histogram!("usage_ingest_db_seconds").record(started.elapsed().as_secs_f64());
    Ok(Stored { accepted, tenants })
}
