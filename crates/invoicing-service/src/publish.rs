//! Publishing, the second step of finalizing: a numbered document's PDF is rendered (from what
//! the document froze, so any re-render is byte-identical), stored in the blob store, and its
//! key and SHA-256 recorded together with the document's events (`invoice.ready`,
//! `credit_note.created`, `invoice.paid` for one with nothing to pay) in one transaction.
//!
//! Kept apart from numbering so that the number series' lock is never held while a PDF
//! renders: numbering is quick and serial, rendering runs beside it. A crash between the two
//! leaves a numbered document without a PDF, which the finalizer publishes on its next pass.

use ids::InvoiceId;
use platform::events::enqueue;
use pricing::Currency;
use sqlx::PgConnection;

use crate::blobs::pdf_key;
use crate::domain::lifecycle::Status;
use crate::domain::tax::TaxedLine;
use crate::error::InvoicingError;
use crate::events;
use crate::finalize::Finalizer;
use crate::pdf::{Fonts, Rendered, Sheet, SheetLine, render};
use crate::store::invoices::{self, InvoiceRow, LineRow};

impl Finalizer {
    /// Publishes document `id` if it is numbered and not yet published; `Ok(None)` when there
    /// is nothing to do (or another replica holds it).
    pub async fn publish(&self, id: &InvoiceId) -> Result<Option<InvoiceRow>, InvoicingError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = invoices::lock(&mut tx, id, None, true).await? else {
            return Ok(None);
        };
        if row.number.is_none() || row.pdf_key.is_some() {
            return Ok(None);
        }
        let lines = invoices::lines(&mut tx, id).await?;
        let rendered = self.render(&mut tx, &row, &lines).await?;
        let key = pdf_key(&row.id);
        self.blobs
            .put(&key, rendered.bytes)
            .await
            .map_err(|e| InvoicingError::Unavailable(e.to_string()))?;
        let row = invoices::set_pdf(&mut tx, id, &key, &rendered.sha256).await?;
        // Voided in the moment between the two steps: it is not announced as due.
        if row.status != Status::Void {
            let snapshot = row.document.as_ref().map(|d| &d.0);
            for event in events::issued(&row, snapshot) {
                enqueue(&mut tx, &event).await?;
            }
        }
        tx.commit().await?;
        metrics::counter!("invoicing_pdfs_stored_total").increment(1);
        Ok(Some(row))
    }

    /// Renders `row`'s PDF as it was finalized, on a blocking thread (it is CPU work).
    pub async fn render(
        &self,
        conn: &mut PgConnection,
        row: &InvoiceRow,
        lines: &[LineRow],
    ) -> Result<Rendered, InvoicingError> {
        let follows = match &row.follows {
            Some(original) => invoices::number_of(conn, original).await?,
            None => None,
        };
        let (fonts, row, lines) = (self.fonts.clone(), row.clone(), lines.to_vec());
        tokio::task::spawn_blocking(move || render_document(&fonts, &row, &lines, follows))
            .await
            .map_err(|e| InvoicingError::Unavailable(format!("renderer: {e}")))?
    }
}

/// The PDF of a finalized document, from what it froze.
fn render_document(
    fonts: &Fonts,
    row: &InvoiceRow,
    lines: &[LineRow],
    follows: Option<String>,
) -> Result<Rendered, InvoicingError> {
    let broken = |what: &str| InvoicingError::FailedPrecondition(format!("{}: {what}", row.id));
    let doc = &row
        .document
        .as_ref()
        .ok_or_else(|| broken("not finalized"))?
        .0;
    let currency = Currency::parse(&row.currency).map_err(|_| broken("currency"))?;
    let sheet = Sheet {
        kind: row.kind,
        number: row.number.as_deref().ok_or_else(|| broken("no number"))?,
        issued_at: row.issued_at.ok_or_else(|| broken("no issue date"))?,
        due_at: row.due_at,
        period_start: row.period_start,
        period_end: row.period_end,
        follows: follows.as_deref(),
        seller: &doc.seller,
        buyer: &doc.buyer,
        currency,
        lines: lines
            .iter()
            .map(|l| SheetLine {
                description: &l.description,
                quantity: l.quantity,
                unit_amount: l.unit_amount,
                net: l.net_minor.unwrap_or(l.amount_minor),
                tax: l.tax_minor.unwrap_or(0),
            })
            .collect(),
        summary: &doc.tax_summary,
        totals: TaxedLine {
            net: row.net_minor.unwrap_or(0),
            tax: row.tax_minor.unwrap_or(0),
            gross: row.total_minor.unwrap_or(0),
        },
        amount_due: row.amount_due_minor.unwrap_or(0),
        paid: row.paid_at.is_some() && row.paid_at == row.issued_at,
        notice: doc.notice.as_deref(),
    };
    Ok(render(fonts, &sheet))
}
