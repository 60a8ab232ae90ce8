-- Billing cycles (issue 15): runs bill subscription periods, each part of a period once.

-- One row per billed part of a subscription period: `advance` (fees for the period as
-- scheduled, billed when it begins) and `arrears` (usage, arrears fees and the advance fees'
-- true-up, billed when it ends). The primary key is the exactly-once guarantee: a run claims
-- a part in the transaction that writes its charges, so overlapping runs, the clock and
-- requests by hand can never bill the same part twice.
CREATE TABLE billed_periods (
    subscription_id text COLLATE "C" NOT NULL,
    period_start    timestamptz NOT NULL,
    part            text        NOT NULL CHECK (part IN ('advance', 'arrears')),
    tenant_id       text COLLATE "C" NOT NULL,
    period_end      timestamptz NOT NULL,
    run_id          text COLLATE "C" NOT NULL REFERENCES billing_runs (id),
    billed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, period_start, part)
);
CREATE INDEX billed_periods_run ON billed_periods (run_id);

-- A charge's stable key for invoicing: the subscription period and the part it bills.
-- Charges written before have none ('' / NULL).
ALTER TABLE charges
    ADD COLUMN subscription_id text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN period_start    timestamptz,
    ADD COLUMN period_end      timestamptz,
    ADD COLUMN part            text NOT NULL DEFAULT '' CHECK (part IN ('', 'advance', 'arrears'));
ALTER TABLE charges DROP CONSTRAINT charges_kind_check;
ALTER TABLE charges ADD CONSTRAINT charges_kind_check
    CHECK (kind IN ('flat', 'seat', 'usage', 'minimum', 'adjustment', 'proration'));
CREATE INDEX charges_period ON charges (subscription_id, period_start, part);

-- A run's usage per subscription period: the same tenant can have several periods in one run.
ALTER TABLE user_usage_summaries
    ADD COLUMN period_start timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE user_usage_summaries DROP CONSTRAINT user_usage_summaries_pkey;
ALTER TABLE user_usage_summaries
    ADD PRIMARY KEY (run_id, tenant_id, period_start, user_id, metric);

-- Runs started by the billing clock, and where the clock has billed through.
ALTER TABLE billing_runs ADD COLUMN origin text NOT NULL DEFAULT 'api'
    CHECK (origin IN ('api', 'clock'));
-- The clock starts where this migration runs: periods that began before it were billed (in
-- part) by window runs under the old rule and are left to runs requested by hand.
CREATE TABLE billing_clock (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    billed_through timestamptz NOT NULL
);
INSERT INTO billing_clock (billed_through) VALUES (now());
