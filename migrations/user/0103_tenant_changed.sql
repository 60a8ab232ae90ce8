-- Every change to a tenant tells the user-service replicas to forget their cached copy
-- (crates/user-service/src/store/tenant_cache.rs). NOTIFY is delivered when the writing
-- transaction commits, and a trigger catches every write path, an operator's psql included.
CREATE FUNCTION notify_tenant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenant_changed', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END
$$;

CREATE TRIGGER tenant_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION notify_tenant_changed();
