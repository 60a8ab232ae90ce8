-- SCIM groups, whose members get the role the group's name maps to. Role bindings record where
-- they came from ('direct', or the group id) so leaving a group removes only what it gave.
CREATE TABLE scim_groups (
    id            TEXT        PRIMARY KEY,
    tenant_id     TEXT        NOT NULL REFERENCES tenants (id),
    display_name  TEXT        NOT NULL,
    external_id   TEXT,
    role          TEXT,
    version       BIGINT      NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX scim_groups_tenant_name ON scim_groups (tenant_id, lower(display_name));

CREATE TABLE scim_group_members (
    group_id  TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);

ALTER TABLE role_bindings ADD COLUMN source TEXT NOT NULL DEFAULT 'direct';
ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_pkey;
ALTER TABLE role_bindings ADD PRIMARY KEY (tenant_id, user_id, role, source);
