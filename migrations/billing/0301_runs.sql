-- Billing runs. One run per (period, tenant set) unless it corrects another: a repeated
-- request returns the existing run.
CREATE TABLE billing_runs (
    id                 text        PRIMARY KEY,
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    -- Sorted, de-duplicated; empty = every billable tenant.
    tenant_ids         text[]      NOT NULL,
    tenant_key         text        NOT NULL,
    status             text        NOT NULL
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'exceeded_deadline')),
    deadline_seconds   integer     NOT NULL CHECK (deadline_seconds > 0),
    records_processed  bigint      NOT NULL DEFAULT 0,
    records_per_second double precision NOT NULL DEFAULT 0,
    error              text        NOT NULL DEFAULT '',
    corrects_run_id    text        REFERENCES billing_runs (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz
);
CREATE UNIQUE INDEX billing_runs_once ON billing_runs (period_start, period_end, tenant_key)
    WHERE corrects_run_id IS NULL;
