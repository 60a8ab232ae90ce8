//! The transactional outbox: events are rows written in the same transaction as the state
//! change, and a relay publishes them afterwards.
//!
//! A crash between commit and publish loses nothing (the row stays unsent); a crash between
//! publish and marking the row sent re-publishes with the same `Nats-Msg-Id`, which JetStream
//! de-duplicates. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so any number of replicas
//! may run a relay.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use super::{CloudEvent, EventBus, EventError};

/// The Postgres NOTIFY channel that wakes the relay when an event is enqueued.
const NOTIFY_CHANNEL: &str = "platform_outbox";

/// Writes `event` to the outbox inside the caller's transaction. It is published only if that
/// transaction commits.
pub async fn enqueue(conn: &mut PgConnection, event: &CloudEvent) -> Result<(), EventError> {
    if !CloudEvent::is_valid_type(&event.event_type) {
        return Err(EventError::Invalid(format!(
            "event type {:?} is not a dotted lowercase subject",
            event.event_type
        )));
    }
    let payload = serde_json::to_value(event).map_err(|e| EventError::Invalid(e.to_string()))?;
    sqlx::query("INSERT INTO outbox (id, subject, payload) VALUES ($1, $2, $3)")
        .bind(event.id)
        .bind(&event.event_type)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    // Delivered at commit, dropped on rollback: exactly the wake-up we want.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Publishes unsent outbox rows to JetStream and marks them sent.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    bus: EventBus,
    batch_size: i64,
    poll: Duration,
    /// Test fault injection: abandon the batch (no commit) after this many publishes.
    #[cfg(feature = "test-util")]
    crash_after_publishes: Option<usize>,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, bus: EventBus, poll: Duration) -> Self {
        OutboxRelay {
            pool,
            bus,
            batch_size: 256,
            poll,
            #[cfg(feature = "test-util")]
            crash_after_publishes: None,
        }
    }

    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Simulates a crash after `n` publishes of a batch: the relay returns
    /// [`EventError::InjectedCrash`] without marking anything sent.
    #[cfg(feature = "test-util")]
    pub fn crash_after_publishes(mut self, n: usize) -> Self {
        self.crash_after_publishes = Some(n);
        self
    }

    /// Claims up to one batch of unsent rows, publishes them in order and marks the
    /// acknowledged ones sent. Returns how many were published.
    pub async fn relay_once(&self) -> Result<usize, EventError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT seq, id, subject, payload::text AS payload FROM outbox \
             WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Send the whole batch, then await the acks: one round trip per batch, not per event.
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let seq: i64 = row.get("seq");
            let id: uuid::Uuid = row.get("id");
            let subject: String = row.get("subject");
            let payload: String = row.get("payload");
            match self
                .bus
                .send_raw(&subject, &id.to_string(), payload.into_bytes())
                .await
            {
                Ok(ack) => pending.push((seq, ack)),
                Err(e) => {
                    failure = Some((seq, e));
                    break;
                }
            }
            #[cfg(feature = "test-util")]
            if self.crash_after_publishes == Some(pending.len()) {
                for (_, ack) in pending.drain(..) {
                    let _ = ack.await;
                }
                // Dropping `tx` rolls back: nothing is marked sent, as after a real crash.
                return Err(EventError::InjectedCrash(
                    self.crash_after_publishes.unwrap_or_default(),
                ));
            }
        }
        let mut sent = Vec::with_capacity(pending.len());
        for (seq, ack) in pending {
            match ack.await {
                Ok(_) => sent.push(seq),
                Err(e) => {
                    if failure.is_none() {
                        failure = Some((
                            seq,
                            EventError::Publish {
                                subject: String::new(),
                                reason: e.to_string(),
                            },
                        ));
                    }
                    break;
                }
            }
        }
        sqlx::query(
            "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE seq = ANY($1)",
        )
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
        if let Some((seq, err)) = &failure {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1",
            )
            .bind(seq)
            .bind(err.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        metrics::counter!("outbox_published_total").increment(sent.len() as u64);
        match failure {
            Some((_, err)) => Err(err),
            None => Ok(sent.len()),
        }
    }

    /// Publishes until nothing is left.
    pub async fn drain(&self) -> Result<usize, EventError> {
        let mut total = 0;
        loop {
            match self.relay_once().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Runs until `shutdown`: wakes on NOTIFY from [`enqueue`] and, as a fallback, every `poll`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: LISTEN failed, polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: no listener connection, polling only");
                None
            }
        };
        let mut backoff = self.poll;
        loop {
            match self.drain().await {
                Ok(_) => backoff = self.poll,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(l) => {
                        if let Ok(Err(e)) = tokio::time::timeout(backoff, l.recv()).await {
                            // The listener reconnects on the next recv; don't spin meanwhile.
                            tracing::debug!(error = %e, "outbox listener error");
                            tokio::time::sleep(backoff).await;
                        }
                    }
                    None => tokio::time::sleep(backoff).await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake => {}
            }
        }
        tracing::debug!("outbox relay stopped");
    }
}
