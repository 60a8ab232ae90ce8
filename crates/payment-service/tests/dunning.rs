//! Order to cash and dunning with a moved clock: an invoice's intent is confirmed off-session;
//! failures retry on the schedule until exhausted (`payment.dunning.exhausted`); a later
//! payment ends it. Real Postgres, the sandbox PSP as its own HTTP server.

mod common;

use chrono::{DateTime, Duration, Utc};
use event_types::{InvoiceReady, InvoiceRef, data};
use ids::{InvoiceId, TenantId};
use payment_service::domain::intent::Status;
use payment_service::domain::provider::Provider;
use payment_service::events::{InvoicesReady, InvoicesSettled};
use payment_service::store::dunning::{self as dunning_store, DunningStatus};
use payment_service::store::intents::{self, IntentRow};
use platform::events::{CloudEvent, EventHandler};

const TENANT: &str = "ten_dunning";

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn ready(invoice: &InvoiceId, amount: i64) -> CloudEvent {
    let now = Utc::now();
    let payload = InvoiceReady {
        invoice: InvoiceRef {
            invoice_id: invoice.clone(),
            tenant_id: tenant(),
            kind: "invoice".into(),
            subscription_id: "sub_1".into(),
            period_start: now,
            currency: "EUR".into(),
        },
        number: "INV-2026-000001".into(),
        amount_due_minor: amount,
        issued_at: now,
        due_at: now + Duration::days(30),
        pdf_key: None,
        billing_email: None,
        follows: None,
    };
    CloudEvent::new("/services/invoicing", "invoice.ready", data(&payload))
}

async fn deliver(e: &common::Env, handler: &impl EventHandler, event: &CloudEvent) {
    let mut tx = e.pool.begin().await.unwrap();
    handler.handle(&mut tx, event).await.unwrap();
    tx.commit().await.unwrap();
}

fn ready_handler(e: &common::Env) -> InvoicesReady {
    InvoicesReady {
        schedule: e.engine.settings.dunning.clone(),
        wake: e.worker.wake.clone(),
    }
}

async fn of_invoice(e: &common::Env, invoice: &InvoiceId) -> IntentRow {
    let mut conn = e.pool.acquire().await.unwrap();
    intents::of_invoice(&mut conn, invoice)
        .await
        .unwrap()
        .unwrap()
}

