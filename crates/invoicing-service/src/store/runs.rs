//! Completed billing runs waiting to be invoiced (`invoicing_runs`), and how far each got.

use ids::RunId;
use sqlx::PgConnection;

/// Records a completed run; a redelivery changes nothing.
pub async fn received(conn: &mut PgConnection, run: &RunId) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO invoicing_runs (run_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(run)
        .execute(conn)
        .await?;
    Ok(())
}

/// The oldest run not yet invoiced, with its cursor, locked for the caller's transaction
/// (another replica skips it).
pub async fn claim(conn: &mut PgConnection) -> Result<Option<(RunId, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT run_id, cursor FROM invoicing_runs WHERE done_at IS NULL \
         ORDER BY received_at, run_id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(conn)
    .await
}

/// Moves the run's cursor past a page taken in; `done` when it was the last page.
pub async fn advance(
    conn: &mut PgConnection,
    run: &RunId,
    cursor: &str,
    done: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invoicing_runs SET cursor = $2, \
         done_at = CASE WHEN $3 THEN now() ELSE NULL END WHERE run_id = $1",
    )
    .bind(run)
    .bind(cursor)
    .bind(done)
    .execute(conn)
    .await?;
    Ok(())
}
