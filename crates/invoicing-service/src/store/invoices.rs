//! Invoices, credit notes and their lines (`invoices`, `invoice_lines`).
//!
//! Taking charges in ([`take_in`]) is set-based — one statement per step for a whole page of
//! charges — because a billing run over ten thousand tenants opens ten thousand drafts.

use chrono::{DateTime, Utc};
use ids::{InvoiceId, RunId, TenantId};
use pricing::Decimal;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::assembly::{Charge, PeriodCharges};
use crate::domain::lifecycle::{Kind, Status};
use crate::domain::parties::Snapshot;
use crate::domain::tax::TaxedLine;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub id: InvoiceId,
    pub tenant_id: TenantId,
    pub subscription_id: String,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    pub follows: Option<InvoiceId>,
    pub kind: Kind,
    pub status: Status,
    pub currency: String,
    pub billing_run_id: String,
    pub created_at: DateTime<Utc>,
    pub finalize_after: DateTime<Utc>,
    pub number: Option<String>,
    pub issued_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub net_minor: Option<i64>,
    pub tax_minor: Option<i64>,
    pub total_minor: Option<i64>,
    pub amount_due_minor: Option<i64>,
    pub document: Option<Json<Snapshot>>,
    pub pdf_key: Option<String>,
    pub pdf_sha256: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub payment_intent_id: Option<String>,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: Option<String>,
    pub payment_mismatch: Option<String>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, subscription_id, period_start, period_end, follows, kind, \
    status, currency, billing_run_id, created_at, finalize_after, number, issued_at, due_at, \
    net_minor, tax_minor, total_minor, amount_due_minor, document, pdf_key, pdf_sha256, \
    paid_at, payment_intent_id, voided_at, void_reason, payment_mismatch"
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub charge_id: String,
    pub part: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_amount: Option<Decimal>,
    pub amount_minor: i64,
    pub net_minor: Option<i64>,
    pub tax_minor: Option<i64>,
    pub gross_minor: Option<i64>,
}

/// Where new charges of a period go.
struct Target {
    key: usize,
    invoice: InvoiceId,
}

/// Takes `periods` (one page of a run's charges) into drafts, in the caller's transaction:
/// a charge already on a document is skipped; a period without an invoice gets a draft
/// finalizing at `finalize_after`; a period whose invoice is finalized gets (or joins) a
/// follow-up draft. Returns the drafts it opened.
pub async fn take_in(
    conn: &mut PgConnection,
    run: &RunId,
    periods: &[PeriodCharges],
    finalize_after: DateTime<Utc>,
) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    let periods = without_taken(conn, periods).await?;
    if periods.is_empty() {
        return Ok(Vec::new());
    }
    // Originals, in key order (`by_period` sorts) so concurrent intakes queue, not deadlock.
    let ids: Vec<InvoiceId> = periods.iter().map(|_| InvoiceId::generate()).collect();
    let tenants: Vec<&str> = periods.iter().map(|p| p.key.tenant_id.as_str()).collect();
    let subs: Vec<&str> = periods
        .iter()
        .map(|p| p.key.subscription_id.as_str())
        .collect();
    let starts: Vec<DateTime<Utc>> = periods.iter().map(|p| p.key.period_start).collect();
    let ends: Vec<Option<DateTime<Utc>>> = periods.iter().map(|p| p.period_end).collect();
    let currencies: Vec<&str> = periods.iter().map(|p| p.currency.as_str()).collect();
    let mut opened: Vec<InvoiceRow> = sqlx::query_as(concat!(
        "INSERT INTO invoices (id, tenant_id, subscription_id, period_start, period_end, \
                               currency, billing_run_id, finalize_after) \
         SELECT i, t, s, p, e, c, $7, $8 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
                     $5::timestamptz[], $6::text[]) AS k(i, t, s, p, e, c) \
         ON CONFLICT (tenant_id, subscription_id, period_start) WHERE follows IS NULL \
         DO NOTHING RETURNING ",
        columns!(),
        ""
    ))
    .bind(&ids)
    .bind(&tenants)
    .bind(&subs)
    .bind(&starts)
    .bind(&ends)
    .bind(&currencies)
    .bind(run)
    .bind(finalize_after)
    .fetch_all(&mut *conn)
    .await?;
    // Lock every original: a draft stays a draft until the lines are in.
    let originals: Vec<(InvoiceId, TenantId, String, DateTime<Utc>, Status)> = sqlx::query_as(
        "SELECT i.id, i.tenant_id, i.subscription_id, i.period_start, i.status \
         FROM invoices i JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(t, s, p) \
           ON i.tenant_id = k.t AND i.subscription_id = k.s AND i.period_start = k.p \
         WHERE i.follows IS NULL ORDER BY i.tenant_id, i.subscription_id, i.period_start \
         FOR UPDATE OF i",
    )
    .bind(&tenants)
    .bind(&subs)
    .bind(&starts)
    .fetch_all(&mut *conn)
    .await?;
    let mut targets = Vec::with_capacity(periods.len());
    for (key, p) in periods.iter().enumerate() {
        let (id, status) = originals
            .iter()
            .find(|o| {
                o.1.as_str() == p.key.tenant_id
                    && o.2 == p.key.subscription_id
                    && o.3 == p.key.period_start
            })
            .map(|o| (o.0.clone(), o.4))
            .ok_or_else(|| sqlx::Error::RowNotFound)?;
        let invoice = if status == Status::Draft {
            id
        } else {
            let (draft, fresh) = follow_up(conn, &id, p, run, finalize_after).await?;
            opened.extend(fresh);
            draft
        };
        targets.push(Target { key, invoice });
    }
    insert_lines(conn, &periods, &targets).await?;
    Ok(opened)
}

