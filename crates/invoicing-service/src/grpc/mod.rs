//! `saas.invoicing.v1.InvoicingService`: transport only. Every call is scoped by the verified
//! caller's tenant (another tenant's invoice answers NOT_FOUND); what changes money — finalize,
//! void, mark uncollectible or paid, tax rates, a tenant's tax exemption — is the operator's.

mod wire;

use chrono::Utc;
use event_types::PaymentSucceeded;
use ids::{InvoiceId, TaxRateId};
use platform::events::enqueue;
use platform::grpc::Caller;
use platform::paging;
use rpc::common::v1::PageResponse;
use rpc::invoicing::v1 as pb;
use rpc::invoicing::v1::invoicing_service_server::InvoicingService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::domain::lifecycle::{Action, Status as InvoiceStatus};
use crate::domain::parties::{BillingProfile, Party, check_rate};
use crate::domain::tax::TaxRate;
use crate::error::InvoicingError;
use crate::events::{self, Paid};
use crate::finalize::Finalizer;
use crate::store::invoices::{self, Change, Filter};
use crate::store::{profiles, tax_rates};

pub use wire::invoice_pb;

#[derive(Debug, Clone)]
pub struct InvoicingApi {
    pub pool: PgPool,
    pub finalizer: Finalizer,
}

type Reply<T> = Result<Response<T>, Status>;

/// The largest piece of a PDF in one message.
const PDF_CHUNK: usize = 64 * 1024;
type Result<T, E = InvoicingError> = std::result::Result<T, E>;

fn invoice_id(s: &str) -> Result<InvoiceId> {
    InvoiceId::parse(s).map_err(|_| InvoicingError::NotFound("invoice"))
}

impl InvoicingApi {
    async fn get(&self, c: &Caller, r: pb::GetInvoiceRequest) -> Result<pb::Invoice> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = invoice_id(&r.invoice_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = invoices::get(&mut conn, &id, Some(&tenant))
            .await?
            .ok_or(InvoicingError::NotFound("invoice"))?;
        let lines = invoices::lines(&mut conn, &id).await?;
        Ok(invoice_pb(row, lines))
    }

    async fn list(
        &self,
        c: &Caller,
        r: pb::ListInvoicesRequest,
    ) -> Result<pb::ListInvoicesResponse> {
        // The operator may list every tenant's; anyone else names their own.
        let tenant = if r.tenant_id.is_empty() && c.is_operator() {
            None
        } else {
            Some(c.scope(&r.tenant_id)?)
        };
        let period = r.period.unwrap_or_default();
        let filter = Filter {
            tenant,
            status: wire::status(r.status()),
            kind: wire::kind(r.kind()),
            from: wire::time("period.start", &period.start)?,
            to: wire::time("period.end", &period.end)?,
        };
        let page = r.page.unwrap_or_default();
        let limit = paging::limit(page.limit);
        let before = paging::after(&page.cursor)?;
        let mut conn = self.pool.acquire().await?;
        let rows = invoices::list(&mut conn, &filter, before.as_deref(), limit).await?;
        let page = paging::page(rows, limit, |r| r.id.to_string());
        let mut out = Vec::with_capacity(page.rows.len());
        for row in page.rows {
            // Lists carry no lines; GetInvoice does.
            out.push(invoice_pb(row, Vec::new()));
        }
        Ok(pb::ListInvoicesResponse {
            invoices: out,
            page: Some(PageResponse {
                next_cursor: page.next_cursor,
                has_more: page.has_more,
            }),
        })
    }

    async fn finalize(&self, c: &Caller, r: pb::InvoiceActionRequest) -> Result<pb::Invoice> {
        c.require(authz::Role::PlatformAdmin)?;
        let tenant = c.scope(&r.tenant_id)?;
        let id = invoice_id(&r.invoice_id)?;
        self.finalizer
            .finalize(&id, Some(&tenant), false)
            .await?
            .ok_or(InvoicingError::NotFound("invoice"))?;
        self.get(
            c,
            pb::GetInvoiceRequest {
                tenant_id: r.tenant_id,
                invoice_id: r.invoice_id,
            },
        )
        .await
    }

