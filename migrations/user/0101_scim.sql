-- SCIM: name parts for provisioned users, and the per-tenant SCIM bearer tokens' lookups.
ALTER TABLE users ADD COLUMN given_name  TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN family_name TEXT NOT NULL DEFAULT '';
-- The identity provider's id is unique per tenant when present.
CREATE UNIQUE INDEX users_tenant_external_id ON users (tenant_id, external_id) WHERE external_id IS NOT NULL;
