//! Bounded concurrency and deadlock avoidance: the controls that fixed the "ConcurFlow"
//! incident.
//!
//! In that incident a tenant import of a million rows let billing workers (a) spawn without
//! limit and starve the database pool and (b) lock `(tenant, user)` rows in whatever order they
//! met them, so two transactions could each hold what the other wanted: deadlock. The fixes
//! live here, free of any I/O so every service can use them:
//!
//! - [`Limiter`] caps concurrent tasks (`MAX_WORKERS`) and concurrent database sections
//!   (`MAX_DB_JOBS`) with RAII permits that are released however a task ends.
//! - [`canonical_lock_keys`] gives the one total order in which multi-row locks are taken.
//! - [`ThroughputTracker`] counts work lock-free, overall and over a sliding window.
//! - [`with_deadline`] bounds a whole run ([`ExceededDeadline`]).
//! - [`batch_channel`] moves records in bounded batches, never one send per record.

pub mod deadline;
pub mod limiter;
pub mod lock_order;
pub mod pipeline;
pub mod throughput;

pub use deadline::{DEFAULT_RUN_DEADLINE, ExceededDeadline, with_deadline};
pub use limiter::{Limiter, LimiterConfig, LimiterError};
pub use lock_order::{LockKey, advisory_lock_ids, canonical_lock_keys, sort_canonical};
pub use pipeline::{BatchReceiver, BatchSender, Closed, MAX_BATCH, batch_channel};
pub use throughput::{ThroughputSnapshot, ThroughputTracker};
