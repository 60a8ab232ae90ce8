//! The billing clock: every `BILLING_CLOCK_SECS` it starts a run over every tenant for the
//! window since its last one, so periods are billed when they begin and end without anyone
//! calling the API. The window's start is where the clock stopped last time (kept in the
//! database, locked while a tick runs, so replicas take turns and windows never overlap or
//! leave gaps); and clock runs and runs requested by hand claim the same per-period parts,
//! so neither can bill what the other did.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ids::RunId;
use platform::events::enqueue;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::runner::{RunError, requested_event};
use crate::store;
use crate::store::runs::{self, NewRun, RunRow};

/// Starts the run for `(billed through, now]` and moves the clock to `now`; `None` when the
/// clock is already there.
pub async fn tick(pool: &PgPool, now: DateTime<Utc>) -> Result<Option<RunRow>, RunError> {
    let mut tx = pool.begin().await?;
    let through = store::clock::locked(&mut tx).await?;
    if now <= through {
        return Ok(None);
    }
    let id = RunId::generate();
    let (row, fresh) = runs::insert_or_existing(
        &mut tx,
        &NewRun {
            id: &id,
            period: (through, now),
            tenant_ids: &[],
            deadline_seconds: concurrency::DEFAULT_RUN_DEADLINE.as_secs() as i32,
            corrects_run_id: None,
        },
    )
    .await?;
    if fresh {
        store::clock::mark_run(&mut tx, &row.id).await?;
        enqueue(&mut tx, &requested_event(&row)).await?;
    }
    store::clock::advance(&mut tx, now).await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// Ticks every `every` until `stop`.
pub async fn run(pool: PgPool, every: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => match tick(&pool, Utc::now()).await {
                Ok(Some(run)) => tracing::info!(run = %run.id, "billing clock started a run"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "billing clock tick failed; retrying next tick"),
            },
        }
    }
}
