-- The e-mail's SCIM `type` (work, home, …) and `primary` flag, as the identity provider sent
-- them, so a user reads back as it was written.
ALTER TABLE users
    ADD COLUMN email_type    TEXT    NOT NULL DEFAULT 'work',
    ADD COLUMN email_primary BOOLEAN NOT NULL DEFAULT true;
