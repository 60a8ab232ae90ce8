//! The billing clock's state: the run origin and where the clock has billed through.

use chrono::{DateTime, Utc};
use ids::RunId;
use sqlx::PgConnection;

/// Marks a run as started by the billing clock.
pub async fn mark_run(conn: &mut PgConnection, id: &RunId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_runs SET origin = 'clock' WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks the billing clock and returns where it has billed through.
pub async fn locked(conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT billed_through FROM billing_clock FOR UPDATE")
        .fetch_one(conn)
        .await
}

/// Moves the (locked) billing clock to `to`.
pub async fn advance(conn: &mut PgConnection, to: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE billing_clock SET billed_through = $1")
        .bind(to)
        .execute(conn)
        .await?;
    Ok(())
}
