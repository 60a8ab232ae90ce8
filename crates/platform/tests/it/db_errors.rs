//! Database errors as callers see them: a database that went away is UNAVAILABLE (retry
//! shortly, a 503 at the gateway), not INTERNAL.

use test_support::TestDb;
use tonic::Code;

#[tokio::test]
async fn a_connection_cut_by_the_server_is_unavailable() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let mut conn = pool.acquire().await.unwrap();
    // What every connection gets when Postgres shuts down or restarts: terminated by the
    // server (SQLSTATE 57P01), then a dead socket.
    let cut = sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(
        platform::grpc::db_status(&cut).code(),
        Code::Unavailable,
        "{cut}"
    );
    let dead = sqlx::query("SELECT 1")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(
        platform::grpc::db_status(&dead).code(),
        Code::Unavailable,
        "{dead}"
    );
    assert_eq!(
        platform::grpc::db_status(&sqlx::Error::PoolTimedOut).code(),
        Code::Unavailable
    );
    drop(conn);
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_bug_in_a_query_stays_internal() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let e = sqlx::query("SELECT no_such_column FROM pg_class")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(platform::grpc::db_status(&e).code(), Code::Internal, "{e}");
    pool.close().await;
    db.drop_db().await;
}
