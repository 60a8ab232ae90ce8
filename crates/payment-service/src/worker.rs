//! The service's own clock (no external cron): every `PAYMENT_CLOCK_SECS`, or when woken,
//! one [`tick`](Worker::tick) confirms the intents invoices created, asks the PSP again about
//! attempts whose answer was lost (same idempotency key), and runs the dunning retries that
//! are due. Work is claimed with `FOR UPDATE SKIP LOCKED` and leased (`retry_at`,
//! `next_retry_at`) in the claiming transaction, so replicas share it, and a restart neither
//! loses nor doubles it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform::CancellationToken;
use tokio::sync::Notify;

use crate::domain::intent::Status;
use crate::engine::{Engine, Outgoing, lease};
use crate::error::PaymentError;
use crate::events::end_dunning;
use crate::settle::no_method;
use crate::store::dunning::{self as dunning_store, DunningStatus};
use crate::store::{intents, methods};

/// Rows claimed per pass.
const BATCH: i64 = 64;

#[derive(Debug, Clone)]
pub struct Worker {
    pub engine: Engine,
    pub wake: Arc<Notify>,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticked {
    pub confirmed: usize,
    pub reasked: usize,
    pub dunning_retries: usize,
}

impl Worker {
    pub async fn serve(self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.tick(Utc::now()).await {
                tracing::warn!(error = %e, "payment clock tick failed; next tick retries");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.engine.settings.clock) => {}
            }
        }
    }

    /// One pass as if it were `now` (tests move the clock instead of waiting).
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Ticked, PaymentError> {
        let mut t = Ticked::default();
        loop {
            let n = self.confirm_batch().await?;
            t.confirmed += n;
            if n < BATCH as usize {
                break;
            }
        }
        t.reasked = self.reask(now).await?;
        t.dunning_retries = self.dunning(now).await?;
        Ok(t)
    }

    /// Sends claimed attempts concurrently (bounded by the PSP limiter) and settles each.
    async fn run(&self, out: Vec<Outgoing>) -> usize {
        let n = out.len();
        let e = &self.engine;
        futures::stream::iter(out)
            .for_each_concurrent(e.settings.psp_max_in_flight, |o| async move {
                let answer = e.send(&o).await;
                if let Err(err) = e.finish(&o, answer).await {
                    tracing::warn!(intent = %o.intent.id, error = %err, "settling an attempt failed");
                }
            })
            .await;
        n
    }

    /// Intents made for invoices, confirmed off-session with their method.
    async fn confirm_batch(&self) -> Result<usize, PaymentError> {
        let mut tx = self.engine.pool.begin().await?;
        let claimed = intents::claim_to_confirm(&mut tx, BATCH).await?;
        let mut out = Vec::with_capacity(claimed.len());
        for mut intent in claimed {
            // The tenant's default now (the card may have changed since the invoice came).
            let method = methods::default_of(&mut tx, &intent.tenant_id).await?;
            if method.is_none() {
                no_method(
                    &mut tx,
                    &self.engine.settings.dunning,
                    &mut intent,
                    Utc::now(),
                )
                .await?;
                continue;
            }
            if let Some(o) = self
                .engine
                .begin(&mut tx, &mut intent, method, None)
                .await?
            {
                out.push(o);
            }
        }
        tx.commit().await?;
        Ok(self.run(out).await)
    }

    /// Attempts whose answer was lost: the same request, the same key, so the PSP answers
    /// what it did the first time.
    async fn reask(&self, now: DateTime<Utc>) -> Result<usize, PaymentError> {
        let mut tx = self.engine.pool.begin().await?;
        let claimed = intents::claim_unanswered(&mut tx, now, BATCH).await?;
        let mut out = Vec::with_capacity(claimed.len());
        for mut attempt in claimed {
            // Backs off while the PSP stays silent: 1, 2, 4, … leases, at most 64.
            let backoff = lease(&self.engine.settings) * (1 << attempt.tries.clamp(0, 6));
            attempt.retry_at = Some(now + backoff);
            attempt.tries += 1;
            intents::save_attempt(&mut tx, &attempt).await?;
            let Some(intent) = intents::get(&mut tx, &attempt.intent_id, None, false).await? else {
                continue;
            };
            let Some(method) =
                methods::get(&mut tx, &intent.tenant_id, &attempt.payment_method_id).await?
            else {
                continue;
            };
            out.push(Outgoing {
                intent,
                attempt,
                token: method.psp_token,
            });
        }
        tx.commit().await?;
        Ok(self.run(out).await)
    }

    /// Dunning retries due at `now`, each with the tenant's current default method (a new
    /// card attached since the failure is the one tried).
    async fn dunning(&self, now: DateTime<Utc>) -> Result<usize, PaymentError> {
        let schedule = &self.engine.settings.dunning;
        let mut tx = self.engine.pool.begin().await?;
        let due = dunning_store::claim_due(&mut tx, now, BATCH).await?;
        let mut out = Vec::with_capacity(due.len());
        for mut d in due {
            let Some(mut intent) = intents::get(&mut tx, &d.intent_id, None, true).await? else {
                continue;
            };
            if intent.status.is_final() {
                end_dunning(&mut tx, &intent, DunningStatus::Recovered).await?;
                continue;
            }
            // A customer's attempt in flight, or 3-D Secure under way: not a retry now; look
            // again after a lease.
            if !matches!(
                intent.status,
                Status::RequiresPaymentMethod | Status::RequiresConfirmation
            ) {
                tracing::info!(intent = %intent.id, status = %intent.status, "dunning retry postponed");
                d.next_retry_at = Some(now + lease(&self.engine.settings));
                dunning_store::save(&mut tx, &d).await?;
                continue;
            }
            d.retries_done += 1;
            d.next_retry_at = None;
            dunning_store::save(&mut tx, &d).await?;
            metrics::counter!("payment_dunning_retries_total").increment(1);
            let method = methods::default_of(&mut tx, &intent.tenant_id).await?;
            if method.is_none() {
                no_method(&mut tx, schedule, &mut intent, now).await?;
                continue;
            }
            match self.engine.begin(&mut tx, &mut intent, method, None).await {
                Ok(Some(o)) => out.push(o),
                Ok(None) => {}
                // Not confirmable now (a customer's attempt in flight, or 3-D Secure under
                // way): not a retry; look again after a lease.
                Err(PaymentError::FailedPrecondition(why)) => {
                    tracing::info!(intent = %intent.id, %why, "dunning retry postponed");
                    d.retries_done -= 1;
                    d.next_retry_at = Some(now + lease(&self.engine.settings));
                    dunning_store::save(&mut tx, &d).await?;
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(self.run(out).await)
    }
}
