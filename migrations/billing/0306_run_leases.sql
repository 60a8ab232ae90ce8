-- A running run is leased: its process refreshes `heartbeat_at` while it works, and a run
-- whose heartbeat is older than the lease belongs to a process that died or stalled; any
-- billing process requeues it. `attempt` counts claims and fences the writes of an attempt
-- that lost its lease (a stalled process waking up), so two attempts never mix their rows.
ALTER TABLE billing_runs
    ADD COLUMN attempt      integer NOT NULL DEFAULT 0,
    ADD COLUMN heartbeat_at timestamptz;

UPDATE billing_runs SET heartbeat_at = started_at WHERE status = 'running';

CREATE INDEX billing_runs_leased ON billing_runs (heartbeat_at) WHERE status = 'running';
