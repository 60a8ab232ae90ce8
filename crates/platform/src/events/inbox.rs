//! Durable JetStream pull consumers whose effects are de-duplicated by an `inbox` table.
//!
//! For each message: begin a transaction, insert `(consumer, event id)` into `inbox`; if the row
//! is new, run the handler in that same transaction and commit; then ack. A redelivery (lost
//! ack, crash before ack, re-publish after the duplicate window) finds the row and only acks.
//! A failing handler is retried with growing delays; after `max_deliver` attempts (or at once
//! for an unparseable message) the event goes to `dlq.<consumer>` and is terminated.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{AckKind, consumer::pull};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{CloudEvent, EventBus, EventError};

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database hiccup, dependency down).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (bad payload): dead-letter at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        HandlerError::Transient(e.to_string())
    }
}

/// Applies one event inside the consumer's transaction.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: &CloudEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A durable consumer's identity and retry policy.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, unique per service and purpose, e.g. `subscription-seats`.
    pub name: String,
    /// Base stream name from [`super::STREAMS`], e.g. `USER`.
    pub stream: String,
    /// Event-type filter, e.g. `user.>`.
    pub filter: String,
    /// Deliveries before dead-lettering.
    pub max_deliver: i64,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Delay before the n-th retry (the last entry repeats).
    pub backoff: Vec<Duration>,
}

impl ConsumerSpec {
    pub fn new(name: &str, stream: &str, filter: &str) -> Self {
        ConsumerSpec {
            name: name.into(),
            stream: stream.into(),
            filter: filter.into(),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
        }
    }

    fn delay(&self, delivered: i64) -> Duration {
        let i = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

enum Outcome {
    Applied,
    Duplicate,
}

/// Runs `handler` over `spec`'s consumer until `shutdown`; per-message failures are retried
/// or dead-lettered as described above. A consumer that cannot be set up yet (NATS away, a
/// cluster still electing, a request lost while many services start at once) is tried again
/// with backoff, and one whose message stream ends is opened again: a service never stays
/// up with a consumer that silently stopped.
pub async fn run_consumer<H: EventHandler>(
    bus: EventBus,
    pool: PgPool,
    spec: ConsumerSpec,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), EventError> {
    const FIRST_RETRY: Duration = Duration::from_millis(200);
    let mut retry = FIRST_RETRY;
    while !shutdown.is_cancelled() {
        let mut messages = match open(&bus, &spec).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(consumer = %spec.name, error = %e, retry_in = ?retry, "consumer not set up; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        retry = FIRST_RETRY;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    tracing::warn!(consumer = %spec.name, error = %e, "consumer stream error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                None => {
                    tracing::warn!(consumer = %spec.name, "consumer stream ended; opening it again");
                    break;
                }
            };
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
            let event = match serde_json::from_slice::<CloudEvent>(&msg.payload) {
                Ok(ev) => ev,
                Err(e) => {
                    let reason = format!("unparseable: {e}");
                    retire(&bus, &spec, &msg, &reason, delivered).await;
                    continue;
                }
            };
            let span = tracing::info_span!(
                "consume",
                consumer = %spec.name,
                event_id = %event.id,
                event_type = %event.event_type,
                delivered
            );
            settle(&bus, &pool, &spec, &handler, &msg, &event, delivered)
                .instrument(span)
                .await;
        }
    }
    Ok(())
}

/// The durable pull consumer of `spec` (created if missing) and its message stream.
async fn open(
    bus: &EventBus,
    spec: &ConsumerSpec,
) -> Result<async_nats::jetstream::consumer::pull::Stream, EventError> {
    let js_err = |e: &dyn std::fmt::Display| EventError::JetStream(e.to_string());
    let stream = bus
        .jetstream()
        .get_stream(bus.stream_name(&spec.stream))
        .await
        .map_err(|e| js_err(&e))?;
    let consumer = stream
        .get_or_create_consumer(
            &spec.name,
            pull::Config {
                durable_name: Some(spec.name.clone()),
                filter_subject: bus.subject(&spec.filter),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ack_wait: spec.ack_wait,
                max_deliver: spec.max_deliver + 1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| js_err(&e))?;
    consumer.messages().await.map_err(|e| js_err(&e))
}

/// Applies one parsed event and acks, naks or dead-letters its message.
async fn settle<H: EventHandler>(
    bus: &EventBus,
    pool: &PgPool,
    spec: &ConsumerSpec,
    handler: &H,
    msg: &async_nats::jetstream::Message,
    event: &CloudEvent,
    delivered: i64,
) {
    match apply(pool, &spec.name, handler, event).await {
        Ok(outcome) => {
            let label = match outcome {
                Outcome::Applied => "applied",
                Outcome::Duplicate => "duplicate",
            };
            metrics::counter!("events_consumed_total", "consumer" => spec.name.clone(), "outcome" => label).increment(1);
            if let Err(e) = msg.ack().await {
                // The effect is committed; a redelivery will be recognised by the inbox.
                tracing::warn!(error = %e, "ack failed");
            }
        }
        Err(HandlerError::Transient(reason)) if delivered < spec.max_deliver => {
            tracing::warn!(%reason, delivered, "handler failed; will retry");
            let _ = msg
                .ack_with(AckKind::Nak(Some(spec.delay(delivered))))
                .await;
        }
        Err(e) => {
            tracing::error!(error = %e, delivered, "handler gave up; dead-lettering");
            retire(bus, spec, msg, &e.to_string(), delivered).await;
        }
    }
}

async fn apply<H: EventHandler>(
    pool: &PgPool,
    consumer: &str,
    handler: &H,
    event: &CloudEvent,
) -> Result<Outcome, HandlerError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, subject) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event.id)
    .bind(&event.event_type)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Outcome::Duplicate);
    }
    handler.handle(&mut tx, event).await?;
    tx.commit().await?;
    Ok(Outcome::Applied)
}

/// Moves a message to the dead-letter subject and terminates it; if the dead letter cannot be
/// published, naks it instead so the event is not lost.
async fn retire(
    bus: &EventBus,
    spec: &ConsumerSpec,
    msg: &async_nats::jetstream::Message,
    reason: &str,
    delivered: i64,
) {
    if dead_letter(bus, spec, &msg.payload, reason).await {
        metrics::counter!("events_dead_lettered_total", "consumer" => spec.name.clone())
            .increment(1);
        let _ = msg.ack_with(AckKind::Term).await;
    } else {
        let _ = msg
            .ack_with(AckKind::Nak(Some(spec.delay(delivered))))
            .await;
    }
}

/// Publishes to `dlq.<consumer>`; false when that failed (the caller must not drop the event).
async fn dead_letter(bus: &EventBus, spec: &ConsumerSpec, payload: &[u8], reason: &str) -> bool {
    let subject = bus.subject(&format!("dlq.{}", spec.name.replace('.', "_")));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Dlq-Reason", reason.replace(['\r', '\n'], " ").as_str());
    // Await the PubAck too: a dead letter that never reached the stream is a lost event.
    let published = match bus
        .jetstream()
        .publish_with_headers(subject, headers, payload.to_vec().into())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match published {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "dead-letter publish failed; the event stays in its stream");
            false
        }
    }
}
