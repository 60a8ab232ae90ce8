-- Whether the identity provider asserted the SCIM `active` attribute. A PATCH that removes
-- `active` leaves it unassigned (RFC 7644 §3.5.2.2): the user stays active — the state of a
-- user nobody deactivated — and `active` is left out of the user's representation until an
-- identity provider sets it again.
ALTER TABLE users ADD COLUMN active_assigned BOOLEAN NOT NULL DEFAULT true;
