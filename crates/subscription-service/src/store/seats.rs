//! Members (from user events) and seat history.

use chrono::{DateTime, Utc};
use ids::{TenantId, UserId};
use pricing::SeatSegment;
use sqlx::PgConnection;

use crate::error::SubError;

/// Records a user's state from an event; an older event never overwrites a newer one.
/// Returns whether the row changed.
pub async fn upsert_member(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    user_id: &UserId,
    active: bool,
    event_time: DateTime<Utc>,
) -> Result<bool, SubError> {
    let changed = sqlx::query(
        "INSERT INTO members (tenant_id, user_id, active, event_time) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET active = excluded.active, \
         event_time = excluded.event_time \
         WHERE members.event_time <= excluded.event_time AND members.active <> excluded.active",
    )
    .bind(tenant_id)
    .bind(user_id)
    .bind(active)
    .bind(event_time)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub async fn member_active(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    user_id: &UserId,
) -> Result<Option<bool>, SubError> {
    Ok(
        sqlx::query_scalar("SELECT active FROM members WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn count_active(conn: &mut PgConnection, tenant_id: &TenantId) -> Result<u32, SubError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM members WHERE tenant_id = $1 AND active")
        .bind(tenant_id)
        .fetch_one(conn)
        .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Makes `seats` the count from `at` on: closes the open segment and opens a new one (or
/// rewrites the open one if it began at `at`). No-op when the count is unchanged.
pub async fn set_seats(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    seats: u32,
    at: DateTime<Utc>,
) -> Result<(), SubError> {
    let open: Option<(DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT valid_from, seats FROM seat_segments WHERE tenant_id = $1 AND valid_to IS NULL \
         FOR UPDATE",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    match open {
        Some((_, n)) if n == seats as i32 => return Ok(()),
        Some((from, _)) if from >= at => {
            sqlx::query(
                "UPDATE seat_segments SET seats = $3 WHERE tenant_id = $1 AND valid_from = $2",
            )
            .bind(tenant_id)
            .bind(from)
            .bind(seats as i32)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        Some(_) => {
            sqlx::query(
                "UPDATE seat_segments SET valid_to = $2 WHERE tenant_id = $1 AND valid_to IS NULL",
            )
            .bind(tenant_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        None => {}
    }
    sqlx::query("INSERT INTO seat_segments (tenant_id, valid_from, seats) VALUES ($1, $2, $3)")
        .bind(tenant_id)
        .bind(at)
        .bind(seats as i32)
        .execute(conn)
        .await?;
    Ok(())
}

/// Closes the open segment (the subscription ended).
pub async fn close(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    at: DateTime<Utc>,
) -> Result<(), SubError> {
    sqlx::query("UPDATE seat_segments SET valid_to = $2 WHERE tenant_id = $1 AND valid_to IS NULL")
        .bind(tenant_id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Segments overlapping `[from, to)`, oldest first (all when both are `None`).
pub async fn history(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<SeatSegment>, SubError> {
    let rows: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, i32)> = sqlx::query_as(
        "SELECT valid_from, valid_to, seats FROM seat_segments WHERE tenant_id = $1 \
         AND ($3::timestamptz IS NULL OR valid_from < $3) \
         AND ($2::timestamptz IS NULL OR valid_to IS NULL OR valid_to > $2) \
         ORDER BY valid_from",
    )
    .bind(tenant_id)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(from, to, seats)| SeatSegment {
            from,
            to,
            seats: u32::try_from(seats).unwrap_or(0),
        })
        .collect())
}
