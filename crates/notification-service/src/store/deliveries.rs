//! The delivery queue (`deliveries`, `delivery_attempts`): senders lease what is due, and the
//! holder of a lease records each attempt's outcome. A sender that dies leaves its lease to
//! run out; the delivery is then due again (at least once), and an outcome is only ever
//! recorded by the lease that made it (once).

use std::time::Duration;

use chrono::{DateTime, Utc};
use ids::{DeliveryId, EndpointId, MessageId, TenantId};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Channel, DeliveryStatus};

/// A delivery leased for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Leased {
    pub id: DeliveryId,
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub target: String,
    pub attempts: i32,
    pub tries: i32,
    pub lease: Uuid,
}

/// Leases up to `limit` due deliveries for `hold`: at most `per_target` to one target, and
/// to a target already in flight only its `room` (targets and rooms side by side).
pub async fn lease(
    conn: &mut PgConnection,
    limit: i64,
    per_target: i64,
    busy: (&[String], &[i64]),
    hold: Duration,
) -> Result<Vec<Leased>, sqlx::Error> {
    sqlx::query_as(
        "WITH busy AS (SELECT * FROM unnest($3::text[], $4::bigint[]) AS b(target, room)), \
         due AS ( \
           SELECT id, target, next_attempt_at FROM deliveries \
           WHERE status = 'pending' AND next_attempt_at <= now() \
             AND (locked_until IS NULL OR locked_until < now()) \
           ORDER BY next_attempt_at LIMIT $1 * 8), \
         spread AS ( \
           SELECT due.id, due.next_attempt_at, coalesce(busy.room, $2) AS room, \
             row_number() OVER (PARTITION BY due.target ORDER BY due.next_attempt_at) AS n \
           FROM due LEFT JOIN busy ON busy.target = due.target), \
         picked AS ( \
           SELECT d.id FROM deliveries d JOIN spread s ON s.id = d.id \
           WHERE s.n <= s.room AND d.status = 'pending' \
             AND (d.locked_until IS NULL OR d.locked_until < now()) \
           ORDER BY s.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED) \
         UPDATE deliveries d SET locked_until = now() + $5, lease = gen_random_uuid() \
         FROM picked WHERE d.id = picked.id \
         RETURNING d.id, d.message_id, d.tenant_id, d.channel, d.target, d.attempts, d.tries, \
           d.lease",
    )
    .bind(limit)
    .bind(per_target)
    .bind(busy.0)
    .bind(busy.1)
    .bind(hold)
    .fetch_all(conn)
    .await
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub response_code: Option<i32>,
    pub latency_ms: i32,
    pub response: String,
    /// Delivered, failed for good, or pending again at `next`.
    pub status: DeliveryStatus,
    pub next: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Records an attempt under its lease and releases the delivery, in one statement; `false`
/// when the lease ran out and another sender took the delivery (its outcome is the one
/// recorded).
pub async fn record(conn: &mut PgConnection, d: &Leased, o: &Outcome) -> Result<bool, sqlx::Error> {
    let number: Option<i32> = sqlx::query_scalar(
        "WITH d AS ( \
           UPDATE deliveries SET attempts = attempts + 1, tries = tries + 1, status = $3, \
             next_attempt_at = $4, last_error = $5, locked_until = NULL, lease = NULL, \
             delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END \
           WHERE id = $1 AND lease = $2 RETURNING id, attempts) \
         INSERT INTO delivery_attempts (delivery_id, number, response_code, latency_ms, response) \
         SELECT id, attempts, $6, $7, $8 FROM d RETURNING number",
    )
    .bind(&d.id)
    .bind(d.lease)
    .bind(o.status)
    .bind(o.next)
    .bind(&o.error)
    .bind(o.response_code)
    .bind(o.latency_ms)
    .bind(&o.response)
    .fetch_optional(conn)
    .await?;
    Ok(number.is_some())
}

/// [`record`] for a batch, in one statement; answers how many were still held by their
/// lease (the others were taken over after their lease ran out).
pub async fn record_many(
    conn: &mut PgConnection,
    batch: &[(Leased, Outcome)],
) -> Result<u64, sqlx::Error> {
    let ids: Vec<&DeliveryId> = batch.iter().map(|(d, _)| &d.id).collect();
    let leases: Vec<Uuid> = batch.iter().map(|(d, _)| d.lease).collect();
    let statuses: Vec<DeliveryStatus> = batch.iter().map(|(_, o)| o.status).collect();
    let nexts: Vec<Option<DateTime<Utc>>> = batch.iter().map(|(_, o)| o.next).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|(_, o)| o.error.as_deref()).collect();
    let codes: Vec<Option<i32>> = batch.iter().map(|(_, o)| o.response_code).collect();
    let latencies: Vec<i32> = batch.iter().map(|(_, o)| o.latency_ms).collect();
    let responses: Vec<&str> = batch.iter().map(|(_, o)| o.response.as_str()).collect();
    let r = sqlx::query(
        "WITH o AS ( \
           SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], \
             $5::text[], $6::int[], $7::int[], $8::text[]) \
             AS o(id, lease, status, next, error, code, latency, response)), \
         d AS ( \
           UPDATE deliveries SET attempts = attempts + 1, tries = tries + 1, status = o.status, \
             next_attempt_at = o.next, last_error = o.error, locked_until = NULL, lease = NULL, \
             delivered_at = CASE WHEN o.status = 'delivered' THEN now() ELSE delivered_at END \
           FROM o WHERE deliveries.id = o.id AND deliveries.lease = o.lease \
           RETURNING deliveries.id, deliveries.attempts, o.code, o.latency, o.response) \
         INSERT INTO delivery_attempts (delivery_id, number, response_code, latency_ms, response) \
         SELECT id, attempts, code, latency, response FROM d",
    )
    .bind(&ids)
    .bind(&leases)
    .bind(&statuses)
    .bind(&nexts)
    .bind(&errors)
    .bind(&codes)
    .bind(&latencies)
    .bind(&responses)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Ends a leased delivery without an attempt (its endpoint is gone or disabled).
pub async fn abandon(conn: &mut PgConnection, d: &Leased, why: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET status = 'failed', last_error = $3, next_attempt_at = NULL, \
         locked_until = NULL, lease = NULL WHERE id = $1 AND lease = $2",
    )
    .bind(&d.id)
    .bind(d.lease)
    .bind(why)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fails everything pending to an endpoint (it was disabled); leased ones end when their
/// sender finds the endpoint disabled.
pub async fn fail_pending(
    conn: &mut PgConnection,
    endpoint: &EndpointId,
    why: &str,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deliveries SET status = 'failed', last_error = $2, next_attempt_at = NULL \
         WHERE channel = 'webhook' AND target = $1 AND status = 'pending' \
           AND (locked_until IS NULL OR locked_until < now())",
    )
    .bind(endpoint.as_str())
    .bind(why)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Starts a new round of the schedule for the message's webhook deliveries (to `endpoint`
/// only, when given), due now; what is in flight is left to finish. Answers how many.
pub async fn replay(
    conn: &mut PgConnection,
    message: &MessageId,
    endpoints: &[String],
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = now(), \
         last_error = NULL WHERE message_id = $1 AND channel = 'webhook' AND target = ANY($2) \
           AND (locked_until IS NULL OR locked_until < now())",
    )
    .bind(message)
    .bind(endpoints)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Deliveries pending (the `/metrics` gauge).
pub async fn pending(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        .fetch_one(conn)
        .await
}
