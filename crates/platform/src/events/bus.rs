//! The JetStream connection, stream layout and publishing.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

#[cfg(feature = "test-util")]
use super::CloudEvent;

/// The streams of the platform: base name and the subjects it captures (DESIGN.md §5).
pub const STREAMS: &[(&str, &[&str])] = &[
    ("USER", &["user.>", "tenant.>"]),
    ("SUBSCRIPTION", &["subscription.>"]),
    ("USAGE", &["usage.>"]),
    ("BILLING", &["billing.>"]),
    ("INVOICE", &["invoice.>", "credit_note.>"]),
    ("PAYMENT", &["payment.>"]),
    ("DLQ", &["dlq.>"]),
];

/// How long JetStream remembers a `Nats-Msg-Id`. An outbox relay that dies after publishing
/// and restarts within this window causes no duplicate in the stream; past it, consumers'
/// inboxes still drop the duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("publish of {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("invalid event: {0}")]
    Invalid(String),
    /// Only with the `test-util` feature (`OutboxRelay::crash_after_publishes`).
    #[cfg(feature = "test-util")]
    #[error("relay stopped by test fault injection after {0} publishes")]
    InjectedCrash(usize),
}

/// Whether a stream already has the settings the platform asks for.
fn same_settings(have: &stream::Config, wanted: &stream::Config) -> bool {
    have.subjects == wanted.subjects
        && have.storage == wanted.storage
        && have.duplicate_window == wanted.duplicate_window
        && have.max_age == wanted.max_age
        && have.num_replicas == wanted.num_replicas
}

fn js_err(e: impl std::fmt::Display) -> EventError {
    EventError::JetStream(e.to_string())
}

/// A JetStream context plus the subject/stream prefix that isolates one stack (or one test).
#[derive(Clone)]
pub struct EventBus {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl EventBus {
    /// Connects to NATS: `url` is one server or a comma-separated list of a cluster's (any
    /// one that answers will do; the client learns the others from it and fails over).
    /// `prefix` (may be empty) namespaces every stream and subject.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, EventError> {
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse::<async_nats::ServerAddr>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EventError::Connect(format!("NATS_URL: {e}")))?;
        let client = async_nats::ConnectOptions::new()
            .name("saas-platform")
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|e| EventError::Connect(e.to_string()))?;
        let js = jetstream::new(client.clone());
        Ok(EventBus {
            client,
            js,
            prefix: prefix.to_string(),
        })
    }

    /// The NATS subject an event type is published on.
    pub fn subject(&self, event_type: &str) -> String {
        if self.prefix.is_empty() {
            event_type.to_string()
        } else {
            format!("{}.{event_type}", self.prefix)
        }
    }

    /// The event type of a subject (the subject without the prefix).
    pub fn event_type<'a>(&self, subject: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            subject
        } else {
            subject
                .strip_prefix(&self.prefix)
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(subject)
        }
    }

    /// The full name of a stream (`USER`, or `<prefix>_USER`).
    pub fn stream_name(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}_{base}", self.prefix)
        }
    }

    /// Creates (or updates) every platform stream, one copy each. Idempotent.
    pub async fn ensure_streams(&self) -> Result<(), EventError> {
        self.ensure_streams_replicated(1).await
    }

    /// Creates (or updates) every platform stream with `replicas` copies (at most the
    /// cluster's size). Idempotent: every service calls it at start-up.
    pub async fn ensure_streams_replicated(&self, replicas: usize) -> Result<(), EventError> {
        for (base, subjects) in STREAMS {
            let config = stream::Config {
                name: self.stream_name(base),
                subjects: subjects.iter().map(|s| self.subject(s)).collect(),
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                max_age: Duration::from_secs(14 * 24 * 3600),
                num_replicas: replicas,
                ..Default::default()
            };
            self.ensure_stream(config).await?;
        }
        Ok(())
    }

    /// Creates `wanted`, or updates the stream when its settings differ. On a cluster, when
    /// several services start at once, all but one of the concurrent requests for the same
    /// stream can go unanswered (the request times out): the stream exists by then, so a
    /// timed-out request is asked again, a few times.
    async fn ensure_stream(&self, wanted: stream::Config) -> Result<(), EventError> {
        const ATTEMPTS: u32 = 4;
        let mut attempt = 1;
        loop {
            let result = match self.js.get_stream(&wanted.name).await {
                Ok(existing) if same_settings(&existing.cached_info().config, &wanted) => {
                    return Ok(());
                }
                Ok(_) => self
                    .js
                    .update_stream(wanted.clone())
                    .await
                    .map(drop)
                    .map_err(js_err),
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(j)
                            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    ) =>
                {
                    self.js
                        .create_stream(wanted.clone())
                        .await
                        .map(drop)
                        .map_err(js_err)
                }
                Err(e) => Err(js_err(e)),
            };
            match result {
                Err(EventError::JetStream(e)) if e.contains("timed out") && attempt < ATTEMPTS => {
                    tracing::info!(stream = %wanted.name, attempt, "stream request timed out; asking again");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Deletes this prefix's streams (tests clean up with it).
    pub async fn delete_streams(&self) -> Result<(), EventError> {
        for (base, _) in STREAMS {
            match self.js.delete_stream(self.stream_name(base)).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(js_err(e)),
            }
        }
        Ok(())
    }

    /// Publishes one event and waits for JetStream's acknowledgement. Services publish through
    /// the outbox only; this is for tests that play another service (`test-util`).
    #[cfg(feature = "test-util")]
    pub async fn publish(&self, event: &CloudEvent) -> Result<(), EventError> {
        let payload = serde_json::to_vec(event).map_err(|e| EventError::Invalid(e.to_string()))?;
        self.publish_raw(&event.event_type, &event.id.to_string(), payload)
            .await
    }

    /// Publishes a serialized event with `Nats-Msg-Id` set, awaiting the PubAck.
    #[cfg(feature = "test-util")]
    async fn publish_raw(
        &self,
        event_type: &str,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> Result<(), EventError> {
        let ack = self.send_raw(event_type, msg_id, payload).await?;
        ack.await.map_err(|e| EventError::Publish {
            subject: self.subject(event_type),
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// Sends without awaiting the ack, so a batch can have many publishes in flight.
    pub(crate) async fn send_raw(
        &self,
        event_type: &str,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> Result<jetstream::context::PublishAckFuture, EventError> {
        let subject = self.subject(event_type);
        self.js
            .send_publish(
                subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(msg_id),
            )
            .await
            .map_err(|e| EventError::Publish {
                subject,
                reason: e.to_string(),
            })
    }

    /// True while the NATS connection is up (readiness).
    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}
