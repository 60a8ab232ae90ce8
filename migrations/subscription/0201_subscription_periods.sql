-- Billing cycles (issue 15), the subscription side: every period a subscription has had is a
-- row, and every usage record names the period it was counted in.

-- A subscription's periods, one row each, opened when the period begins and closed when it
-- ends (renewal, cancellation, a new billing interval). `ended_at` is when it actually ended:
-- its scheduled end, or earlier when canceled or re-anchored. Billing bills a period once
-- it has ended (arrears) or begun (advance), keyed by (subscription_id, period_start).
CREATE TABLE subscription_periods (
    subscription_id text        NOT NULL REFERENCES subscriptions (id),
    tenant_id       text        NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    ended_at        timestamptz,
    PRIMARY KEY (subscription_id, period_start),
    CHECK (period_start < period_end),
    CHECK (ended_at IS NULL OR (ended_at > period_start AND ended_at <= period_end))
);
CREATE INDEX subscription_periods_ended ON subscription_periods (ended_at)
    WHERE ended_at IS NOT NULL;
CREATE INDEX subscription_periods_start ON subscription_periods (period_start);
CREATE UNIQUE INDEX subscription_periods_open ON subscription_periods (subscription_id)
    WHERE ended_at IS NULL;

-- Existing subscriptions: their current period (closed at cancellation for canceled ones).
-- Periods before it were never recorded and are not billed by period.
INSERT INTO subscription_periods (subscription_id, tenant_id, period_start, period_end, ended_at)
SELECT id, tenant_id, period_start, period_end,
       CASE WHEN status = 'canceled'
            THEN LEAST(period_end, GREATEST(COALESCE(canceled_at, period_end), period_start + interval '1 microsecond'))
       END
FROM subscriptions;

-- The period a record was counted in: the one its timestamp falls in, or the subscription's
-- first for a record stamped before it began. Billing reads a period's records by this.
ALTER TABLE usage_records ADD COLUMN period_start timestamptz;
-- Records stored before: the first rollup period of theirs that ends after their timestamp is
-- the one ingestion counted them in.
UPDATE usage_records r SET period_start = COALESCE((
    SELECT p.period_start FROM usage_period p
    WHERE p.tenant_id = r.tenant_id AND p.metric = r.metric AND p.user_id = r.user_id
      AND r.ts < p.period_end
    ORDER BY p.period_start LIMIT 1), r.ts);
ALTER TABLE usage_records ALTER COLUMN period_start SET NOT NULL;
CREATE INDEX usage_records_tenant_period ON usage_records (tenant_id, period_start);
