-- Tenants, org users, role bindings, API keys and SCIM tokens (user service).

CREATE TABLE tenants (
    id          TEXT        PRIMARY KEY,
    name        TEXT        NOT NULL,
    slug        TEXT        NOT NULL UNIQUE,
    status      TEXT        NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            TEXT        PRIMARY KEY,
    tenant_id     TEXT        NOT NULL REFERENCES tenants (id),
    email         TEXT        NOT NULL,
    display_name  TEXT        NOT NULL DEFAULT '',
    status        TEXT        NOT NULL CHECK (status IN ('active', 'deactivated')),
    external_id   TEXT,
    version       BIGINT      NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- E-mail is unique per tenant, compared case-insensitively.
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, lower(email));
-- Cursor pagination within a tenant (ids are time-ordered UUIDv7 strings).
CREATE INDEX users_tenant_id ON users (tenant_id, id);

CREATE TABLE role_bindings (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, role)
);

CREATE TABLE api_keys (
    id            TEXT        PRIMARY KEY,
    tenant_id     TEXT        NOT NULL REFERENCES tenants (id),
    name          TEXT        NOT NULL,
    prefix        TEXT        NOT NULL,
    -- SHA-256 of the secret: secrets are 256-bit random, so a fast hash is enough.
    secret_hash   BYTEA       NOT NULL UNIQUE,
    scopes        TEXT[]      NOT NULL DEFAULT '{}',
    created_by    TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE scim_tokens (
    id           TEXT        PRIMARY KEY,
    tenant_id    TEXT        NOT NULL REFERENCES tenants (id),
    secret_hash  BYTEA       NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);
