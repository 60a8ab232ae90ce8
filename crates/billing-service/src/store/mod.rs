//! Postgres access for billing.

pub mod billed;
pub mod charges;
pub mod clock;
pub mod runs;
pub mod shards;
pub mod summaries;

/// Postgres `deadlock_detected`.
pub fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("40P01"))
}
