//! Gapless document numbers (`invoice_number_sequences`, one counter per series and year).

use sqlx::PgConnection;

use crate::domain::lifecycle::Kind;

/// The next number of `series` in `year`, taken inside the caller's transaction: the counter row stays
/// locked until that transaction ends, so concurrent callers queue and get consecutive
/// numbers, and a transaction that rolls back (or whose connection dies) gives its number
/// back to the next caller. Call it last in the finalizing transaction, just before the
/// commit, to hold the lock briefly.
pub async fn allocate(
    conn: &mut PgConnection,
    series: Kind,
    year: i32,
) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "INSERT INTO invoice_number_sequences (series, year, last_number) VALUES ($1, $2, 1) \
         ON CONFLICT (series, year) \
         DO UPDATE SET last_number = invoice_number_sequences.last_number + 1 \
         RETURNING last_number",
    )
    .bind(series)
    .bind(year)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(n).expect("the table's CHECK keeps numbers positive"))
}
