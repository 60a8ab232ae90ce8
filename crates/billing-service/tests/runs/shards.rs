//! Runs shared by billing replicas: a shard whose worker died is taken over by a live
//! replica, without sending the whole run back to the start.

use super::{Stack, settled_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_shard_is_taken_over_and_its_partial_rows_dropped() {
    let (stack, pool) = Stack::with_billing_pool().await;
    // A run another replica keeps alive (its heartbeat fresh), cut in two: the first shard
    // done, the second held by a worker that died — its heartbeat silent for longer than
    // the lease — after it wrote a summary row of one of its tenants ("ten_x" ≥ "m").
    // (One statement: the service's sweeps never see half of it.)
    sqlx::query(
        "WITH run AS (INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, \
         tenant_key, status, deadline_seconds, started_at, heartbeat_at, attempt) VALUES \
         ('run_sharded', now() - interval '1 day', now(), '{}', '', 'running', 600, now(), \
         now() + interval '1 minute', 1) RETURNING id), \
         shards AS (INSERT INTO billing_run_shards (run_id, shard, tenant_from, tenant_to, \
         status, attempt, heartbeat_at, worker) SELECT id, s, f, t, st, 1, hb, 'gone:1/0' \
         FROM run, (VALUES (0, NULL, 'm', 'done', NULL::timestamptz), \
                           (1, 'm', NULL, 'running', now() - interval '1 minute')) \
                   AS x(s, f, t, st, hb)) \
         INSERT INTO tenant_summaries (run_id, tenant_id, records, quantity) \
         SELECT id, 'ten_x', 5, 5 FROM run",
    )
    .execute(&pool)
    .await
    .unwrap();

    assert_eq!(settled_status(&pool, "run_sharded").await, "completed");
    let partial: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenant_summaries WHERE run_id = 'run_sharded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(partial, 0, "the dead worker's partial row was dropped");
    let (attempt, worker): (i32, String) = sqlx::query_as(
        "SELECT attempt, worker FROM billing_run_shards WHERE run_id = 'run_sharded' AND shard = 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempt, 2, "the shard was taken over by a second attempt");
    assert_ne!(worker, "gone:1/0", "by a live worker");
    let run_attempt: i32 =
        sqlx::query_scalar("SELECT attempt FROM billing_runs WHERE id = 'run_sharded'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(run_attempt, 1, "the run itself was not started again");

    pool.close().await;
    stack.stop().await;
}