/// `periods` without the charges already on a document (a redelivered page, a re-run).
async fn without_taken(
    conn: &mut PgConnection,
    periods: &[PeriodCharges],
) -> Result<Vec<PeriodCharges>, sqlx::Error> {
    let ids: Vec<&str> = periods
        .iter()
        .flat_map(|p| p.charges.iter().map(|c| c.id.as_str()))
        .collect();
    let taken: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT charge_id FROM invoice_lines WHERE charge_id = ANY($1::text[])")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    Ok(periods
        .iter()
        .filter_map(|p| {
            let charges: Vec<Charge> = p
                .charges
                .iter()
                .filter(|c| !taken.contains(&c.id))
                .cloned()
                .collect();
            (!charges.is_empty()).then(|| PeriodCharges {
                charges,
                ..p.clone()
            })
        })
        .collect())
}

/// The open follow-up draft of `original`, locked; a new one when there is none (returned
/// second).
async fn follow_up(
    conn: &mut PgConnection,
    original: &InvoiceId,
    p: &PeriodCharges,
    run: &RunId,
    finalize_after: DateTime<Utc>,
) -> Result<(InvoiceId, Option<InvoiceRow>), sqlx::Error> {
    let fresh: Option<InvoiceRow> = sqlx::query_as(concat!(
        "INSERT INTO invoices (id, tenant_id, subscription_id, period_start, period_end, \
                               currency, billing_run_id, finalize_after, follows) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (follows) WHERE status = 'draft' DO NOTHING RETURNING ",
        columns!(),
        ""
    ))
    .bind(InvoiceId::generate())
    .bind(&p.key.tenant_id)
    .bind(&p.key.subscription_id)
    .bind(p.key.period_start)
    .bind(p.period_end)
    .bind(p.currency.as_str())
    .bind(run)
    .bind(finalize_after)
    .bind(original)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = fresh {
        return Ok((row.id.clone(), Some(row)));
    }
    // The existing draft, locked; a finalization that got there first leaves no draft, and
    // the caller's transaction then fails and is retried (the next attempt opens a new one).
    let id: InvoiceId = sqlx::query_scalar(
        "SELECT id FROM invoices WHERE follows = $1 AND status = 'draft' FOR UPDATE",
    )
    .bind(original)
    .fetch_one(conn)
    .await?;
    Ok((id, None))
}

