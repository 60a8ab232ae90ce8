//! The assembler: turns each completed billing run (recorded by the `billing.run.completed`
//! consumer) into drafts, one page of the run's charges (billing's `ListCharges`) per
//! transaction — the drafts, their lines, their `invoice.created` events and the run's
//! cursor commit together, so a crash anywhere resumes after the last page taken in, and a
//! page taken in twice changes nothing (a charge is on one document only).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use platform::events::enqueue;
use platform::grpc::{Caller, Channel};
use pricing::Currency;
use rpc::billing::v1 as billing;
use rpc::billing::v1::billing_service_client::BillingServiceClient;
use rpc::common::v1::PageRequest;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::assembly::{Charge, by_period};
use crate::error::InvoicingError;
use crate::events;
use crate::settings::Settings;
use crate::store::{invoices, runs};

/// How often the assembler looks for runs when nothing wakes it.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Assembler {
    pub pool: PgPool,
    pub billing: BillingServiceClient<Channel>,
    pub settings: Arc<Settings>,
    /// Poked by the consumer when a run completed.
    pub wake: Arc<Notify>,
    /// Pokes the finalizer when drafts were opened.
    pub finalizer: Arc<Notify>,
}

impl Assembler {
    pub async fn serve(self, stop: CancellationToken) {
        loop {
            loop {
                match self.step().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "taking in billing charges failed; retrying");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Takes in every pending run; returns the pages taken in (tests).
    pub async fn drain(&self) -> Result<usize, InvoicingError> {
        let mut pages = 0;
        while self.step().await? {
            pages += 1;
        }
        Ok(pages)
    }

    /// Takes in one page of the oldest pending run; false when no run is pending.
    async fn step(&self) -> Result<bool, InvoicingError> {
        let mut tx = self.pool.begin().await?;
        let Some((run, cursor)) = runs::claim(&mut tx).await? else {
            return Ok(false);
        };
        let mut req = tonic::Request::new(billing::ListChargesRequest {
            run_id: run.to_string(),
            tenant_id: None,
            page: Some(PageRequest {
                limit: platform::paging::MAX_LIMIT as u32,
                cursor,
            }),
        });
        Caller::service("invoicing-service", Some(run.to_string())).apply(&mut req);
        let page = match self.billing.clone().list_charges(req).await {
            Ok(page) => page.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::error!(%run, "billing does not know this run; nothing to invoice");
                runs::advance(&mut tx, &run, "", true).await?;
                tx.commit().await?;
                return Ok(true);
            }
            Err(s) => {
                return Err(InvoicingError::FailedPrecondition(format!(
                    "billing ListCharges: {}: {}",
                    s.code(),
                    s.message()
                )));
            }
        };
        let charges = page
            .charges
            .into_iter()
            .map(charge)
            .collect::<Result<Vec<_>, _>>()?;
        let (periods, unkeyed) =
            by_period(charges).map_err(|e| InvoicingError::FailedPrecondition(e.to_string()))?;
        if !unkeyed.is_empty() {
            tracing::info!(%run, charges = unkeyed.len(), "charges without a subscription period are not invoiced");
        }
        let after = Utc::now()
            + chrono::Duration::from_std(self.settings.grace).unwrap_or(chrono::Duration::zero());
        let opened = invoices::take_in(&mut tx, &run, &periods, after).await?;
        for row in &opened {
            enqueue(&mut tx, &events::created(row)).await?;
        }
        let info = page.page.unwrap_or_default();
        runs::advance(&mut tx, &run, &info.next_cursor, !info.has_more).await?;
        tx.commit().await?;
        metrics::counter!("invoicing_drafts_opened_total").increment(opened.len() as u64);
        if !opened.is_empty() {
            self.finalizer.notify_one();
        }
        if !info.has_more {
            tracing::info!(%run, "billing run invoiced");
        }
        Ok(true)
    }
}

fn time(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

/// A billing charge as the domain's charge.
fn charge(c: billing::Charge) -> Result<Charge, InvoicingError> {
    let bad =
        |what: &str| InvoicingError::FailedPrecondition(format!("billing charge {}: {what}", c.id));
    let amount = c.amount.clone().ok_or_else(|| bad("no amount"))?;
    let currency = Currency::parse(&amount.currency).map_err(|_| bad("unknown currency"))?;
    let quantity = pricing::wire::decimal("quantity", &c.quantity)
        .map_err(|_| bad("quantity"))?
        .unwrap_or(pricing::Decimal::ONE);
    let unit_amount =
        pricing::wire::decimal("unit_amount", &c.unit_amount).map_err(|_| bad("unit amount"))?;
    let period = c.period.unwrap_or_default();
    Ok(Charge {
        period_start: time(period.start),
        period_end: time(period.end),
        id: c.id,
        tenant_id: c.tenant_id,
        subscription_id: c.subscription_id,
        part: c.part,
        description: c.description,
        quantity,
        unit_amount,
        amount_minor: amount.amount_cents,
        currency,
    })
}
