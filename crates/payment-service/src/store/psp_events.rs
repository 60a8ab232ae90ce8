//! PSP callback events seen, by the PSP's event id.

use sqlx::PgConnection;

use crate::domain::provider::Provider;

/// Records an event; `false` when it was seen before (a replay, to be ignored).
pub async fn first_sight(
    conn: &mut PgConnection,
    provider: Provider,
    event_id: &str,
    kind: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO psp_events (provider, event_id, kind) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(event_id)
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
