//! Events between services: the CloudEvents envelope, JetStream streams, the transactional
//! outbox (publisher side) and the inbox-deduplicated consumer (subscriber side).
//!
//! The guarantee the pair gives (DESIGN.md §5): an event written in a committed transaction is
//! published, and a consumer applies its effect once, even across crashes and redeliveries.
//! The outbox publishes with `Nats-Msg-Id = event id` so JetStream drops a re-publish within its
//! duplicate window; the inbox records handled ids in the consumer's own transaction, so a
//! redelivery after that window still has no second effect.

mod bus;
mod envelope;
mod inbox;
mod outbox;

pub use bus::{EventBus, EventError, STREAMS};
pub use envelope::CloudEvent;
pub use inbox::{ConsumerSpec, EventHandler, HandlerError, run_consumer};
pub use outbox::{OutboxRelay, enqueue};
