//! Order to cash through the gateway, with the sandbox PSP as its own HTTP server: a finalized
//! invoice is charged to the tenant's default card; a decline starts dunning (the
//! subscription goes past due); paying with another card marks the invoice paid and restores
//! the subscription. Callbacks reach the payment service through the gateway's public route,
//! verified.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::stack::{Api, SANDBOX_SECRET, Stack, token};

/// A plan `plan` with one flat fee of `amount` (EUR cents) and tenant `t` subscribed to it.
pub(crate) async fn subscribe(api: &Api, operator: &str, t: &str, plan: &str, amount: &str) {
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            operator,
            Some(json!({"id": plan, "name": plan, "currency": "EUR", "interval": "month",
                "prices": [{"id": "base", "kind": "flat", "model": {"type": "flat", "amount": amount}}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/subscription"),
            operator,
            Some(json!({"plan_id": plan})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
}

/// Bills `t`'s current period and finalizes its invoice (which makes it `invoice.ready`).
pub(crate) async fn finalized_invoice(api: &Api, operator: &str, t: &str, bearer: &str) -> Value {
    let now = Utc::now();
    let body = json!({
        "period_start": (now - chrono::Duration::days(1)).to_rfc3339(),
        "period_end": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "tenant_ids": [t],
    });
    let (s, run) = api
        .send(Method::POST, "/v1/billing/runs", operator, Some(body))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let invoices = format!("/v1/tenants/{t}/invoices");
    let drafts = api
        .until(&invoices, bearer, |v| {
            v["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    let invoice = drafts["data"][0]["id"].as_str().unwrap();
    let (s, inv) = api
        .send(
            Method::POST,
            &format!("{invoices}/{invoice}/finalize"),
            operator,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    inv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_is_charged_dunned_and_paid_with_another_card() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let t = "ten_paying";
    let finance = token(t, "finance", &["billing_admin"]);
    let member = token(t, "dev", &["member"]);
    let stranger = token("ten_stranger", "owner", &["owner"]);

    subscribe(&api, &operator, t, "pro", "4900").await;
    let sub = format!("/v1/tenants/{t}/subscription");

    // Payment methods are the tenant's billing admin's (or owner's), PSP tokens only.
    let methods = format!("/v1/tenants/{t}/payment_methods");
    let declining = json!({"provider": "sandbox", "psp_token": "pm_card_chargeDeclined"});
    let (s, _) = api
        .send(Method::POST, &methods, &member, Some(declining.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, pm) = api
        .send(Method::POST, &methods, &finance, Some(declining))
        .await;
    assert_eq!(s, StatusCode::OK, "{pm}");
    assert_eq!(
        (pm["last4"].as_str(), pm["is_default"].as_bool()),
        (Some("0002"), Some(true))
    );
    let (s, p) = api
        .send(
            Method::POST,
            &methods,
            &finance,
            Some(json!({"provider": "sandbox", "psp_token": "pm_card_nonsense"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "psp_token", "{p}");

    // A run, its invoice finalized: the payment service charges it at once and it declines.
    let inv = finalized_invoice(&api, &operator, t, &finance).await;
    let invoice = inv["id"].as_str().unwrap().to_string();
    let invoices = format!("/v1/tenants/{t}/invoices");
    let due = inv["amount_due_minor"].as_i64().unwrap();

    let intents = format!("/v1/tenants/{t}/payment_intents?invoice_id={invoice}");
    let listed = api
        .until(&intents, &finance, |v| {
            v["data"][0]["status"] == "requires_payment_method"
                && v["data"][0]["last_failure_code"] == "generic_decline"
        })
        .await;
    let intent = &listed["data"][0];
    assert_eq!(intent["amount_minor"].as_i64(), Some(due), "{intent}");
    assert!(intent["next_retry_at"].is_string(), "{intent}");
    let id = intent["id"].as_str().unwrap().to_string();
    let dunning = api
        .until(&format!("/v1/tenants/{t}/dunning"), &finance, |v| {
            v["status"] == "active"
        })
        .await;
    assert_eq!(
        dunning["schedules"][0]["steps"].as_array().unwrap().len(),
        4
    );
    api.until(&sub, &finance, |v| v["status"] == "past_due")
        .await;

    // Another tenant cannot see it; the tenant cannot refund or cancel it.
    let one = format!("/v1/tenants/{t}/payment_intents/{id}");
    let (s, _) = api.send(Method::GET, &one, &stranger, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, p) = api
        .send(Method::POST, &format!("{one}/cancel"), &finance, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");

    // Paying with a new card ends it all.
    let (s, visa) = api
        .send(
            Method::POST,
            &methods,
            &finance,
            Some(json!({"provider": "sandbox", "psp_token": "pm_card_visa"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{visa}");
    let (s, paid) = api
        .send(
            Method::POST,
            &format!("{one}/confirm"),
            &finance,
            Some(json!({"payment_method_id": visa["id"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["amount_received"].as_i64(), Some(due));
    assert_eq!(paid["attempts"].as_array().unwrap().len(), 2, "{paid}");
    let inv = api
        .until(&format!("{invoices}/{invoice}"), &finance, |v| {
            v["status"] == "paid"
        })
        .await;
    assert_eq!(inv["payment_intent_id"], id.as_str());
    api.until(&sub, &finance, |v| v["status"] == "active").await;
    let (_, d) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{t}/dunning"),
            &finance,
            None,
        )
        .await;
    assert_eq!(d["status"], "none", "{d}");

    // Refunds are the operator's.
    let refunds = format!("{one}/refunds");
    let (s, _) = api
        .send(
            Method::POST,
            &refunds,
            &finance,
            Some(json!({"amount_minor": 100})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, r) = api
        .send(
            Method::POST,
            &refunds,
            &operator,
            Some(json!({"amount_minor": 100, "reason": "goodwill"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "succeeded", "{r}");
    let (s, r) = api
        .send(
            Method::POST,
            &refunds,
            &operator,
            Some(json!({"amount_minor": due})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["errors"][0]["field"], "amount", "{r}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psp_callbacks_are_verified_at_the_public_route() {
    let stack = Stack::start().await;
    let http = reqwest::Client::new();
    let body = json!({"id": "evt_e2e_1", "object": "event", "type": "customer.created",
                      "created": Utc::now().timestamp(), "data": {"object": {}}})
    .to_string();
    let post = |path: &str, sig: Option<String>, body: String| {
        let mut req = http
            .post(stack.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("stripe-signature", sig);
        }
        req.send()
    };
    let good = payment_service::domain::signature::stripe_sign(
        SANDBOX_SECRET,
        Utc::now().timestamp(),
        body.as_bytes(),
    );
    let r = post("/v1/webhooks/psp/stripe", Some(good.clone()), body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["processed"], true, "{v}");
    let r = post("/v1/webhooks/psp/stripe", Some(good.clone()), body.clone())
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["processed"], false,
        "a replay is answered but not applied: {v}"
    );

    let forged = body.replace("customer.created", "payment_intent.succeeded");
    for (sig, b) in [(Some(good), forged), (None, body.clone())] {
        let r = post("/v1/webhooks/psp/stripe", sig, b).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "an RFC 9457 problem"
        );
    }
    // No Adyen key is configured here: nothing from Adyen is believed.
    let adyen = json!({"live": "false", "notificationItems": [{"NotificationRequestItem": {
        "pspReference": "1", "eventCode": "AUTHORISATION", "success": "true",
        "merchantReference": "pay_x", "amount": {"value": 1, "currency": "EUR"},
        "additionalData": {"hmacSignature": "AAAA"}}}]})
    .to_string();
    let r = post("/v1/webhooks/psp/adyen", None, adyen).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dunning_runs_out_suspends_and_a_payment_reactivates() {
    // A fast clock: retries after 1 and 2 seconds.
    let stack = Stack::start_with(&[("DUNNING_SCHEDULE", "1s,2s")]).await;
    let api = Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let t = "ten_dunned";
    let owner = token(t, "owner", &["owner"]);
    subscribe(&api, &operator, t, "basic", "900").await;
    let sub = format!("/v1/tenants/{t}/subscription");
    let methods = format!("/v1/tenants/{t}/payment_methods");
    let (s, p) = api
        .send(
            Method::POST,
            &methods,
            &owner,
            Some(json!({"provider": "sandbox", "psp_token": "pm_card_chargeDeclinedInsufficientFunds"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");

    finalized_invoice(&api, &operator, t, &owner).await;

    // Both retries fail: dunning runs out and the subscription is suspended, so
    // entitlements deny.
    let dunning = format!("/v1/tenants/{t}/dunning");
    let d = api
        .until(&dunning, &owner, |v| v["status"] == "exhausted")
        .await;
    let steps = d["schedules"][0]["steps"].as_array().unwrap().clone();
    assert!(
        steps
            .iter()
            .all(|s| s["done"] == true && s["outcome"] == "insufficient_funds"),
        "{d}"
    );
    api.until(&sub, &owner, |v| v["status"] == "suspended")
        .await;
    let feature = format!("/v1/tenants/{t}/entitlements/calls");
    let (s, e) = api.send(Method::GET, &feature, &owner, None).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        (e["allowed"].clone(), e["reason"].clone()),
        (json!(false), json!("subscription_suspended"))
    );

    // A new card and a confirmation: paid, and the subscription is back.
    let (s, visa) = api
        .send(
            Method::POST,
            &methods,
            &owner,
            Some(json!({"provider": "sandbox", "psp_token": "pm_card_visa", "make_default": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{visa}");
    let (_, list) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{t}/payment_intents"),
            &owner,
            None,
        )
        .await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let (s, paid) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/payment_intents/{id}/confirm"),
            &owner,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "succeeded", "{paid}");
    api.until(&sub, &owner, |v| v["status"] == "active").await;
    let (_, e) = api.send(Method::GET, &feature, &owner, None).await;
    assert_ne!(e["reason"], "subscription_suspended", "{e}");
    stack.stop().await;
}
