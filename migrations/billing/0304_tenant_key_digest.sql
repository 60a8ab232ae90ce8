-- A run's tenant set is keyed by the SHA-256 of its sorted ids joined by newlines (hex), not
-- by the ids themselves: a run naming ~70 tenants made the key exceed the btree row limit.
-- Same formula as `store::runs::tenant_key`.
UPDATE billing_runs
SET tenant_key = encode(sha256(convert_to(array_to_string(tenant_ids, E'\n'), 'UTF8')), 'hex');