async fn insert_lines(
    conn: &mut PgConnection,
    periods: &[PeriodCharges],
    targets: &[Target],
) -> Result<(), sqlx::Error> {
    let mut cols = LineColumns::default();
    for t in targets {
        for c in &periods[t.key].charges {
            cols.push(&t.invoice, c);
        }
    }
    sqlx::query(
        "INSERT INTO invoice_lines (charge_id, invoice_id, part, description, quantity, \
                                    unit_amount, amount_minor) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], \
                              $6::numeric[], $7::bigint[]) \
         ON CONFLICT (charge_id) DO NOTHING",
    )
    .bind(&cols.charge)
    .bind(&cols.invoice)
    .bind(&cols.part)
    .bind(&cols.description)
    .bind(&cols.quantity)
    .bind(&cols.unit_amount)
    .bind(&cols.amount)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct LineColumns {
    charge: Vec<String>,
    invoice: Vec<String>,
    part: Vec<String>,
    description: Vec<String>,
    quantity: Vec<Decimal>,
    unit_amount: Vec<Option<Decimal>>,
    amount: Vec<i64>,
}

impl LineColumns {
    fn push(&mut self, invoice: &InvoiceId, c: &Charge) {
        self.charge.push(c.id.clone());
        self.invoice.push(invoice.to_string());
        self.part.push(c.part.clone());
        self.description.push(c.description.clone());
        self.quantity.push(c.quantity);
        self.unit_amount.push(c.unit_amount);
        self.amount.push(c.amount_minor);
    }
}

/// Drafts due for finalization at `now`, oldest first.
pub async fn due_drafts(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<InvoiceId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM invoices WHERE status = 'draft' AND finalize_after <= $1 \
         ORDER BY finalize_after, id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Documents numbered but not yet published (their PDF stored, their events sent), oldest
/// first.
pub async fn unpublished(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<InvoiceId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM invoices WHERE number IS NOT NULL AND pdf_key IS NULL \
         ORDER BY issued_at, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records a document's stored PDF.
pub async fn set_pdf(
    conn: &mut PgConnection,
    id: &InvoiceId,
    key: &str,
    sha256: &str,
) -> Result<InvoiceRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE invoices SET pdf_key = $2, pdf_sha256 = $3 WHERE id = $1 RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(key)
    .bind(sha256)
    .fetch_one(conn)
    .await
}

/// The number of invoice `id` (the original a follow-up refers to).
pub async fn number_of(
    conn: &mut PgConnection,
    id: &InvoiceId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<String>>("SELECT number FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .map(Option::flatten)
}

/// An invoice of `tenant` (any tenant's when `None`: the service's own work), locked for the
/// caller's transaction; `skip_locked` passes over one another transaction holds.
pub async fn lock(
    conn: &mut PgConnection,
    id: &InvoiceId,
    tenant: Option<&TenantId>,
    skip_locked: bool,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    macro_rules! locking {
        ($how:literal) => {
            concat!(
                "SELECT ",
                columns!(),
                " FROM invoices WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) ",
                $how
            )
        };
    }
    let sql = if skip_locked {
        locking!("FOR UPDATE SKIP LOCKED")
    } else {
        locking!("FOR UPDATE")
    };
    sqlx::query_as(sql)
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await
}

pub async fn get(
    conn: &mut PgConnection,
    id: &InvoiceId,
    tenant: Option<&TenantId>,
) -> Result<Option<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM invoices WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ))
    .bind(id)
    .bind(tenant)
    .fetch_optional(conn)
    .await
}

