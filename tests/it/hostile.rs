//! The bad-input cases black-box testing found, each through the gateway: every one used to
//! answer 500 (or the wrong 4xx); each must be a 4xx problem naming what is wrong.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::identity::admin;
use crate::stack::{Api, Stack};

async fn raw(api: &Api, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    api.send(method, path, &admin(), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_overlong_values_are_refused_at_the_edge() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    // A NUL byte in a query value reached Postgres.
    let (s, p) = raw(&api, Method::GET, "/v1/billing/runs?tenant_id=%00abc", None).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_query")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("tenant_id"), "{p}");
    // ... or in a path segment; an overlong id is refused too.
    for path in [
        "/v1/billing/runs/run_%00".to_string(),
        format!("/v1/tenants/{}", "t".repeat(300)),
    ] {
        let (s, p) = raw(&api, Method::GET, &path, None).await;
        assert_eq!(
            (s, p["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_path")),
            "{path}: {p}"
        );
    }
    // A usage record with a 1 MB id broke the gRPC message limit (500).
    let (s, p) = raw(
        &api,
        Method::POST,
        "/v1/usage",
        Some(json!({"records": [{"id": "r".repeat(1 << 20), "tenant_id": "ten_x", "metric": "api_calls", "quantity": 1, "timestamp": "2026-01-01T00:00:00Z"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "id", "{p}");
    // NUL inside a JSON string, on a route whose service stores text.
    let (s, p) = raw(
        &api,
        Method::POST,
        "/v1/tenants",
        Some(json!({"name": "Evil\u{0}Corp", "slug": "evil-corp"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["errors"][0]["field"], "name", "{p}");
    let (_, list) = raw(&api, Method::GET, "/v1/tenants", None).await;
    assert!(
        !list.to_string().contains("evil-corp"),
        "nothing was created: {list}"
    );
    stack.stop().await;
}
