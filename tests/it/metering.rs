//! Subscriptions, usage and entitlements through the gateway: permissions, isolation,
//! partial-success ingestion, rollup queries and entitlement answers.

use platform::ServiceName;
use platform::grpc::Caller;
use reqwest::{Method, StatusCode};
use rpc::common::v1::Decimal;
use rpc::subscription::v1 as pb;
use serde_json::json;

use crate::stack::{Api, Stack, token};

/// A plan with one metered price and a hard limit of 100 api_calls, made over gRPC as the
/// operator (the catalog's REST routes are not built yet).
async fn seed_plan(stack: &Stack) {
    let url = stack
        .services
        .iter()
        .find(|(s, _)| *s == ServiceName::Subscription)
        .map(|(_, r)| r.url())
        .unwrap();
    let channel = platform::grpc::lazy_channel(&url, std::time::Duration::from_secs(10)).unwrap();
    let mut client = pb::subscription_service_client::SubscriptionServiceClient::new(channel);
    let d = |v: &str| Some(Decimal { value: v.into() });
    let mut req = tonic::Request::new(pb::CreatePlanRequest {
        plan: Some(pb::Plan {
            id: "metered".into(),
            name: "Metered".into(),
            currency: "EUR".into(),
            interval: pb::Interval::Month as i32,
            prices: vec![pb::Price {
                id: "calls".into(),
                kind: pb::ChargeKind::Metered as i32,
                metric: "api_calls".into(),
                model: Some(pb::PriceModel {
                    model: Some(pb::price_model::Model::PerUnit(pb::price_model::PerUnit {
                        unit_amount: d("0.5"),
                    })),
                }),
                ..Default::default()
            }],
            features: vec![pb::Feature {
                key: "calls".into(),
                value: Some(pb::feature::Value::Limit(pb::feature::MeteredLimit {
                    metric: "api_calls".into(),
                    limit: d("100"),
                    kind: pb::LimitKind::Hard as i32,
                })),
            }],
            ..Default::default()
        }),
    });
    Caller {
        tenant_id: "ten_platform".into(),
        subject: "operator".into(),
        roles: vec!["platform_admin".into()],
        request_id: None,
    }
    .apply(&mut req);
    client.create_plan(req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_entitlements_through_the_gateway() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    seed_plan(&stack).await;
    let (a, b) = ("ten_metering_a", "ten_metering_b");
    let owner_a = token(a, "owner", &["owner"]);
    let member_a = token(a, "member", &["member"]);
    let owner_b = token(b, "owner", &["owner"]);
    let operator = token("ten_platform", "operator", &["platform_admin"]);

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
    let many: Vec<_> = (0..10_001)
        .map(|i| json!({"id": format!("m{i}"), "tenant_id": a, "metric": "api_calls", "quantity": 1, "timestamp": t}))
        .collect();
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
    let full: Vec<_> = (0..10_000)
        .map(|i| json!({"id": format!("f{i}"), "tenant_id": a, "metric": "api_calls", "quantity": 1, "timestamp": t}))
        .collect();
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
