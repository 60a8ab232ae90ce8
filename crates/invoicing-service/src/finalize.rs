//! Finalizing: a draft becomes an issued document — taxed for its buyer as they are now,
//! numbered in its series, frozen — in one transaction, with its event. The number is taken
//! last, just before the commit, so the series' lock is held briefly and a failure anywhere
//! gives the number back (`store::numbers`).
//!
//! Which document a draft becomes: a period's own invoice is an invoice (a credit note when
//! its charges sum to less than zero; paid at once when there is nothing to pay); a follow-up
//! draft is a supplementary invoice or a credit note by the sign of its sum, and is voided
//! unnumbered when its charges cancel out (`domain::assembly`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use ids::{InvoiceId, TenantId};
use pricing::Currency;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blobs::Blobs;
use crate::domain::assembly::{Charge, Follow, PeriodKey, after_finalization};
use crate::domain::document::content;
use crate::domain::lifecycle::{Action, Kind, Status};
use crate::domain::parties::{Party, Snapshot};
use crate::domain::tax::{Parties, Treatment};
use crate::error::InvoicingError;
use crate::pdf::Fonts;
use crate::settings::Settings;
use crate::store::invoices::{self, Change, Finalized, InvoiceRow, LineRow};
use crate::store::{numbers, profiles, tax_rates};

/// How often the finalizer looks for due drafts when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// Drafts finalized (or documents published) per look.
const BATCH: i64 = 200;
/// Documents published at once: rendering is CPU work, one per core.
const PUBLISHERS: usize = 2;

#[derive(Debug, Clone)]
pub struct Finalizer {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub fonts: Arc<Fonts>,
    pub blobs: Blobs,
    /// Poked when drafts were opened (with no grace they are due at once).
    pub wake: Arc<Notify>,
}