    /// Void or mark uncollectible.
    async fn settle(
        &self,
        c: &Caller,
        r: pb::InvoiceActionRequest,
        action: Action,
    ) -> Result<pb::Invoice> {
        c.require(authz::Role::PlatformAdmin)?;
        let tenant = c.scope(&r.tenant_id)?;
        let id = invoice_id(&r.invoice_id)?;
        if r.reason.chars().count() > 500 || r.reason.chars().any(char::is_control) {
            return Err(InvoicingError::invalid(
                "reason",
                "at most 500 printable characters",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let inv = invoices::lock(&mut tx, &id, Some(&tenant), false)
            .await?
            .ok_or(InvoicingError::NotFound("invoice"))?;
        let t = inv.status.apply(action)?;
        if t.changed {
            let now = Utc::now();
            let reason = wire::some(r.reason).unwrap_or_else(|| "voided by the operator".into());
            let change = match action {
                Action::Void => Change {
                    voided_at: Some(now),
                    void_reason: Some(&reason),
                    ..Change::default()
                },
                _ => Change::default(),
            };
            let row = invoices::set_status(&mut tx, &id, t.to, &change).await?;
            if t.to == InvoiceStatus::Void {
                enqueue(&mut tx, &events::voided(&row)).await?;
            }
        }
        let lines = invoices::lines(&mut tx, &id).await?;
        let row = invoices::get(&mut tx, &id, Some(&tenant))
            .await?
            .ok_or(InvoicingError::NotFound("invoice"))?;
        tx.commit().await?;
        Ok(invoice_pb(row, lines))
    }

    async fn mark_paid(&self, c: &Caller, r: pb::MarkPaidRequest) -> Result<pb::Invoice> {
        c.require(authz::Role::PlatformAdmin)?;
        let tenant = c.scope(&r.tenant_id)?;
        let id = invoice_id(&r.invoice_id)?;
        let intent = wire::some(r.payment_intent_id.clone())
            .ok_or_else(|| InvoicingError::invalid("payment_intent_id", "required"))?;
        if intent.len() > 128 || intent.chars().any(char::is_control) {
            return Err(InvoicingError::invalid(
                "payment_intent_id",
                "at most 128 printable characters",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let inv = invoices::get(&mut tx, &id, Some(&tenant))
            .await?
            .ok_or(InvoicingError::NotFound("invoice"))?;
        let outcome = events::pay(
            &mut tx,
            &id,
            &PaymentSucceeded {
                payment_intent_id: intent,
                tenant_id: tenant.clone(),
                invoice_id: Some(id.clone()),
                amount_minor: r.amount_minor,
                currency: inv.currency,
            },
        )
        .await?;
        if let Paid::Flagged(why) = outcome {
            // Not applied: nothing of it is kept.
            return Err(InvoicingError::FailedPrecondition(why));
        }
        tx.commit().await?;
        self.get(
            c,
            pb::GetInvoiceRequest {
                tenant_id: r.tenant_id,
                invoice_id: r.invoice_id,
            },
        )
        .await
    }

    /// A finalized document's stored PDF, checked against the SHA-256 recorded with it.
    async fn pdf(&self, c: &Caller, r: pb::GetInvoiceRequest) -> Result<bytes::Bytes> {
        let tenant = c.scope(&r.tenant_id)?;
        let id = invoice_id(&r.invoice_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = invoices::get(&mut conn, &id, Some(&tenant))
            .await?
            .ok_or(InvoicingError::NotFound("invoice"))?;
        drop(conn);
        let Some(key) = row.pdf_key else {
            return Err(InvoicingError::FailedPrecondition(match row.number {
                None => "a draft has no PDF; it is rendered when the invoice is finalized".into(),
                Some(_) => "the PDF is being rendered; retry shortly".into(),
            }));
        };
        let unavailable = |why: &str| {
            tracing::error!(invoice = %id, %key, why, "stored PDF unusable");
            InvoicingError::Unavailable(format!("the stored PDF {why}"))
        };
        let bytes = self
            .finalizer
            .blobs
            .get(&key)
            .await
            .map_err(|e| InvoicingError::Unavailable(e.to_string()))?
            .ok_or_else(|| unavailable("is missing from the blob store"))?;
        let sha = crate::pdf::sha256_hex(&bytes);
        if row.pdf_sha256.as_deref() != Some(sha.as_str()) {
            return Err(unavailable("does not match its recorded SHA-256"));
        }
        Ok(bytes)
    }

    async fn get_profile(&self, c: &Caller, tenant: &str) -> Result<pb::BillingProfile> {
        let tenant = c.scope(tenant)?;
        let mut conn = self.pool.acquire().await?;
        let row = profiles::get(&mut conn, &tenant)
            .await?
            .ok_or(InvoicingError::NotFound("billing profile"))?;
        Ok(wire::profile_pb(row))
    }

    async fn put_profile(
        &self,
        c: &Caller,
        r: pb::PutBillingProfileRequest,
    ) -> Result<pb::BillingProfile> {
        let p = r
            .profile
            .ok_or_else(|| InvoicingError::invalid("profile", "required"))?;
        let tenant = c.scope(&p.tenant_id)?;
        let profile = BillingProfile {
            party: Party {
                name: p.legal_name.trim().to_string(),
                address_lines: p
                    .address_lines
                    .iter()
                    .map(|l| l.trim().to_string())
                    .collect(),
                country: p.country.trim().to_string(),
                region: wire::some(p.region),
                tax_id: wire::some(p.tax_id),
                email: wire::some(p.billing_email),
            },
            tax_exempt: p.tax_exempt,
        };
        profile.check()?;
        let mut tx = self.pool.begin().await?;
        let before = profiles::get(&mut tx, &tenant).await?;
        let exempt_before = before.is_some_and(|b| b.tax_exempt);
        // A tenant cannot exempt itself from tax (nor lift an exemption the operator set).
        if profile.tax_exempt != exempt_before && !c.is_operator() {
            return Err(InvoicingError::Forbidden(
                "only the operator may change tax_exempt".into(),
            ));
        }
        let row = profiles::put(&mut tx, &tenant, &profile).await?;
        tx.commit().await?;
        Ok(wire::profile_pb(row))
    }

    async fn create_rate(&self, c: &Caller, r: pb::CreateTaxRateRequest) -> Result<pb::TaxRate> {
        c.require(authz::Role::PlatformAdmin)?;
        let r = r
            .rate
            .ok_or_else(|| InvoicingError::invalid("rate", "required"))?;
        let percentage = pricing::wire::decimal("percentage", &r.percentage)
            .map_err(|_| InvoicingError::invalid("percentage", "an exact decimal, e.g. 19"))?
            .ok_or_else(|| InvoicingError::invalid("percentage", "required"))?;
        let rate = TaxRate {
            id: TaxRateId::generate().into(),
            name: r.name.trim().to_string(),
            country: r.country.trim().to_string(),
            region: wire::some(r.region),
            percentage,
            inclusive: r.inclusive,
        };
        check_rate(&rate)?;
        let mut tx = self.pool.begin().await?;
        let row = tax_rates::create(&mut tx, &rate).await?;
        tx.commit().await?;
        Ok(wire::rate_pb(row))
    }

    async fn list_rates(&self, r: pb::ListTaxRatesRequest) -> Result<pb::ListTaxRatesResponse> {
        let mut conn = self.pool.acquire().await?;
        let rows = tax_rates::list(&mut conn, r.include_archived).await?;
        Ok(pb::ListTaxRatesResponse {
            rates: rows.into_iter().map(wire::rate_pb).collect(),
        })
    }

    async fn archive_rate(&self, c: &Caller, r: pb::ArchiveTaxRateRequest) -> Result<pb::TaxRate> {
        c.require(authz::Role::PlatformAdmin)?;
        let id =
            TaxRateId::parse(&r.tax_rate_id).map_err(|_| InvoicingError::NotFound("tax rate"))?;
        let mut conn = self.pool.acquire().await?;
        let row = tax_rates::archive(&mut conn, &id)
            .await?
            .ok_or(InvoicingError::NotFound("tax rate"))?;
        Ok(wire::rate_pb(row))
    }
}

fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    Caller::of(req).map_err(|r| InvoicingError::from(r).into())
}

/// Answers with `f`'s result, its error mapped once.
fn reply<T>(r: Result<T>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl InvoicingService for InvoicingApi {
    async fn get_invoice(&self, req: Request<pb::GetInvoiceRequest>) -> Reply<pb::Invoice> {
        let c = caller(&req)?;
        reply(self.get(&c, req.into_inner()).await)
    }

    async fn list_invoices(
        &self,
        req: Request<pb::ListInvoicesRequest>,
    ) -> Reply<pb::ListInvoicesResponse> {
        let c = caller(&req)?;
        reply(self.list(&c, req.into_inner()).await)
    }

    async fn finalize_invoice(&self, req: Request<pb::InvoiceActionRequest>) -> Reply<pb::Invoice> {
        let c = caller(&req)?;
        reply(self.finalize(&c, req.into_inner()).await)
    }

    async fn void_invoice(&self, req: Request<pb::InvoiceActionRequest>) -> Reply<pb::Invoice> {
        let c = caller(&req)?;
        reply(self.settle(&c, req.into_inner(), Action::Void).await)
    }

    async fn mark_uncollectible(
        &self,
        req: Request<pb::InvoiceActionRequest>,
    ) -> Reply<pb::Invoice> {
        let c = caller(&req)?;
        reply(
            self.settle(&c, req.into_inner(), Action::MarkUncollectible)
                .await,
        )
    }

    async fn mark_paid(&self, req: Request<pb::MarkPaidRequest>) -> Reply<pb::Invoice> {
        let c = caller(&req)?;
        reply(self.mark_paid(&c, req.into_inner()).await)
    }

    type GetInvoicePdfStream =
        futures::stream::Iter<std::vec::IntoIter<std::result::Result<pb::PdfChunk, Status>>>;

    async fn get_invoice_pdf(
        &self,
        req: Request<pb::GetInvoiceRequest>,
    ) -> Reply<Self::GetInvoicePdfStream> {
        let c = caller(&req)?;
        let bytes = self.pdf(&c, req.into_inner()).await?;
        let chunks: Vec<_> = bytes
            .chunks(PDF_CHUNK)
            .map(|ch| Ok(pb::PdfChunk { data: ch.to_vec() }))
            .collect();
        Ok(Response::new(futures::stream::iter(chunks)))
    }

    async fn get_billing_profile(
        &self,
        req: Request<pb::GetBillingProfileRequest>,
    ) -> Reply<pb::BillingProfile> {
        let c = caller(&req)?;
        reply(self.get_profile(&c, &req.into_inner().tenant_id).await)
    }

    async fn put_billing_profile(
        &self,
        req: Request<pb::PutBillingProfileRequest>,
    ) -> Reply<pb::BillingProfile> {
        let c = caller(&req)?;
        reply(self.put_profile(&c, req.into_inner()).await)
    }

    async fn create_tax_rate(&self, req: Request<pb::CreateTaxRateRequest>) -> Reply<pb::TaxRate> {
        let c = caller(&req)?;
        reply(self.create_rate(&c, req.into_inner()).await)
    }

    async fn list_tax_rates(
        &self,
        req: Request<pb::ListTaxRatesRequest>,
    ) -> Reply<pb::ListTaxRatesResponse> {
        caller(&req)?;
        reply(self.list_rates(req.into_inner()).await)
    }

    async fn archive_tax_rate(
        &self,
        req: Request<pb::ArchiveTaxRateRequest>,
    ) -> Reply<pb::TaxRate> {
        let c = caller(&req)?;
        reply(self.archive_rate(&c, req.into_inner()).await)
    }
}
