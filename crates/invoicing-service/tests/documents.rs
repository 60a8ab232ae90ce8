//! Drafts, finalization, follow-up documents and payments against a real Postgres: charges
//! taken in the way the assembler takes a page of a billing run.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use event_types::PaymentSucceeded;
use ids::{RunId, TenantId};
use invoicing_service::blobs::Blobs;
use invoicing_service::domain::assembly::{Charge, by_period};
use invoicing_service::domain::lifecycle::{Kind, Status};
use invoicing_service::domain::parties::{BillingProfile, Party};
use invoicing_service::domain::tax::TaxRate;
use invoicing_service::events::{Paid, pay};
use invoicing_service::finalize::Finalizer;
use invoicing_service::pdf::{Fonts, sha256_hex};
use invoicing_service::settings::Settings;
use invoicing_service::store::invoices::{self, InvoiceRow};
use invoicing_service::store::{profiles, tax_rates};
use pricing::{Currency, Decimal};
use sqlx::PgPool;
use test_support::TestDb;

const TENANT: &str = "ten_docs";

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .unwrap()
        .to_utc()
}

fn charge(id: u32, part: &str, amount: i64) -> Charge {
    Charge {
        id: id.to_string(),
        tenant_id: TENANT.into(),
        subscription_id: "sub_1".into(),
        period_start: Some(start()),
        period_end: Some(start() + chrono::Duration::days(30)),
        part: part.into(),
        description: format!("charge {id}"),
        quantity: Decimal::ONE,
        unit_amount: Some(Decimal::from(amount)),
        amount_minor: amount,
        currency: Currency::EUR,
    }
}

struct Env {
    db: TestDb,
    blob_dir: std::path::PathBuf,
    pool: PgPool,
    finalizer: Finalizer,
    run: RunId,
}