/// A document's lines in their printed order.
pub async fn lines(conn: &mut PgConnection, id: &InvoiceId) -> Result<Vec<LineRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT charge_id, part, description, quantity, unit_amount, amount_minor, net_minor, \
                tax_minor, gross_minor FROM invoice_lines WHERE invoice_id = $1 \
         ORDER BY CASE part WHEN 'advance' THEN 0 WHEN 'arrears' THEN 1 ELSE 2 END, \
                  length(charge_id), charge_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// Which invoices a list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant: Option<TenantId>,
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    /// Periods starting in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Invoices newest first (ids are time-ordered), before the cursor id, `limit + 1` rows.
pub async fn list(
    conn: &mut PgConnection,
    f: &Filter,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM invoices WHERE ($1::text IS NULL OR tenant_id = $1) \
         AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3) \
         AND ($4::timestamptz IS NULL OR period_start >= $4) \
         AND ($5::timestamptz IS NULL OR period_start < $5) \
         AND ($6::text IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
    ))
    .bind(&f.tenant)
    .bind(f.status)
    .bind(f.kind)
    .bind(f.from)
    .bind(f.to)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(conn)
    .await
}

/// What finalizing writes, once.
#[derive(Debug)]
pub struct Finalized<'a> {
    pub kind: Kind,
    /// `open`, or `paid` for an invoice with nothing to pay.
    pub status: Status,
    pub number: &'a str,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub totals: TaxedLine,
    pub amount_due: i64,
    pub snapshot: &'a Snapshot,
    /// Each line's tax, by charge id.
    pub lines: &'a [(String, TaxedLine)],
}

pub async fn write_finalized(
    conn: &mut PgConnection,
    id: &InvoiceId,
    f: &Finalized<'_>,
) -> Result<InvoiceRow, sqlx::Error> {
    let charge: Vec<&str> = f.lines.iter().map(|l| l.0.as_str()).collect();
    let net: Vec<i64> = f.lines.iter().map(|l| l.1.net).collect();
    let tax: Vec<i64> = f.lines.iter().map(|l| l.1.tax).collect();
    let gross: Vec<i64> = f.lines.iter().map(|l| l.1.gross).collect();
    sqlx::query(
        "UPDATE invoice_lines l SET net_minor = k.n, tax_minor = k.t, gross_minor = k.g \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS k(c, n, t, g) \
         WHERE l.charge_id = k.c",
    )
    .bind(&charge)
    .bind(&net)
    .bind(&tax)
    .bind(&gross)
    .execute(&mut *conn)
    .await?;
    let paid_at = (f.status == Status::Paid).then_some(f.issued_at);
    sqlx::query_as(concat!(
        "UPDATE invoices SET kind = $2, status = $3, number = $4, issued_at = $5, due_at = $6, \
           net_minor = $7, tax_minor = $8, total_minor = $9, amount_due_minor = $10, \
           document = $11, paid_at = $12 \
         WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(f.kind)
    .bind(f.status)
    .bind(f.number)
    .bind(f.issued_at)
    .bind(f.due_at)
    .bind(f.totals.net)
    .bind(f.totals.tax)
    .bind(f.totals.gross)
    .bind(f.amount_due)
    .bind(Json(f.snapshot))
    .bind(paid_at)
    .fetch_one(conn)
    .await
}

/// A status change after finalization (or the voiding of a draft).
#[derive(Debug, Clone, Default)]
pub struct Change<'a> {
    pub paid_at: Option<DateTime<Utc>>,
    pub payment_intent_id: Option<&'a str>,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: Option<&'a str>,
}

pub async fn set_status(
    conn: &mut PgConnection,
    id: &InvoiceId,
    status: Status,
    c: &Change<'_>,
) -> Result<InvoiceRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE invoices SET status = $2, paid_at = coalesce($3, paid_at), \
           payment_intent_id = coalesce($4, payment_intent_id), \
           voided_at = coalesce($5, voided_at), void_reason = coalesce($6, void_reason) \
         WHERE id = $1 RETURNING ",
        columns!(),
        ""
    ))
    .bind(id)
    .bind(status)
    .bind(c.paid_at)
    .bind(c.payment_intent_id)
    .bind(c.voided_at)
    .bind(c.void_reason)
    .fetch_one(conn)
    .await
}

/// Flags a payment that did not match (kept for a person; the invoice is not marked paid).
pub async fn flag_payment(
    conn: &mut PgConnection,
    id: &InvoiceId,
    what: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE invoices SET payment_mismatch = $2 WHERE id = $1")
        .bind(id)
        .bind(what)
        .execute(conn)
        .await?;
    Ok(())
}
