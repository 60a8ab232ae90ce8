//! Subscriptions, usage and entitlements through the gateway: permissions, isolation,
//! partial-success ingestion, rollup queries and entitlement answers.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::stack::{Api, Stack, token};

/// A plan with one metered price and a hard limit of 100 api_calls, made through the catalog
/// routes; checks the catalog's permissions, versioning and validation on the way.
async fn seed_plan(api: &Api, operator: &str, member: &str) {
    let plan = json!({
        "id": "metered", "name": "Metered", "currency": "EUR", "interval": "month",
        "prices": [{"id": "calls", "kind": "metered", "metric": "api_calls",
                    "model": {"type": "graduated", "tiers": [
                        {"up_to": "10", "unit_amount": "0"}, {"unit_amount": 0.5}]}}],
        "features": [{"key": "calls", "type": "limit", "metric": "api_calls", "limit": "100",
                      "limit_kind": "hard"}, {"key": "sso", "type": "boolean", "enabled": true}],
    });
    let (s, _) = api
        .send(Method::POST, "/v1/plans", member, Some(plan.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, p) = api
        .send(Method::POST, "/v1/plans", operator, Some(plan.clone()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(
        (
            p["version"].clone(),
            p["prices"][0]["model"]["tiers"][1]["unit_amount"].clone()
        ),
        (json!(1), json!("0.5"))
    );
    // An edit is a new version; the first stays readable.
    let (s, p) = api
        .send(
            Method::PUT,
            "/v1/plans/metered",
            operator,
            Some(plan.clone()),
        )
        .await;
    assert_eq!((s, p["version"].clone()), (StatusCode::OK, json!(2)));
    let (s, p) = api
        .send(Method::GET, "/v1/plans/metered?version=1", member, None)
        .await;
    assert_eq!((s, p["version"].clone()), (StatusCode::OK, json!(1)));
    let (s, l) = api.send(Method::GET, "/v1/plans", member, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        l["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "metered")
    );
    // Bad definitions are named.
    let mut bad = plan.clone();
    bad["id"] = json!("broken");
    bad["prices"][0]["model"]["tiers"] = json!([{"up_to": "10", "unit_amount": "1"}]);
    let (s, p) = api
        .send(Method::POST, "/v1/plans", operator, Some(bad))
        .await;
    assert_eq!(
        (s, p["errors"][0]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("tiers.up_to")),
        "{p}"
    );
    let (s, _) = api.send(Method::GET, "/v1/plans/nope", member, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The README's example plan is accepted as written.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let at = readme
        .find("localhost:8080/v1/plans -H")
        .expect("README shows POST /v1/plans");
    let body = readme[at..]
        .split("-d '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let example: serde_json::Value = serde_json::from_str(body).expect("README plan is JSON");
    let (s, p) = api
        .send(Method::POST, "/v1/plans", operator, Some(example))
        .await;
    assert_eq!(s, StatusCode::CREATED, "README example plan: {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_entitlements_through_the_gateway() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (a, b) = ("ten_metering_a", "ten_metering_b");
    let owner_a = token(a, "owner", &["owner"]);
    let member_a = token(a, "member", &["member"]);
    let owner_b = token(b, "owner", &["owner"]);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    seed_plan(&api, &operator, &member_a).await;

    let (s, sub) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{a}/subscription"),
            &owner_a,
            Some(json!({"plan_id": "metered"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["status"], "active");
    let (s, _) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{a}/subscription"),
            &owner_a,
            Some(json!({"plan_id": "metered"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Members may read but not subscribe; another tenant sees nothing.
    let (s, _) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{a}/subscription/cancel"),
            &member_a,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for path in [
        format!("/v1/tenants/{a}/subscription"),
        format!("/v1/tenants/{a}/subscription/seats"),
        format!("/v1/tenants/{a}/entitlements/calls"),
        format!(
            "/v1/tenants/{a}/usage?metric=api_calls&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"
        ),
    ] {
        let (s, body) = api.send(Method::GET, &path, &owner_b, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["status"], 404);
    }

    // Usage needs usage:write (the operator, or an API key scoped to it).
    let now = chrono::Utc::now();
    let t = now.to_rfc3339();
    let (s, _) = api
        .send(
            Method::POST,
            "/v1/usage",
            &owner_a,
            Some(json!({"records": []})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, report) = api
        .send(
            Method::POST,
            "/v1/usage",
            &operator,
            Some(json!({"records": [
                {"id": "r1", "tenant_id": a, "metric": "api_calls", "quantity": 60, "timestamp": t},
                {"id": "r2", "tenant_id": a, "metric": "api_calls", "quantity": "not a number", "timestamp": t},
                {"id": "r3", "tenant_id": a, "metric": "api_calls", "quantity": "1", "timestamp": "yesterday"},
                {"id": "r4", "tenant_id": a, "metric": "storage", "quantity": "1", "timestamp": t},
                {"id": "r5", "tenant_id": b, "metric": "api_calls", "quantity": "1", "timestamp": t},
                {"id": "r6", "tenant_id": a, "user_id": "usr_1", "metric": "api_calls", "quantity": "39.5", "timestamp": t},
                {"id": "r1", "tenant_id": a, "metric": "api_calls", "quantity": 60, "timestamp": t},
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        (report["accepted"].clone(), report["duplicates"].clone()),
        (json!(2), json!(1))
    );
    let rejected: Vec<(u64, &str)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "invalid"),
            (2, "invalid"),
            (3, "unknown_metric"),
            (4, "unknown_tenant")
        ]
    );

    let (s, e) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{a}/entitlements/calls"),
            &member_a,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        (
            e["allowed"].clone(),
            e["used"].clone(),
            e["remaining"].clone()
        ),
        (json!(true), json!("99.5"), json!("0.5"))
    );
    api.send(
        Method::POST,
        "/v1/usage",
        &operator,
        Some(json!({"records": [{"id": "r7", "tenant_id": a, "metric": "api_calls", "quantity": "0.5", "timestamp": t}]})),
    )
    .await;
    let (_, e) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{a}/entitlements/calls"),
            &member_a,
            None,
        )
        .await;
    assert_eq!(
        (e["allowed"].clone(), e["reason"].clone()),
        (json!(false), json!("limit_reached"))
    );

    let from =
        (now - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (now + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, u) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{a}/usage?metric=api_calls&from={from}&to={to}&granularity=hour"),
            &member_a,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["total"], "100");
    let (s, u) = api
        .send(Method::GET, &format!("/v1/tenants/{a}/usage?metric=api_calls&from={from}&to={to}&granularity=period&user_id=usr_1"), &member_a, None)
        .await;
    assert_eq!((s, u["total"].clone()), (StatusCode::OK, json!("39.5")));
    let (s, p) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{a}/usage?metric=api_calls&from=x&to={to}"),
            &member_a,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");

    // Too many records: one clear 422, nothing stored.
    let calls = |prefix: &str, n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({"id": format!("{prefix}{i}"), "tenant_id": a, "metric": "api_calls", "quantity": 1, "timestamp": t}))
            .collect()
    };
    let many = calls("m", 10_001);
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/usage",
            &operator,
            Some(json!({"records": many})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    // A full batch of 10,000 fits the body limit.
    let full = calls("f", 10_000);
    let (s, r) = api
        .send(
            Method::POST,
            "/v1/usage",
            &operator,
            Some(json!({"records": full})),
        )
        .await;
    assert_eq!((s, r["accepted"].clone()), (StatusCode::OK, json!(10_000)));

    let (s, c) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{a}/subscription/cancel"),
            &owner_a,
            Some(json!({"immediately": true})),
        )
        .await;
    assert_eq!(
        (s, c["status"].clone()),
        (StatusCode::OK, json!("canceled"))
    );
    let (_, e) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{a}/entitlements/calls"),
            &member_a,
            None,
        )
        .await;
    assert_eq!(e["reason"], "subscription_canceled");
    stack.stop().await;
}