async fn env() -> Env {
    let db = TestDb::new().await;
    let pool = platform::db::connect_and_migrate(
        &db.url,
        platform::db::PoolSettings {
            max_connections: 4,
            acquire_timeout: std::time::Duration::from_secs(10),
        },
        &invoicing_service::MIGRATOR,
    )
    .await
    .unwrap();
    let settings = Settings::from_lookup(|k| match k {
        "SELLER_NAME" => Some("Operator GmbH".into()),
        "SELLER_COUNTRY" => Some("DE".into()),
        "INVOICE_GRACE_SECS" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let blob_dir = std::env::temp_dir().join(format!("invoices-{}", RunId::generate()));
    let finalizer = Finalizer {
        pool: pool.clone(),
        settings: Arc::new(settings),
        fonts: Arc::new(Fonts::embedded()),
        blobs: Blobs::open(blob_dir.to_str().unwrap(), &[]).unwrap(),
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    Env {
        db,
        blob_dir,
        pool,
        finalizer,
        run: RunId::generate(),
    }
}

impl Env {
    /// Takes `charges` in as one page; returns the drafts opened.
    async fn take_in(&self, charges: Vec<Charge>) -> Vec<InvoiceRow> {
        let (periods, _) = by_period(charges).unwrap();
        let mut tx = self.pool.begin().await.unwrap();
        let opened = invoices::take_in(&mut tx, &self.run, &periods, Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        opened
    }

    async fn finalize(&self, row: &InvoiceRow) -> InvoiceRow {
        self.finalizer
            .finalize(&row.id, None, false)
            .await
            .unwrap()
            .unwrap()
    }

    async fn outbox(&self, event_type: &str) -> Vec<serde_json::Value> {
        sqlx::query_scalar(
            "SELECT payload->'data' FROM outbox WHERE payload->>'type' = $1 ORDER BY seq",
        )
        .bind(event_type)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn profile(&self, country: &str, tax_id: Option<&str>, exempt: bool) {
        let mut conn = self.pool.acquire().await.unwrap();
        let p = BillingProfile {
            party: Party {
                name: "Käufer & Söhne".into(),
                address_lines: vec!["Hauptstraße 1".into()],
                country: country.into(),
                region: None,
                tax_id: tax_id.map(str::to_string),
                email: Some("billing@buyer.example".into()),
            },
            tax_exempt: exempt,
        };
        profiles::put(&mut conn, &TenantId::parse(TENANT).unwrap(), &p)
            .await
            .unwrap();
    }

    async fn rate(&self, country: &str, percentage: u32, inclusive: bool) {
        let mut conn = self.pool.acquire().await.unwrap();
        tax_rates::create(
            &mut conn,
            &TaxRate {
                id: ids::TaxRateId::generate().into(),
                name: "VAT".into(),
                country: country.into(),
                region: None,
                percentage: Decimal::from(percentage),
                inclusive,
            },
        )
        .await
        .unwrap();
    }

    async fn stop(self) {
        let _ = std::fs::remove_dir_all(&self.blob_dir);
        self.pool.close().await;
        self.db.drop_db().await;
    }
}

fn year() -> i32 {
    Utc::now().year()
}

#[tokio::test]
async fn a_period_is_invoiced_once_then_taxed_numbered_and_frozen() {
    let env = env().await;
    env.profile("DE", None, false).await;
    env.rate("DE", 19, false).await;
    let charges = vec![charge(2, "arrears", 1234), charge(1, "advance", 4900)];
    let opened = env.take_in(charges.clone()).await;
    assert_eq!(opened.len(), 1);
    // The same page again (a redelivery, a re-run): no second draft, no second line.
    assert!(env.take_in(charges).await.is_empty());
    let draft = &opened[0];
    let mut conn = env.pool.acquire().await.unwrap();
    let lines = invoices::lines(&mut conn, &draft.id).await.unwrap();
    let ids: Vec<&str> = lines.iter().map(|l| l.charge_id.as_str()).collect();
    assert_eq!(ids, ["1", "2"], "advance before arrears");

    let inv = env.finalize(draft).await;
    assert_eq!(inv.status, Status::Open);
    assert_eq!(inv.kind, Kind::Invoice);
    assert_eq!(
        inv.number.as_deref(),
        Some(format!("INV-{}-000001", year()).as_str())
    );
    // 19 % of 4900 = 931, of 1234 = 234.46 → 234.
    assert_eq!(
        (inv.net_minor, inv.tax_minor, inv.total_minor),
        (Some(6134), Some(1165), Some(7299))
    );
    assert_eq!(inv.amount_due_minor, Some(7299));
    let ready = env.outbox("invoice.ready").await;
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["amount_due_minor"], 7299);
    assert_eq!(ready[0]["billing_email"], "billing@buyer.example");
    assert_eq!(
        env.outbox("invoice.created").await.len(),
        0,
        "the test skips the assembler"
    );

    // Its PDF is stored once, matches its recorded SHA-256, and reads back (pdftotext).
    let key = inv.pdf_key.clone().unwrap();
    let stored = env.finalizer.blobs.get(&key).await.unwrap().unwrap();
    assert_eq!(
        inv.pdf_sha256.as_deref(),
        Some(sha256_hex(&stored).as_str())
    );
    let text = test_support::pdftotext(&stored);
    for want in ["Käufer & Söhne", "INV-", "72.99 EUR", "VAT 19%"] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    // A re-render of the finalized invoice is byte-identical to what was stored.
    let lines = invoices::lines(&mut conn, &inv.id).await.unwrap();
    let again = env.finalizer.render(&mut conn, &inv, &lines).await.unwrap();
    assert_eq!(again.sha256, sha256_hex(&stored));

    // Finalizing again changes nothing; a later profile change does not touch the invoice.
    assert_eq!(env.finalize(draft).await.number, inv.number);
    env.profile("DE", None, true).await;
    let again = invoices::get(&mut conn, &inv.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.tax_minor, Some(1165));
    assert_eq!(again.document.unwrap().0.buyer.name, "Käufer & Söhne");
    drop(conn);
    env.stop().await;
}

#[tokio::test]
async fn what_is_billed_after_finalization_follows_the_original() {
    let env = env().await;
    let original = env.take_in(vec![charge(1, "advance", 1000)]).await;
    let original = env.finalize(&original[0]).await;

    // More of the period (its usage at period end): a supplementary invoice.
    let more = env.take_in(vec![charge(2, "arrears", 500)]).await;
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].follows.as_ref(), Some(&original.id));
    let supplementary = env.finalize(&more[0]).await;
    assert_eq!(supplementary.kind, Kind::Invoice);
    assert_eq!(
        supplementary.number.as_deref(),
        Some(format!("INV-{}-000002", year()).as_str())
    );

    // A correction that credits: a credit note, numbered in its own series.
    let credit = env.take_in(vec![charge(3, "arrears", -300)]).await;
    let note = env.finalize(&credit[0]).await;
    assert_eq!(note.kind, Kind::CreditNote);
    assert_eq!(
        note.number.as_deref(),
        Some(format!("CN-{}-000001", year()).as_str())
    );
    assert_eq!(note.amount_due_minor, Some(-300));
    let created = env.outbox("credit_note.created").await;
    assert_eq!(created[0]["follows"], original.id.to_string());

    // Late charges that cancel out: nothing is issued, no number is used.
    let nothing = env
        .take_in(vec![charge(4, "arrears", 200), charge(5, "arrears", -200)])
        .await;
    let voided = env.finalize(&nothing[0]).await;
    assert_eq!((voided.status, voided.number.clone()), (Status::Void, None));
    let next = env.take_in(vec![charge(6, "arrears", 100)]).await;
    assert_eq!(
        env.finalize(&next[0]).await.number.as_deref(),
        Some(format!("INV-{}-000003", year()).as_str())
    );
    env.stop().await;
}

#[tokio::test]
async fn eu_reverse_charge_and_exempt_buyers_pay_no_tax() {
    let env = env().await;
    env.rate("FR", 20, false).await;
    env.profile("FR", Some("FR12345678901"), false).await;
    let draft = env.take_in(vec![charge(1, "advance", 1000)]).await;
    let inv = env.finalize(&draft[0]).await;
    assert_eq!((inv.tax_minor, inv.amount_due_minor), (Some(0), Some(1000)));
    let notice = inv.document.unwrap().0.notice.unwrap();
    assert!(notice.contains("Reverse charge"), "{notice}");
    env.stop().await;
}

#[tokio::test]
async fn a_payment_marks_paid_once_and_a_wrong_amount_is_flagged() {
    let env = env().await;
    let draft = env.take_in(vec![charge(1, "advance", 2500)]).await;
    let inv = env.finalize(&draft[0]).await;
    let payment = |intent: &str, amount: i64| PaymentSucceeded {
        payment_intent_id: intent.into(),
        tenant_id: TenantId::parse(TENANT).unwrap(),
        invoice_id: Some(inv.id.clone()),
        amount_minor: amount,
        currency: "EUR".into(),
    };
    let apply = |p: PaymentSucceeded| {
        let pool = env.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let invoice = p.invoice_id.clone().unwrap();
            let out = pay(&mut tx, &invoice, &p).await.unwrap();
            tx.commit().await.unwrap();
            out
        }
    };
    assert!(matches!(
        apply(payment("pi_short", 2400)).await,
        Paid::Flagged(_)
    ));
    let mut conn = env.pool.acquire().await.unwrap();
    let row = invoices::get(&mut conn, &inv.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, Status::Open);
    assert!(row.payment_mismatch.unwrap().contains("does not match"));

    assert_eq!(apply(payment("pi_ok", 2500)).await, Paid::Marked);
    assert_eq!(apply(payment("pi_ok", 2500)).await, Paid::Already);
    assert!(matches!(
        apply(payment("pi_again", 2500)).await,
        Paid::Flagged(_)
    ));
    let paid = env.outbox("invoice.paid").await;
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0]["payment_intent_id"], "pi_ok");
    drop(conn);
    env.stop().await;
}

