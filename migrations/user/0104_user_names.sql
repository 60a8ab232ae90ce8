-- SCIM's userName is any string unique in the tenant (Entra ID sends UPNs, some identity
-- providers employee numbers); it is no longer the e-mail. A user may have no e-mail at all
-- (then it gets no e-mail notifications); e-mails that exist stay unique per tenant.
ALTER TABLE users ADD COLUMN user_name TEXT;
UPDATE users SET user_name = email;
ALTER TABLE users ALTER COLUMN user_name SET NOT NULL;
CREATE UNIQUE INDEX users_tenant_user_name ON users (tenant_id, lower(user_name));
DROP INDEX users_tenant_email;
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, lower(email)) WHERE email <> '';