async fn dunning(e: &common::Env, i: &IntentRow) -> dunning_store::DunningRow {
    let mut conn = e.pool.acquire().await.unwrap();
    dunning_store::get(&mut conn, &i.id, false)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn failures_dun_to_exhaustion_and_a_later_payment_recovers() {
    let e = common::env(&[("DUNNING_SCHEDULE", "1d,3d,5d")], false).await;
    let declined = e
        .engine
        .attach(&tenant(), Provider::Sandbox, "pm_card_chargeDeclined", true)
        .await
        .unwrap();
    let invoice = InvoiceId::generate();
    let handler = ready_handler(&e);
    deliver(&e, &handler, &ready(&invoice, 5831)).await;
    // Redelivered: still one intent.
    deliver(&e, &handler, &ready(&invoice, 5831)).await;
    let t0 = Utc::now();
    let ticked = e.worker.tick(t0).await.unwrap();
    assert_eq!(ticked.confirmed, 1);
    let i = of_invoice(&e, &invoice).await;
    assert_eq!(i.status, Status::RequiresPaymentMethod);
    assert_eq!(i.payment_method_id.as_ref(), Some(&declined.id));
    let d = dunning(&e, &i).await;
    assert_eq!(d.status, DunningStatus::Active);
    let first_retry = d.next_retry_at.unwrap();
    assert_eq!(
        first_retry,
        e.engine.settings.dunning.due(d.started_at, 0).unwrap()
    );
    assert_eq!(e.published("payment.intent.failed", i.id.as_str()).await, 1);

    // Nothing is due before the first retry.
    let early = e
        .worker
        .tick(first_retry - Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(early.dunning_retries, 0);
    // Each retry fails; the last exhausts dunning.
    for (n, offset) in [(1, 1), (2, 3), (3, 5)] {
        let at = d.started_at + Duration::days(offset) + Duration::seconds(1);
        let t = e.worker.tick(at).await.unwrap();
        assert_eq!(t.dunning_retries, 1, "retry {n}");
        let d = dunning(&e, &i).await;
        assert_eq!(d.retries_done, n);
        assert_eq!(d.outcomes.len(), n as usize);
    }
    let d = dunning(&e, &i).await;
    assert_eq!(d.status, DunningStatus::Exhausted);
    assert_eq!(d.outcomes, ["generic_decline"; 3]);
    assert_eq!(e.published("payment.intent.failed", i.id.as_str()).await, 4);
    assert_eq!(
        e.published("payment.dunning.exhausted", i.id.as_str())
            .await,
        1
    );
    let later = e
        .worker
        .tick(d.started_at + Duration::days(30))
        .await
        .unwrap();
    assert_eq!(
        later.dunning_retries, 0,
        "an exhausted schedule retries no more"
    );

    // The customer pays with a new card: dunning ends as recovered.
    let visa = e
        .engine
        .attach(&tenant(), Provider::Sandbox, "pm_card_visa", true)
        .await
        .unwrap();
    let paid = e
        .engine
        .confirm(Some(&tenant()), &i.id, Some(&visa.id), None)
        .await
        .unwrap();
    assert_eq!(paid.status, Status::Succeeded);
    assert_eq!(dunning(&e, &i).await.status, DunningStatus::Recovered);
    assert_eq!(
        e.published("payment.intent.succeeded", i.id.as_str()).await,
        1
    );
    e.stop().await;
}

#[tokio::test]
async fn without_a_method_the_invoice_waits_and_the_next_retry_uses_a_new_default() {
    let e = common::env(&[], false).await;
    let invoice = InvoiceId::generate();
    deliver(&e, &ready_handler(&e), &ready(&invoice, 1200)).await;
    let i = of_invoice(&e, &invoice).await;
    assert_eq!(i.status, Status::RequiresPaymentMethod);
    assert_eq!(i.last_failure_code.as_deref(), Some("no_payment_method"));
    let d = dunning(&e, &i).await;
    assert_eq!(d.status, DunningStatus::Active);
    assert_eq!(e.published("payment.intent.failed", i.id.as_str()).await, 1);

    e.engine
        .attach(&tenant(), Provider::Sandbox, "pm_card_mastercard", false)
        .await
        .unwrap();
    let at: DateTime<Utc> = d.next_retry_at.unwrap() + Duration::seconds(1);
    let t = e.worker.tick(at).await.unwrap();
    assert_eq!(t.dunning_retries, 1);
    let i = of_invoice(&e, &invoice).await;
    assert_eq!(i.status, Status::Succeeded);
    assert_eq!(i.amount_received, 1200);
    assert_eq!(dunning(&e, &i).await.status, DunningStatus::Recovered);
    e.stop().await;
}

#[tokio::test]
async fn an_invoice_paid_another_way_stops_its_dunning() {
    let e = common::env(&[], false).await;
    let invoice = InvoiceId::generate();
    deliver(&e, &ready_handler(&e), &ready(&invoice, 990)).await;
    let i = of_invoice(&e, &invoice).await;
    let paid = event_types::InvoicePaid {
        invoice: InvoiceRef {
            invoice_id: invoice.clone(),
            tenant_id: tenant(),
            kind: "invoice".into(),
            subscription_id: "sub_1".into(),
            period_start: Utc::now(),
            currency: "EUR".into(),
        },
        number: "INV-2026-000002".into(),
        amount_paid_minor: 990,
        paid_at: Utc::now(),
        payment_intent_id: None,
    };
    deliver(
        &e,
        &InvoicesSettled,
        &CloudEvent::new("/services/invoicing", "invoice.paid", data(&paid)),
    )
    .await;
    let mut conn = e.pool.acquire().await.unwrap();
    let after = intents::get(&mut conn, &i.id, None, false)
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    assert_eq!(after.status, Status::Canceled);
    assert_eq!(dunning(&e, &i).await.status, DunningStatus::Recovered);
    let t = e
        .worker
        .tick(Utc::now() + Duration::days(30))
        .await
        .unwrap();
    assert_eq!(t.dunning_retries, 0);
    e.stop().await;
}

#[tokio::test]
async fn two_clocks_at_once_confirm_each_invoice_once() {
    // Two replicas' clocks over the same database: SKIP LOCKED shares the work out.
    let e = common::env(&[], false).await;
    e.engine
        .attach(&tenant(), Provider::Sandbox, "pm_card_visa", true)
        .await
        .unwrap();
    let handler = ready_handler(&e);
    let invoices: Vec<InvoiceId> = (0..40).map(|_| InvoiceId::generate()).collect();
    for invoice in &invoices {
        deliver(&e, &handler, &ready(invoice, 100)).await;
    }
    let other = payment_service::worker::Worker {
        engine: e.engine.clone(),
        wake: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    let now = Utc::now();
    let (a, b) = tokio::join!(e.worker.tick(now), other.tick(now));
    assert_eq!(a.unwrap().confirmed + b.unwrap().confirmed, 40);
    for invoice in &invoices {
        let i = of_invoice(&e, invoice).await;
        assert_eq!(i.status, Status::Succeeded);
        let mut conn = e.pool.acquire().await.unwrap();
        let tries = intents::attempts(&mut conn, std::slice::from_ref(&i.id))
            .await
            .unwrap();
        assert_eq!(tries.len(), 1, "{}", i.id);
    }
    assert_eq!(e.sandbox.charges().values().sum::<u32>(), 40);
    e.stop().await;
}
