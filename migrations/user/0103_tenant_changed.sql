-- Every change to a tenant tells the user-service replicas to forget their cached copy
-- (crates/user-service/src/store/tenant_cache.rs). NOTIFY is delivered when the writing
-- transaction commits, and a trigger catches every write path, an operator's psql included.
CREATE FUNCTION notify_tenant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_changed', OLD.id);
    RETURN NULL;
END
$$;

-- Inserts need no notice: unknown ids are never cached.
CREATE TRIGGER tenant_changed AFTER UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_changed();
