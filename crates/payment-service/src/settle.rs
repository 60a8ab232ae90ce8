//! Applying a PSP answer — a call's response or a callback, whichever comes first — to an
//! intent and its attempt, in the caller's transaction: the state change, the events it
//! publishes, and what it does to dunning. The one place money states change.

use chrono::{DateTime, Utc};
use platform::events::enqueue;
use sqlx::PgConnection;

use crate::domain::dunning::Schedule;
use crate::domain::intent::{Outcome, Status};
use crate::error::PaymentError;
use crate::events::{self, end_dunning};
use crate::psp::Answer;
use crate::store::dunning::{self as dunning_store, DunningStatus};
use crate::store::intents::{self, AttemptRow, IntentRow};

/// Applies `answer` to `intent`'s `attempt` and saves both. Old news (a repeat, an answer
/// overtaken by a later one, anything after a final state) changes nothing but what it
/// teaches about references.
pub async fn settle(
    tx: &mut PgConnection,
    schedule: &Schedule,
    intent: &mut IntentRow,
    attempt: &mut AttemptRow,
    answer: &Answer,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    if attempt.psp_reference.is_none() {
        attempt.psp_reference = answer.psp_reference.clone();
    }
    // The PSP's own word on which of its intents this is.
    if let Some(pi) = &answer.psp_intent_id {
        intent.psp_intent_id = Some(pi.clone());
    }
    let previous = attempt.outcome;
    let Some(to) = intent
        .status
        .answered(previous, answer.outcome, intent.capture_method)
    else {
        if intent.status == Status::Canceled
            && matches!(answer.outcome, Outcome::Succeeded | Outcome::Authorized)
        {
            // Money moved for an intent we canceled: a person has to look.
            metrics::counter!("payment_conflicts_total").increment(1);
            tracing::error!(intent = %intent.id, "the PSP charged a canceled intent");
        }
        intents::save_attempt(tx, attempt).await?;
        *intent = intents::save(tx, intent).await?;
        return Ok(());
    };
    attempt.outcome = answer.outcome;
    attempt.failure_code = answer.failure_code.clone();
    attempt.failure_message = answer.failure_message.clone();
    // Answered: nothing left to re-ask (a callback or a capture moves it on).
    attempt.retry_at = None;
    if answer.outcome.is_final() {
        attempt.completed_at = Some(now);
    }
    intent.status = to;
    intent.next_action_url = answer.next_action_url.clone();
    let mut out = Vec::new();
    match to {
        Status::Succeeded => {
            intent.amount_received = if previous == Outcome::Authorized {
                intent.amount_capturable
            } else {
                intent.amount_minor
            };
            intent.amount_capturable = 0;
            intent.last_failure_code = None;
            intent.last_failure_message = None;
        }
        Status::RequiresCapture => intent.amount_capturable = intent.amount_minor,
        Status::RequiresPaymentMethod => {
            intent.last_failure_code = Some(
                answer
                    .failure_code
                    .clone()
                    .unwrap_or_else(|| "declined".into()),
            );
            intent.last_failure_message = Some(
                answer
                    .failure_message
                    .clone()
                    .unwrap_or_else(|| "the payment was declined".into()),
            );
        }
        _ => {}
    }
    intents::save_attempt(tx, attempt).await?;
    *intent = intents::save(tx, intent).await?;
    match to {
        Status::Succeeded => {
            end_dunning(tx, intent, DunningStatus::Recovered).await?;
            out.push(events::succeeded(intent));
            metrics::counter!("payment_intents_succeeded_total").increment(1);
        }
        Status::RequiresPaymentMethod => {
            out.extend(failure(tx, schedule, intent, attempt.number as u32, now).await?);
            metrics::counter!("payment_attempts_declined_total").increment(1);
        }
        _ => {}
    }
    for e in &out {
        enqueue(tx, e).await?;
    }
    Ok(())
}

/// What a failed payment publishes, and its effect on dunning: an automatic (off-session)
/// payment's first failure starts dunning; a failed retry schedules the next, or exhausts it.
pub async fn failure(
    tx: &mut PgConnection,
    schedule: &Schedule,
    intent: &IntentRow,
    attempt: u32,
    now: DateTime<Utc>,
) -> Result<Vec<platform::events::CloudEvent>, PaymentError> {
    if !intent.off_session {
        return Ok(vec![events::failed(intent, attempt, None)]);
    }
    let code = intent.last_failure_code.clone().unwrap_or_default();
    let Some(mut d) = dunning_store::get(tx, &intent.id, true).await? else {
        let next = schedule.due(now, 0);
        dunning_store::start(
            tx,
            &intent.id,
            &intent.tenant_id,
            intent.invoice_id.as_ref(),
            now,
            next,
        )
        .await?;
        return Ok(vec![events::failed(intent, attempt, next)]);
    };
    if d.status != DunningStatus::Active {
        return Ok(vec![events::failed(intent, attempt, None)]);
    }
    if d.next_retry_at.is_some() {
        // Between retries a customer's own try failed: the schedule stands.
        return Ok(vec![events::failed(intent, attempt, d.next_retry_at)]);
    }
    d.outcomes.push(code);
    let next = schedule.due(d.started_at, d.retries_done as usize);
    let mut out = vec![events::failed(intent, attempt, next)];
    match next {
        Some(at) => d.next_retry_at = Some(at),
        None => {
            d.status = DunningStatus::Exhausted;
            d.next_retry_at = None;
            d.ended_at = Some(now);
            out.push(events::exhausted(intent, d.retries_done as u32));
            metrics::counter!("payment_dunning_exhausted_total").increment(1);
        }
    }
    dunning_store::save(tx, &d).await?;
    Ok(out)
}

/// An attempt that cannot be made because the tenant has no default method: a failure like
/// a decline (dunning starts, or the retry is spent), published the same way.
pub async fn no_method(
    tx: &mut PgConnection,
    schedule: &Schedule,
    intent: &mut IntentRow,
    now: DateTime<Utc>,
) -> Result<(), PaymentError> {
    intent.status = Status::RequiresPaymentMethod;
    intent.last_failure_code = Some("no_payment_method".into());
    intent.last_failure_message = Some("the tenant has no default payment method".into());
    *intent = intents::save(tx, intent).await?;
    for e in failure(tx, schedule, intent, 0, now).await? {
        enqueue(tx, &e).await?;
    }
    Ok(())
}
