//! Billing runs through the gateway: start (idempotent per period and tenants), live status
//! until completed, permissions and isolation, and bad input.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::stack::{Api, Stack, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_run_through_the_gateway() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let t = "ten_billing_a";
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            &operator,
            Some(
                json!({"id": "metered", "name": "Metered", "currency": "USD", "interval": "month",
                "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                            "model": {"type": "per_unit", "unit_amount": "0.5"}}]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, _) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/subscription"),
            &operator,
            Some(json!({"plan_id": "metered"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let now = chrono::Utc::now();
    let records: Vec<_> = (0..500)
        .map(|i| {
            json!({"id": format!("r{i}"), "tenant_id": t, "user_id": format!("usr_{}", i % 5),
                        "metric": "api_calls", "quantity": "2", "timestamp": now.to_rfc3339()})
        })
        .collect();
    let (s, r) = api
        .send(
            Method::POST,
            "/v1/usage",
            &operator,
            Some(json!({"records": records})),
        )
        .await;
    assert_eq!((s, r["accepted"].clone()), (StatusCode::OK, json!(500)));

    // The period the usage was counted in ends (the subscription clock, a month and more on).
    let later = now + chrono::Duration::days(32);
    stack.tick_subscriptions(later).await;
    let body = json!({
        "period_start": (now - chrono::Duration::days(1)).to_rfc3339(),
        "period_end": later.to_rfc3339(),
        "tenant_ids": [t],
    });
    let owner = token(t, "owner", &["owner"]);
    let (s, _) = api
        .send(Method::POST, "/v1/billing/runs", &owner, Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the operator starts runs");
    let (s, run) = api
        .send(
            Method::POST,
            "/v1/billing/runs",
            &operator,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (_, again) = api
        .send(Method::POST, "/v1/billing/runs", &operator, Some(body))
        .await;
    assert_eq!(
        again["id"],
        id.as_str(),
        "the same period and tenants are not billed twice"
    );

    let mut status = json!(null);
    for _ in 0..200 {
        let (s, r) = api
            .send(Method::GET, &format!("/v1/billing/runs/{id}"), &owner, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        status = r.clone();
        if r["status"] == "completed" || r["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["records_processed"], 500);
    // 500 records × 2 calls × 0.5 minor units = 500 minor units.
    assert_eq!(
        status["totals"],
        json!([{"tenant_id": t, "currency": "USD", "amount_minor": 500}])
    );
    let (s, list) = api
        .send(Method::GET, "/v1/billing/runs", &owner, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["data"][0]["id"], id.as_str());

    // Another tenant sees neither the run nor it in its list.
    let other = token("ten_billing_other", "owner", &["owner"]);
    let (s, _) = api
        .send(Method::GET, &format!("/v1/billing/runs/{id}"), &other, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = api
        .send(Method::GET, "/v1/billing/runs", &other, None)
        .await;
    assert_eq!(list["data"], json!([]));

    // Bad input is named; the load-test flag runs the pipeline without storing anything.
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/billing/runs",
            &operator,
            Some(json!({"period_start": "x", "period_end": "y"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/billing/runs",
            &operator,
            Some(json!({"period_start": now.to_rfc3339(), "period_end": now.to_rfc3339()})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    // Load-test switches are not on the public API (`cargo xtask bench billing` has them).
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/billing/runs",
            &operator,
            Some(
                json!({"period_start": (now - chrono::Duration::days(1)).to_rfc3339(),
                        "period_end": now.to_rfc3339(), "synthetic_records": 100000}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("synthetic_records"),
        "{p}"
    );
    // A run may name many tenants (its set is keyed by a digest), up to a bound.
    let start = (now - chrono::Duration::days(2)).to_rfc3339();
    let run_over = |n: usize| {
        let tenants: Vec<String> = (0..n).map(|i| format!("ten_{i:032x}")).collect();
        api.send(
            Method::POST,
            "/v1/billing/runs",
            &operator,
            Some(json!({"period_start": start, "period_end": now.to_rfc3339(), "tenant_ids": tenants})),
        )
    };
    let (s, p) = run_over(200).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{p}");
    let (s, again) = run_over(200).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(again["id"], p["id"], "the same set is the same run");
    let (s, p) = run_over(1001).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "tenant_ids", "{p}");
    stack.stop().await;
}

/// When each price is billed is part of the plan: shown back as set, and refused where it
/// cannot hold (usage is only known at a period's end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_say_when_they_are_billed() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let plan = |id: &str, billing: &str, kind: &str| {
        let metric = (kind == "metered").then_some("api_calls");
        json!({"id": id, "name": id, "currency": "USD", "interval": "month",
               "prices": [{"id": "p", "kind": kind, "metric": metric, "billing": billing,
                           "model": {"type": "per_unit", "unit_amount": "1"}}]})
    };
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            &operator,
            Some(plan("late", "arrears", "seat")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, p) = api
        .send(Method::GET, "/v1/plans/late", &operator, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["prices"][0]["billing"], "arrears", "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            &operator,
            Some(plan("odd", "later", "seat")),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "prices.billing", "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            &operator,
            Some(plan("early", "advance", "metered")),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p.to_string().contains("billing"), "{p}");
    stack.stop().await;
}