#[tokio::test]
async fn the_operator_voids_an_open_invoice_once_and_a_paid_one_not_at_all() {
    use invoicing_service::grpc::InvoicingApi;
    use rpc::invoicing::v1 as pb;
    use rpc::invoicing::v1::invoicing_service_server::InvoicingService;

    let env = env().await;
    let api = InvoicingApi {
        pool: env.pool.clone(),
        finalizer: env.finalizer.clone(),
    };
    let request = |caller: platform::grpc::Caller, invoice: &InvoiceRow| {
        let mut req = tonic::Request::new(pb::InvoiceActionRequest {
            tenant_id: TENANT.into(),
            invoice_id: invoice.id.to_string(),
            reason: "issued twice by mistake".into(),
        });
        caller.apply(&mut req);
        req
    };
    let operator = || platform::grpc::Caller::service("operator", None);
    let open = env.take_in(vec![charge(1, "advance", 1000)]).await;
    let open = env.finalize(&open[0]).await;

    // The tenant's own billing admin cannot void its bill.
    let admin = platform::grpc::Caller {
        tenant_id: TenantId::parse(TENANT).unwrap(),
        subject: "finance".into(),
        roles: vec!["billing_admin".into()],
        scopes: vec![],
        request_id: None,
    };
    let refused = api.void_invoice(request(admin, &open)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let voided = api
        .void_invoice(request(operator(), &open))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(voided.status(), pb::InvoiceStatus::Void);
    assert_eq!(voided.void_reason, "issued twice by mistake");
    // Again: a no-op, no second event; the number stays used.
    api.void_invoice(request(operator(), &open)).await.unwrap();
    let events = env.outbox("invoice.voided").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["number"], voided.number);

    // Another subscription's period with nothing to pay.
    let mut free = charge(2, "advance", 0);
    free.subscription_id = "sub_2".into();
    let paid = env.take_in(vec![free]).await;
    let paid = env.finalize(&paid[0]).await;
    assert_eq!(paid.status, Status::Paid, "nothing to pay: paid at issue");
    let refused = api
        .void_invoice(request(operator(), &paid))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    env.stop().await;
}
