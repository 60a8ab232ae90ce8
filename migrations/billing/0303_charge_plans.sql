-- Which plan version and part of the period a line bills: a plan change mid-period gives one
-- line per plan version, and corrections compare lines by (tenant, plan, version, price).
ALTER TABLE charges
    ADD COLUMN plan_id      text        NOT NULL DEFAULT '',
    ADD COLUMN plan_version integer     NOT NULL DEFAULT 0,
    ADD COLUMN starts_at    timestamptz,
    ADD COLUMN ends_at      timestamptz;
