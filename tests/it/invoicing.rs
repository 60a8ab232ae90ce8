//! Invoicing through the gateway: a billing run becomes a draft invoice per subscription
//! period (once), the operator finalizes it with the buyer's tax and a gapless number, and
//! marks it paid; tenants see only their own, and cannot change their own tax.

use chrono::{Datelike, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::stack::{Api, Stack, token};

fn draft_path(list: &str, id: &str) -> String {
    format!("{list}/{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_run_is_invoiced_once_finalized_with_tax_and_paid() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let t = "ten_invoiced";
    let owner = token(t, "owner", &["owner"]);
    let billing_admin = token(t, "finance", &["billing_admin"]);

    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            &operator,
            Some(json!({"id": "pro", "name": "Pro", "currency": "EUR", "interval": "month",
                "prices": [{"id": "base", "kind": "flat", "model": {"type": "flat", "amount": "4900"}}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/subscription"),
            &operator,
            Some(json!({"plan_id": "pro"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");

    // The tenant describes itself; only the operator sets rates and exemptions.
    let profile = json!({"legal_name": "Ærø Ølbryggeri ApS", "address_lines": ["Vestergade 1"],
                         "country": "DE", "billing_email": "ap@aero.example"});
    let path = format!("/v1/tenants/{t}/billing_profile");
    let (s, p) = api
        .send(Method::PUT, &path, &owner, Some(profile.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let mut exempt = profile.clone();
    exempt["tax_exempt"] = json!(true);
    let (s, p) = api.send(Method::PUT, &path, &owner, Some(exempt)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    let mut bad = profile.clone();
    bad["country"] = json!("Germany");
    let (s, p) = api.send(Method::PUT, &path, &owner, Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "country", "{p}");
    let rate = json!({"country": "DE", "percentage": "19", "name": "USt."});
    let (s, _) = api
        .send(Method::POST, "/v1/tax_rates", &owner, Some(rate.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, p) = api
        .send(Method::POST, "/v1/tax_rates", &operator, Some(rate))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/tax_rates",
            &operator,
            Some(json!({"country": "DE", "percentage": "101", "name": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "percentage", "{p}");

    // A run over the period's start bills its fee in advance; invoicing takes it in.
    let now = Utc::now();
    let body = json!({
        "period_start": (now - chrono::Duration::days(1)).to_rfc3339(),
        "period_end": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "tenant_ids": [t],
    });
    let (s, run) = api
        .send(Method::POST, "/v1/billing/runs", &operator, Some(body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let list = format!("/v1/tenants/{t}/invoices");
    let drafts = api
        .until(&list, &owner, |v| {
            v["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    assert_eq!(drafts["data"].as_array().unwrap().len(), 1, "{drafts}");
    let draft = &drafts["data"][0];
    assert_eq!(draft["status"], "draft", "{draft}");
    assert_eq!(draft["billing_run_id"], run["id"]);
    let id = draft["id"].as_str().unwrap().to_string();

    // Finalizing is the operator's; a foreign tenant sees nothing.
    let one = format!("/v1/tenants/{t}/invoices/{id}");
    let (s, p) = api
        .send(Method::GET, &format!("{one}/pdf"), &owner, None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a draft has no PDF yet: {p}");
    let (s, _) = api
        .send(
            Method::POST,
            &format!("{one}/finalize"),
            &billing_admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, inv) = api
        .send(Method::POST, &format!("{one}/finalize"), &operator, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    assert_eq!(inv["status"], "open");
    assert_eq!(
        inv["number"],
        format!("INV-{}-000001", Utc::now().year()),
        "{inv}"
    );
    assert_eq!(
        (
            &inv["net_minor"],
            &inv["tax_minor"],
            &inv["amount_due_minor"]
        ),
        (&json!(4900), &json!(931), &json!(5831)),
        "{inv}"
    );
    assert_eq!(inv["lines"][0]["tax_minor"], 931, "{inv}");
    assert_eq!(inv["tax_summary"][0]["rate"]["name"], "USt.", "{inv}");
    // Its PDF: stored at finalization, served with its SHA-256 as ETag, read back by poppler.
    let (s, p) = api
        .send(
            Method::GET,
            &format!("{}/pdf", draft_path(&list, "nope")),
            &owner,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    let resp = api
        .http
        .get(stack.url(&format!("{one}/pdf")))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(
        resp.headers()["content-disposition"],
        format!(
            "attachment; filename=\"INV-{}-000001.pdf\"",
            Utc::now().year()
        )
        .as_str()
    );
    let pdf = resp.bytes().await.unwrap();
    assert_eq!(etag, format!("\"{}\"", inv["pdf_sha256"].as_str().unwrap()));
    let text = test_support::pdftotext(&pdf);
    for want in ["Ærø Ølbryggeri ApS", "USt. 19%", "58.31 EUR"] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let resp = api
        .http
        .get(stack.url(&format!("{one}/pdf")))
        .bearer_auth(&owner)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let other = token("ten_stranger", "owner", &["owner"]);
    let (s, _) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/ten_stranger/invoices/{id}"),
            &other,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.send(Method::GET, &one, &other, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Paid once, with the amount due; anything else is refused and changes nothing.
    let paid = format!("{one}/mark_paid");
    let (s, p) = api
        .send(
            Method::POST,
            &paid,
            &operator,
            Some(json!({"payment_intent_id": "wire-1", "amount_minor": 100})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    // The payment service's `payment.intent.succeeded` marks it paid (through NATS, once).
    let bus = platform::events::EventBus::connect(&test_support::nats_url(), &stack.prefix)
        .await
        .unwrap();
    let succeeded = event_types::PaymentSucceeded {
        payment_intent_id: "pi_1".into(),
        tenant_id: ids::TenantId::parse(t).unwrap(),
        invoice_id: Some(ids::InvoiceId::parse(&id).unwrap()),
        amount_minor: 5831,
        currency: "EUR".into(),
    };
    let event = platform::events::CloudEvent::new(
        "/services/payment",
        "payment.intent.succeeded",
        event_types::data(&succeeded),
    );
    bus.publish(&event).await.unwrap();
    let p = api.until(&one, &owner, |v| v["status"] == "paid").await;
    assert_eq!(p["payment_intent_id"], "pi_1", "{p}");
    // Another payment for a paid invoice is refused (and flagged when it comes as an event).
    let (s, p) = api
        .send(
            Method::POST,
            &paid,
            &operator,
            Some(json!({"payment_intent_id": "wire-1", "amount_minor": 5831})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    let (s, p) = api
        .send(Method::GET, &format!("{list}?status=paid"), &owner, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["data"][0]["id"], id.as_str(), "{p}");
    let (s, p) = api
        .send(Method::GET, &format!("{list}?status=late"), &owner, None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            &format!("{one}/void"),
            &operator,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a paid invoice is not voided: {p}");
    stack.stop().await;
}
