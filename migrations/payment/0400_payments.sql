-- Payment methods, intents, attempts, refunds, PSP events and dunning.

-- PSP tokens only: a card number never reaches this service.
CREATE TABLE payment_methods (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    provider    text NOT NULL CHECK (provider IN ('stripe', 'adyen', 'sandbox')),
    psp_token   text NOT NULL,
    brand       text NOT NULL,
    last4       text NOT NULL,
    exp_month   integer NOT NULL,
    exp_year    integer NOT NULL,
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    detached_at timestamptz
);

CREATE INDEX payment_methods_tenant ON payment_methods (tenant_id, id);
CREATE UNIQUE INDEX payment_methods_one_default ON payment_methods (tenant_id)
    WHERE is_default AND detached_at IS NULL;
CREATE UNIQUE INDEX payment_methods_token ON payment_methods (tenant_id, provider, psp_token)
    WHERE detached_at IS NULL;

CREATE TABLE payment_intents (
    id                   text PRIMARY KEY,
    tenant_id            text NOT NULL,
    invoice_id           text,
    amount_minor         bigint NOT NULL CHECK (amount_minor > 0),
    currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status               text NOT NULL CHECK (status IN ('requires_payment_method',
        'requires_confirmation', 'requires_action', 'processing', 'requires_capture',
        'succeeded', 'canceled')),
    capture_method       text NOT NULL CHECK (capture_method IN ('automatic', 'manual')),
    -- Made for an invoice and confirmed by the service itself (the customer is not present).
    off_session          boolean NOT NULL DEFAULT false,
    payment_method_id    text REFERENCES payment_methods (id),
    provider             text CHECK (provider IN ('stripe', 'adyen', 'sandbox')),
    -- The PSP's own intent (Stripe pi_…); Adyen has none.
    psp_intent_id        text,
    amount_received      bigint NOT NULL DEFAULT 0,
    amount_capturable    bigint NOT NULL DEFAULT 0,
    amount_refunded      bigint NOT NULL DEFAULT 0,
    next_action_url      text,
    last_failure_code    text,
    last_failure_message text,
    -- The creating request's Idempotency-Key and a digest of its body.
    idempotency_key      text,
    request_digest       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (amount_refunded <= amount_received),
    CHECK (amount_received <= amount_minor)
);

CREATE INDEX payment_intents_tenant ON payment_intents (tenant_id, id);
CREATE UNIQUE INDEX payment_intents_idempotency ON payment_intents (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- One live intent per invoice: a redelivered invoice.ready finds it.
CREATE UNIQUE INDEX payment_intents_invoice ON payment_intents (invoice_id)
    WHERE invoice_id IS NOT NULL AND status <> 'canceled';
-- What the service confirms on its own.
CREATE INDEX payment_intents_to_confirm ON payment_intents (created_at)
    WHERE off_session AND status = 'requires_confirmation';
CREATE UNIQUE INDEX payment_intents_psp ON payment_intents (provider, psp_intent_id)
    WHERE psp_intent_id IS NOT NULL;

-- Every call that may move money is an attempt; its key goes to the PSP on every try.
CREATE TABLE payment_attempts (
    intent_id           text NOT NULL REFERENCES payment_intents (id),
    number              integer NOT NULL CHECK (number > 0),
    payment_method_id   text NOT NULL REFERENCES payment_methods (id),
    provider            text NOT NULL,
    psp_idempotency_key text NOT NULL UNIQUE,
    psp_reference       text,
    outcome             text NOT NULL CHECK (outcome IN ('pending', 'succeeded', 'authorized',
        'requires_action', 'declined', 'error')),
    failure_code        text,
    failure_message     text,
    -- The confirm request's Idempotency-Key: a replay answers this attempt.
    client_key          text,
    tries               integer NOT NULL DEFAULT 0,
    -- When a pending attempt is asked again (its answer was lost).
    retry_at            timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    PRIMARY KEY (intent_id, number),
    UNIQUE (intent_id, client_key)
);

CREATE INDEX payment_attempts_pending ON payment_attempts (retry_at) WHERE outcome = 'pending';
CREATE INDEX payment_attempts_reference ON payment_attempts (provider, psp_reference)
    WHERE psp_reference IS NOT NULL;

CREATE TABLE refunds (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL,
    intent_id       text NOT NULL REFERENCES payment_intents (id),
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason          text NOT NULL DEFAULT '',
    psp_idempotency_key text NOT NULL UNIQUE,
    psp_reference   text,
    failure_code    text,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (intent_id, idempotency_key)
);

-- Callbacks seen, by the PSP's event id: a replay has no second effect.
CREATE TABLE psp_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    kind        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- One schedule per intent whose automatic payment failed.
CREATE TABLE dunning (
    intent_id     text PRIMARY KEY REFERENCES payment_intents (id),
    tenant_id     text NOT NULL,
    invoice_id    text,
    status        text NOT NULL CHECK (status IN ('active', 'exhausted', 'recovered')),
    -- Retries done so far (the schedule's steps are the settings' offsets from started_at).
    retries_done  integer NOT NULL DEFAULT 0,
    next_retry_at timestamptz,
    -- Outcome of each retry done, in order.
    outcomes      text[] NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz
);

CREATE INDEX dunning_due ON dunning (next_retry_at) WHERE status = 'active';
CREATE INDEX dunning_tenant ON dunning (tenant_id, started_at);
