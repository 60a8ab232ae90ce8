-- Charge lines of a run, in integer minor units of the plan's currency.
CREATE TABLE charges (
    id              bigserial   PRIMARY KEY,
    run_id          text COLLATE "C" NOT NULL REFERENCES billing_runs (id),
    tenant_id       text COLLATE "C" NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('flat', 'seat', 'usage', 'minimum', 'adjustment')),
    price_id        text        NOT NULL,
    metric          text        NOT NULL DEFAULT '',
    quantity        numeric     NOT NULL,
    amount_minor    bigint      NOT NULL,
    currency        text        NOT NULL,
    minimum_applied boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charges_run ON charges (run_id, tenant_id, id);
