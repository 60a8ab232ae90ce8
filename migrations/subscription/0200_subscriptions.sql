-- Plan catalog: every edit is a new immutable version; subscriptions point at (id, version).
CREATE TABLE plans (
    id          text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    name        text        NOT NULL,
    currency    text        NOT NULL,
    interval    text        NOT NULL CHECK (interval IN ('month', 'year')),
    trial_days  integer     NOT NULL DEFAULT 0 CHECK (trial_days >= 0),
    fixed_seats boolean     NOT NULL DEFAULT false,
    -- The API rate limit subscribers get (NULL = the gateway's default).
    rate_per_sec integer    CHECK (rate_per_sec > 0),
    rate_burst  integer     CHECK (rate_burst > 0),
    -- pricing::Price / domain::Feature as JSON: immutable per version, read whole.
    prices      jsonb       NOT NULL,
    features    jsonb       NOT NULL,
    archived    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);

-- One live subscription per tenant; canceled ones stay for billing and history.
CREATE TABLE subscriptions (
    id                   text        PRIMARY KEY,
    tenant_id            text        NOT NULL,
    plan_id              text        NOT NULL,
    plan_version         integer     NOT NULL,
    status               text        NOT NULL
        CHECK (status IN ('trialing', 'active', 'past_due', 'suspended', 'canceled')),
    -- Periods are [anchor + k·interval, anchor + (k+1)·interval).
    period_anchor        timestamptz NOT NULL,
    period_start         timestamptz NOT NULL,
    period_end           timestamptz NOT NULL,
    trial_end            timestamptz,
    cancel_at_period_end boolean     NOT NULL DEFAULT false,
    canceled_at          timestamptz,
    -- Set when seats are an explicit quantity; NULL = follow active users.
    fixed_seats          integer     CHECK (fixed_seats >= 0),
    seats                integer     NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (plan_id, plan_version) REFERENCES plans (id, version)
);
CREATE UNIQUE INDEX subscriptions_live ON subscriptions (tenant_id) WHERE status <> 'canceled';
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id, created_at);

-- Mid-period plan changes and their proration lines, for billing to pick up.
CREATE TABLE plan_changes (
    id            bigserial   PRIMARY KEY,
    tenant_id     text        NOT NULL,
    from_plan_id  text        NOT NULL,
    from_version  integer     NOT NULL,
    to_plan_id    text        NOT NULL,
    to_version    integer     NOT NULL,
    changed_at    timestamptz NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    currency      text        NOT NULL,
    credit_minor  bigint      NOT NULL,
    charge_minor  bigint      NOT NULL
);
CREATE INDEX plan_changes_tenant ON plan_changes (tenant_id, changed_at);

-- Seat history: [valid_from, valid_to), the open segment has valid_to NULL.
CREATE TABLE seat_segments (
    tenant_id  text        NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz,
    seats      integer     NOT NULL CHECK (seats >= 0),
    PRIMARY KEY (tenant_id, valid_from)
);

-- Org users as last seen in user.* events (seats count the active ones).
CREATE TABLE members (
    tenant_id  text        NOT NULL,
    user_id    text        NOT NULL,
    active     boolean     NOT NULL,
    -- The event time that set this row; older events do not overwrite newer ones.
    event_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

-- Raw usage. The primary key is the de-duplication; (tenant_id, ts) serves period scans.
-- Keys are ASCII ids: "C" collation (byte order) makes their sorts and index compares cheap.
CREATE TABLE usage_records (
    tenant_id   text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    user_id     text COLLATE "C" NOT NULL DEFAULT '',
    metric      text COLLATE "C" NOT NULL,
    quantity    numeric     NOT NULL,
    ts          timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_records_tenant_ts ON usage_records (tenant_id, ts);

-- Rollups kept current at ingestion (same transaction), so checks never scan raw records.
CREATE TABLE usage_hourly (
    tenant_id text COLLATE "C" NOT NULL,
    metric    text COLLATE "C" NOT NULL,
    hour      timestamptz NOT NULL,
    user_id   text COLLATE "C" NOT NULL,
    quantity  numeric     NOT NULL,
    PRIMARY KEY (tenant_id, metric, hour, user_id)
);

CREATE TABLE usage_period (
    tenant_id    text COLLATE "C" NOT NULL,
    metric       text COLLATE "C" NOT NULL,
    period_start timestamptz NOT NULL,
    user_id      text COLLATE "C" NOT NULL,
    period_end   timestamptz NOT NULL,
    quantity     numeric     NOT NULL,
    PRIMARY KEY (tenant_id, metric, period_start, user_id)
);

-- The tenant-wide total per period: one row read per entitlement check.
CREATE TABLE usage_period_total (
    tenant_id    text COLLATE "C" NOT NULL,
    metric       text COLLATE "C" NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    quantity     numeric     NOT NULL,
    PRIMARY KEY (tenant_id, metric, period_start)
);