impl Finalizer {
    /// Finalizes due drafts until `stop`.
    pub async fn serve(self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.finalize_due().await {
                tracing::warn!(error = %e, "finalizing due drafts failed; retrying");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Finalizes every draft due now and publishes every numbered document not yet published
    /// (this pass's and any an earlier pass could not): numbering runs one at a time (the
    /// series is serial anyway), publishing beside it, `PUBLISHERS` documents at once.
    /// Returns how many drafts it finalized.
    pub async fn finalize_due(&self) -> Result<usize, InvoicingError> {
        let numbering_done = std::sync::atomic::AtomicBool::new(false);
        // Poked after each document numbered, and when numbering ends (a poke nobody waits
        // for is kept, so none is missed).
        let numbered_one = Notify::new();
        let numbering = async {
            let r = self.number_due(&numbered_one).await;
            numbering_done.store(true, std::sync::atomic::Ordering::Release);
            numbered_one.notify_one();
            r
        };
        let publishing = async {
            loop {
                // Read before looking, so a document numbered after the look is not missed.
                let last_round = numbering_done.load(std::sync::atomic::Ordering::Acquire);
                let published = self.publish_pending().await?;
                if published == 0 {
                    if last_round {
                        return Ok::<(), InvoicingError>(());
                    }
                    // Numbering is still going: wait for its next commit.
                    numbered_one.notified().await;
                }
            }
        };
        let (numbered, published) = tokio::join!(numbering, publishing);
        published?;
        numbered
    }

    /// Publishes the numbered documents not yet published, `PUBLISHERS` at a time; how many.
    async fn publish_pending(&self) -> Result<usize, InvoicingError> {
        use futures::StreamExt;
        let ids = {
            let mut conn = self.pool.acquire().await?;
            invoices::unpublished(&mut conn, BATCH).await?
        };
        let results: Vec<_> = futures::stream::iter(ids)
            .map(|id| async move { self.publish(&id).await })
            .buffer_unordered(PUBLISHERS)
            .collect()
            .await;
        let mut published = 0;
        for r in results {
            published += usize::from(r?.is_some());
        }
        Ok(published)
    }

    async fn number_due(&self, numbered_one: &Notify) -> Result<usize, InvoicingError> {
        let mut done = 0;
        loop {
            let due = {
                let mut conn = self.pool.acquire().await?;
                invoices::due_drafts(&mut conn, Utc::now(), BATCH).await?
            };
            let mut progressed = false;
            for id in &due {
                // Another replica (or an operator's finalize) holding it: skip it.
                if let Some(row) = self.number(id, None, true).await?
                    && row.status != Status::Draft
                {
                    done += 1;
                    progressed = true;
                    numbered_one.notify_one();
                }
            }
            if due.len() < BATCH as usize || !progressed {
                return Ok(done);
            }
        }
    }

    /// Finalizes draft `id` (of `tenant`, when given) and publishes it. `Ok(None)`: no such
    /// invoice, or `skip_locked` and another transaction holds it. A finalized invoice is
    /// returned unchanged (finalizing twice is a no-op).
    pub async fn finalize(
        &self,
        id: &InvoiceId,
        tenant: Option<&TenantId>,
        skip_locked: bool,
    ) -> Result<Option<InvoiceRow>, InvoicingError> {
        let Some(row) = self.number(id, tenant, skip_locked).await? else {
            return Ok(None);
        };
        if row.number.is_none() || row.pdf_key.is_some() {
            return Ok(Some(row));
        }
        // Its PDF and events; if this fails, the finalizer's next pass publishes it.
        match self.publish(id).await {
            Ok(Some(published)) => Ok(Some(published)),
            Ok(None) => Ok(Some(row)),
            Err(e) => {
                tracing::warn!(invoice = %id, error = %e, "publishing failed; retried later");
                Ok(Some(row))
            }
        }
    }

    /// The first step: draft `id` taxed, frozen and numbered (or voided unnumbered when its
    /// charges cancel out), in one transaction.
    async fn number(
        &self,
        id: &InvoiceId,
        tenant: Option<&TenantId>,
        skip_locked: bool,
    ) -> Result<Option<InvoiceRow>, InvoicingError> {
        let mut tx = self.pool.begin().await?;
        let Some(inv) = invoices::lock(&mut tx, id, tenant, skip_locked).await? else {
            return Ok(None);
        };
        let t = inv.status.apply(Action::Finalize)?;
        if !t.changed {
            return Ok(Some(inv));
        }
        let lines = invoices::lines(&mut tx, id).await?;
        let row = self.issue(&mut tx, inv, &lines, Utc::now()).await?;
        tx.commit().await?;
        if row.number.is_some() {
            metrics::counter!("invoicing_documents_finalized_total", "kind" => row.kind.as_str())
                .increment(1);
        }
        Ok(Some(row))
    }

    async fn issue(
        &self,
        tx: &mut PgConnection,
        inv: InvoiceRow,
        lines: &[LineRow],
        now: DateTime<Utc>,
    ) -> Result<InvoiceRow, InvoicingError> {
        let currency = Currency::parse(&inv.currency)
            .map_err(|_| InvoicingError::FailedPrecondition("unknown currency".into()))?;
        let charges: Vec<Charge> = lines.iter().map(|l| charge(&inv, l, currency)).collect();
        let follow = after_finalization(&charges)
            .map_err(|e| InvoicingError::FailedPrecondition(e.to_string()))?;
        let kind = match (inv.follows.is_some(), follow) {
            (true, Follow::Nothing) => {
                // Late charges that cancel out: nothing to issue.
                let reason = "its charges cancel out";
                let row = invoices::set_status(
                    tx,
                    &inv.id,
                    Status::Void,
                    &Change {
                        voided_at: Some(now),
                        void_reason: Some(reason),
                        ..Change::default()
                    },
                )
                .await?;
                return Ok(row);
            }
            (_, Follow::CreditNote) => Kind::CreditNote,
            (_, Follow::Invoice | Follow::Nothing) => Kind::Invoice,
        };
        let profile = profiles::get(tx, &inv.tenant_id).await?;
        let (buyer, exempt) = match profile {
            Some(p) => (p.profile().party, p.tax_exempt),
            // No profile yet: the tenant id names the buyer, untaxed.
            None => (
                Party {
                    name: inv.tenant_id.to_string(),
                    ..Party::default()
                },
                false,
            ),
        };
        let rates = tax_rates::live_in(tx, &buyer.country).await?;
        let seller = &self.settings.seller;
        let treatment = Treatment::of(
            &Parties {
                seller_country: &seller.country,
                buyer_country: &buyer.country,
                buyer_region: buyer.region.as_deref(),
                buyer_tax_id: buyer.tax_id.as_deref(),
                buyer_exempt: exempt,
            },
            &rates,
        );
        let key = PeriodKey {
            tenant_id: inv.tenant_id.to_string(),
            subscription_id: inv.subscription_id.clone(),
            period_start: inv.period_start,
        };
        let doc = content(key, currency, &charges, &treatment)?;
        let snapshot = Snapshot::new(seller.clone(), buyer, &doc.summary, doc.notice);
        let taxed: Vec<(String, _)> = doc
            .lines
            .iter()
            .map(|l| (l.charge_id.clone(), l.amount))
            .collect();
        let status = if kind == Kind::Invoice && doc.amount_due == 0 {
            Status::Paid
        } else {
            Status::Open
        };
        let due_at = match kind {
            Kind::Invoice => now + self.settings.payment_terms,
            Kind::CreditNote => now,
        };
        let year = now.year();
        let seq = numbers::allocate(tx, kind, year).await?;
        let number = self.settings.numbers(kind).render(year, seq);
        let row = invoices::write_finalized(
            tx,
            &inv.id,
            &Finalized {
                kind,
                status,
                number: &number,
                issued_at: now,
                due_at,
                totals: doc.totals,
                amount_due: doc.amount_due,
                snapshot: &snapshot,
                lines: &taxed,
            },
        )
        .await?;
        Ok(row)
    }
}

/// A stored line as the domain's charge.
fn charge(inv: &InvoiceRow, l: &LineRow, currency: Currency) -> Charge {
    Charge {
        id: l.charge_id.clone(),
        tenant_id: inv.tenant_id.to_string(),
        subscription_id: inv.subscription_id.clone(),
        period_start: Some(inv.period_start),
        period_end: inv.period_end,
        part: l.part.clone(),
        description: l.description.clone(),
        quantity: l.quantity,
        unit_amount: l.unit_amount,
        amount_minor: l.amount_minor,
        currency,
    }
}
