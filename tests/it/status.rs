//! The gateway sees every service: `/v1/status` and `/readyz`.

use std::time::Duration;

use platform::ServiceName;
use serde_json::Value;

use crate::stack::Stack;

async fn get_json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("gateway answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// Polls until `pred` holds (services report SERVING a moment after they bind).
async fn eventually(url: &str, pred: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let mut last = (0, Value::Null);
    for _ in 0..50 {
        last = get_json(url).await;
        if pred(last.0, &last.1) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reports_all_seven_services_healthy() {
    let stack = Stack::start().await;

    let (code, body) = eventually(&stack.url("/v1/status"), |_, b| b["status"] == "ok").await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "ok", "{body:#}");
    let services = body["services"].as_object().expect("services object");
    assert_eq!(services.len(), 6, "{body:#}");
    for s in ServiceName::internal() {
        assert_eq!(services[s.short()]["ok"], true, "{} in {body:#}", s.short());
    }

    let (code, ready) = get_json(&stack.url("/readyz")).await;
    assert_eq!(code, 200, "{ready:#}");
    assert_eq!(ready["status"], "ready");

    // Every internal service answers its own probes and metrics.
    for (name, svc) in &stack.services {
        let (code, body) = get_json(&format!("{}/readyz", svc.url())).await;
        assert_eq!(code, 200, "{name}: {body:#}");
        assert_eq!(body["checks"]["postgres"]["ok"], true);
        assert_eq!(body["checks"]["nats"]["ok"], true);
        let metrics = reqwest::get(format!("{}/metrics", svc.url()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("limiter_max_workers"), "{name}: {metrics}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_shows_as_degraded() {
    let mut stack = Stack::start().await;
    eventually(&stack.url("/v1/status"), |_, b| b["status"] == "ok").await;

    let idx = stack
        .services
        .iter()
        .position(|(s, _)| *s == ServiceName::Billing)
        .expect("billing is in the stack");
    let (_, billing) = stack.services.remove(idx);
    billing.stop().await;

    let (code, body) = eventually(&stack.url("/v1/status"), |_, b| b["status"] == "degraded").await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "degraded", "{body:#}");
    assert_eq!(body["services"]["billing"]["ok"], false);
    assert_eq!(body["services"]["user"]["ok"], true);

    let (code, ready) = get_json(&stack.url("/readyz")).await;
    assert_eq!(code, 503, "{ready:#}");
    assert_eq!(ready["checks"]["billing"]["ok"], false);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_answer_problem_json() {
    let stack = Stack::start().await;
    let resp = reqwest::get(stack.url("/v1/nope")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        resp.headers()["content-type"],
        platform::problem::CONTENT_TYPE
    );
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "route_not_found");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_compression() {
    let stack = Stack::start().await;
    let client = reqwest::Client::new();
    let pre = client
        .request(reqwest::Method::OPTIONS, stack.url("/v1/tenants"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    let spec = client
        .get(stack.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(spec.headers()["content-encoding"], "gzip");
    stack.stop().await;
}
