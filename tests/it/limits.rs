//! Rate limits per caller and per tenant, and behaviour with Redis down.

use reqwest::StatusCode;
use serde_json::json;

use crate::stack::{Stack, token};

async fn create_tenant(stack: &Stack, slug: &str) -> String {
    let admin = token("ten_platform", "operator", &["platform_admin"]);
    let resp = reqwest::Client::new()
        .post(stack.url("/v1/tenants"))
        .bearer_auth(admin)
        .json(&json!({"name": slug, "slug": slug}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(stack: &Stack, tenant: &str, bearer: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(stack.url(&format!("/v1/tenants/{tenant}")))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limit_is_shared_by_its_callers_and_answers_429_with_headers() {
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_TENANT_PER_SEC", "1"),
        ("RATE_LIMIT_TENANT_BURST", "5"),
    ])
    .await;
    let a = create_tenant(&stack, "limited-a").await;
    let b = create_tenant(&stack, "limited-b").await;
    let alice = token(&a, "alice", &["viewer"]);
    let bob = token(&a, "bob", &["viewer"]);

    for i in 0..5 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let r = get(&stack, &a, who).await;
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        assert!(r.headers().contains_key("ratelimit-remaining"));
    }
    let r = get(&stack, &a, &bob).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert_eq!(r.headers()["ratelimit-limit"], "5");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");

    // Another tenant has its own budget.
    let carol = token(&b, "carol", &["viewer"]);
    assert_eq!(get(&stack, &b, &carol).await.status(), StatusCode::OK);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_limit_applies_per_caller() {
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_CALLER_PER_SEC", "1"),
        ("RATE_LIMIT_CALLER_BURST", "3"),
    ])
    .await;
    let t = create_tenant(&stack, "callers").await;
    let alice = token(&t, "alice", &["viewer"]);
    let bob = token(&t, "bob", &["viewer"]);
    for _ in 0..3 {
        assert_eq!(get(&stack, &t, &alice).await.status(), StatusCode::OK);
    }
    assert_eq!(
        get(&stack, &t, &alice).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(get(&stack, &t, &bob).await.status(), StatusCode::OK);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_serving_and_refuses_idempotency_keys() {
    // Nothing listens on port 1.
    let stack = Stack::start_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let t = create_tenant(&stack, "no-redis").await;
    let owner = token(&t, "owner", &["owner"]);
    let r = get(&stack, &t, &owner).await;
    assert_eq!(r.status(), StatusCode::OK, "served on the local limit");
    let r = reqwest::Client::new()
        .post(stack.url(&format!("/v1/tenants/{t}/users")))
        .bearer_auth(&owner)
        .header("Idempotency-Key", "k")
        .json(&json!({"email": "x@y.zz"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_limit_is_sized_by_its_plan() {
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_TENANT_PER_SEC", "1000"),
        ("RATE_LIMIT_TENANT_BURST", "1000"),
        ("RATE_LIMIT_CALLER_PER_SEC", "10000"),
        ("RATE_LIMIT_CALLER_BURST", "10000"),
    ])
    .await;
    let api = crate::stack::Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let (s, p) = api
        .send(
            reqwest::Method::POST,
            "/v1/plans",
            &operator,
            Some(
                json!({"id": "tiny", "name": "Tiny", "currency": "USD", "interval": "month",
                        "rate_limit": {"per_sec": 1, "burst": 3}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["rate_limit"], json!({"per_sec": 1, "burst": 3}));
    let small = create_tenant(&stack, "small-plan").await;
    let other = create_tenant(&stack, "default-plan").await;
    let (s, _) = api
        .send(
            reqwest::Method::POST,
            &format!("/v1/tenants/{small}/subscription"),
            &operator,
            Some(json!({"plan_id": "tiny"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let viewer = token(&small, "v", &["viewer"]);
    for i in 0..3 {
        let r = get(&stack, &small, &viewer).await;
        assert_eq!(r.status(), StatusCode::OK, "request {i}");
        assert_eq!(r.headers()["ratelimit-limit"], "3");
    }
    let r = get(&stack, &small, &viewer).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // A tenant without such a plan keeps the configured default.
    let v2 = token(&other, "v", &["viewer"]);
    for _ in 0..5 {
        let r = get(&stack, &other, &v2).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["ratelimit-limit"], "1000");
    }
    stack.stop().await;
}
