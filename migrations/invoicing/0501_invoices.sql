-- Customers, tax rates, invoices and their lines.

-- Invoices and credit notes are numbered in two series, each gapless per year.
ALTER TABLE invoice_number_sequences ADD COLUMN series text NOT NULL DEFAULT 'invoice'
    CHECK (series IN ('invoice', 'credit_note'));
ALTER TABLE invoice_number_sequences DROP CONSTRAINT invoice_number_sequences_pkey;
ALTER TABLE invoice_number_sequences ADD PRIMARY KEY (series, year);

-- The tenant as the buyer on its invoices. Copied onto an invoice when it is finalized, so a
-- later change never alters an issued invoice.
CREATE TABLE billing_profiles (
    tenant_id     text PRIMARY KEY,
    legal_name    text NOT NULL,
    address_lines text[] NOT NULL DEFAULT '{}',
    country       text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    region        text,
    tax_id        text,
    -- Set by the operator only: a tenant cannot exempt itself from tax.
    tax_exempt    boolean NOT NULL DEFAULT false,
    billing_email text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Operator-configured rates. A rate is never edited (issued invoices name it); a new rate for
-- the same place replaces it by archiving the old one.
CREATE TABLE tax_rates (
    id          text PRIMARY KEY,
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    region      text,
    percentage  numeric NOT NULL CHECK (percentage >= 0 AND percentage <= 100),
    name        text NOT NULL,
    inclusive   boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz
);

-- At most one live rate per place.
CREATE UNIQUE INDEX tax_rates_live ON tax_rates (country, coalesce(region, ''))
    WHERE archived_at IS NULL;

-- Which billing runs have been turned into invoices (`billing.run.completed`), and how far.
CREATE TABLE invoicing_runs (
    run_id      text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    -- The last ListCharges page cursor taken in (a restart goes on after it).
    cursor      text NOT NULL DEFAULT '',
    done_at     timestamptz
);

CREATE INDEX invoicing_runs_pending ON invoicing_runs (received_at) WHERE done_at IS NULL;

-- Invoices and credit notes. A subscription period's own invoice has `follows` NULL and is
-- unique on its period key; what is billed of the period after that invoice is finalized
-- goes on a follow-up document (`follows` = the original): an invoice when it sums to more
-- than zero, a credit note when to less.
CREATE TABLE invoices (
    id                text PRIMARY KEY,
    tenant_id         text NOT NULL,
    subscription_id   text NOT NULL,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz,
    follows           text REFERENCES invoices (id),
    kind              text NOT NULL DEFAULT 'invoice' CHECK (kind IN ('invoice', 'credit_note')),
    status            text NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency          text NOT NULL,
    -- The first run that billed into it.
    billing_run_id    text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finalize_after    timestamptz NOT NULL,
    -- Set at finalization, never changed after.
    number            text UNIQUE,
    issued_at         timestamptz,
    due_at            timestamptz,
    net_minor         bigint,
    tax_minor         bigint,
    total_minor       bigint,
    amount_due_minor  bigint,
    -- What was printed: seller, buyer, tax summary, notice (JSON, as finalized).
    document          jsonb,
    pdf_key           text,
    pdf_sha256        text,
    -- Life after finalization.
    paid_at           timestamptz,
    payment_intent_id text,
    voided_at         timestamptz,
    void_reason       text,
    -- A payment that did not match the amount due (flagged, not marked paid).
    payment_mismatch  text,
    CHECK ((status = 'draft') = (number IS NULL) OR status = 'void')
);

CREATE UNIQUE INDEX invoices_period ON invoices (tenant_id, subscription_id, period_start)
    WHERE follows IS NULL;
-- One follow-up draft per original at a time.
CREATE UNIQUE INDEX invoices_follow_draft ON invoices (follows) WHERE status = 'draft';
CREATE INDEX invoices_tenant ON invoices (tenant_id, id);
CREATE INDEX invoices_due_drafts ON invoices (finalize_after) WHERE status = 'draft';
-- Finalized, its PDF not yet stored (finalizing is two steps: numbered, then published).
CREATE INDEX invoices_unpublished ON invoices (issued_at) WHERE number IS NOT NULL AND pdf_key IS NULL;

-- A charge is on one document only.
CREATE TABLE invoice_lines (
    charge_id    text PRIMARY KEY,
    invoice_id   text NOT NULL REFERENCES invoices (id),
    part         text NOT NULL,
    description  text NOT NULL,
    quantity     numeric NOT NULL,
    unit_amount  numeric,
    amount_minor bigint NOT NULL,
    -- Set at finalization (tax depends on the buyer as it is then).
    net_minor    bigint,
    tax_minor    bigint,
    gross_minor  bigint
);

CREATE INDEX invoice_lines_invoice ON invoice_lines (invoice_id);
