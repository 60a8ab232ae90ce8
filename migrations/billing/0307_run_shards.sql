-- A run's tenants are cut into shards — ranges of tenant ids — that billing replicas lease,
-- each with a heartbeat and a fencing attempt of its own (as `billing_runs` has for the whole
-- run, 0306). A shard whose worker died or stalled is requeued by any replica, its partial
-- summaries deleted; the replica that finishes the last shard completes the run. `arrears`
-- lists the periods whose usage the shard folded ("<tenant> <period start>"): the run prices
-- usage only for those, so a period that ended after the shard read it waits for a later run.
CREATE TABLE billing_run_shards (
    run_id            text COLLATE "C" NOT NULL,
    shard             integer NOT NULL,
    -- The shard's tenants: from (inclusive) to (exclusive), in byte order; NULL: unbounded.
    tenant_from       text COLLATE "C",
    tenant_to         text COLLATE "C",
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'done')),
    attempt           integer NOT NULL DEFAULT 0,
    heartbeat_at      timestamptz,
    -- Which process holds (or held) it: host and pid, for operators.
    worker            text NOT NULL DEFAULT '',
    records_processed bigint NOT NULL DEFAULT 0,
    arrears           text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, shard)
);

CREATE INDEX billing_run_shards_open ON billing_run_shards (status, heartbeat_at)
    WHERE status <> 'done';
