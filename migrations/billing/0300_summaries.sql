-- What a billing run wrote per tenant and per (tenant, user, metric). Every transaction that
-- touches a tenant's user rows locks the tenant's row first, then the user rows in key order
-- (concurrency::canonical_lock_keys): the canonical lock order that makes these updates
-- deadlock-free under concurrent workers.
CREATE TABLE tenant_summaries (
    run_id     text COLLATE "C" NOT NULL,
    tenant_id  text COLLATE "C" NOT NULL,
    records    bigint  NOT NULL DEFAULT 0,
    quantity   numeric NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, tenant_id)
);

CREATE TABLE user_usage_summaries (
    run_id    text COLLATE "C" NOT NULL,
    tenant_id text COLLATE "C" NOT NULL,
    user_id   text COLLATE "C" NOT NULL,
    metric    text COLLATE "C" NOT NULL,
    records   bigint  NOT NULL DEFAULT 0,
    quantity  numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, tenant_id, user_id, metric)
);
