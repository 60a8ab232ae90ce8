-- Tenants' names, recipients, webhook endpoints, messages, their deliveries and every attempt.

-- What templates say about a tenant, kept from tenant.created.
CREATE TABLE tenants (
    tenant_id text PRIMARY KEY,
    name      text NOT NULL
);

-- Who of a tenant hears of what, by e-mail or SMS. Empty event_types: every event.
CREATE TABLE recipients (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    address     text NOT NULL,
    event_types text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, channel, address)
);

CREATE INDEX recipients_tenant ON recipients (tenant_id, id);

-- A tenant's own systems. `secret` signs every delivery; after a rotation the previous secret
-- signs beside it until `previous_expires_at`.
CREATE TABLE webhook_endpoints (
    id                  text PRIMARY KEY,
    tenant_id           text NOT NULL,
    url                 text NOT NULL,
    description         text NOT NULL DEFAULT '',
    event_types         text[] NOT NULL DEFAULT '{}',
    secret              text NOT NULL,
    previous_secret     text,
    previous_expires_at timestamptz,
    status              text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason     text,
    -- Since when every attempt failed (cleared by a success); days of it disable the endpoint.
    failing_since       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);

-- What a tenant is told about one event: the webhook body exactly as signed and sent (bytes
-- stay the same across retries), and the e-mail/SMS text rendered once from its template
-- (unset for events told by webhook only), with the invoice whose PDF is attached.
CREATE TABLE messages (
    id         text PRIMARY KEY,
    tenant_id  text NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    body       text NOT NULL,
    subject    text,
    text_body  text,
    html_body  text,
    attachment text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, event_id)
);

CREATE INDEX messages_tenant ON messages (tenant_id, id);

-- One message to one target: an endpoint id, an e-mail address or a phone number.
CREATE TABLE deliveries (
    id              text PRIMARY KEY,
    message_id      text NOT NULL REFERENCES messages (id),
    tenant_id       text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
    target          text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Every attempt ever made (numbers the log); `tries` counts this round of the schedule
    -- (a replay starts a new round).
    attempts        integer NOT NULL DEFAULT 0,
    tries           integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    -- Held by a sender until then; only the holder of `lease` may record the outcome.
    locked_until    timestamptz,
    lease           uuid,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, channel, target)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_target ON deliveries (target) WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    delivery_id   text NOT NULL REFERENCES deliveries (id),
    number        integer NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    -- HTTP status for webhooks and SMS; 250 (or the refusal's code) for e-mail; unset when
    -- nothing answered.
    response_code integer,
    latency_ms    integer NOT NULL,
    -- The first 1,024 bytes of what came back, or why nothing did.
    response      text NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, number)
);
