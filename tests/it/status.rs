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

/// Every `/metrics` (the gateway's and each service's) is read by the Prometheus project's own
/// Python parser, not only by our string matching; histograms come as cumulative buckets that
/// end in `+Inf` = `_count`, and none as a summary (whose sketches once crept every
/// service's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_parses_with_the_prometheus_client() {
    let stack = Stack::start().await;
    // Requests of each kind, so the histograms have samples: the status fans out over gRPC.
    eventually(&stack.url("/v1/status"), |_, b| b["status"] == "ok").await;
    let (code, _) = get_json(&stack.url("/v1/nowhere")).await;
    assert_eq!(code, 404);

    let mut urls = vec![("gateway".to_string(), stack.url("/metrics"))];
    for (name, svc) in &stack.services {
        urls.push((name.short().to_string(), format!("{}/metrics", svc.url())));
    }
    let dir = std::env::temp_dir().join(format!("metrics-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (name, url) in &urls {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let file = dir.join(name);
        std::fs::write(&file, resp.text().await.unwrap()).unwrap();
        files.push(file);
    }
    let paths: Vec<&std::path::Path> = files.iter().map(|f| f.as_path()).collect();
    let parsed = crate::py::run("parse_metrics.py", &paths);
    let _ = std::fs::remove_dir_all(&dir);
    stack.stop().await;

    for ((name, _), families) in urls.iter().zip(parsed.as_array().expect("one per file")) {
        let families = families.as_object().expect("families by name");
        let http = &families["http_request_duration_seconds"];
        assert_eq!(http["type"], "histogram", "{name}");
        let les: Vec<&str> = http["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[1]["le"].as_str())
            .collect();
        assert_eq!(les.first(), Some(&"0.0005"), "{name}: {les:?}");
        assert!(les.contains(&"+Inf"), "{name}: {les:?}");
        for (family, f) in families {
            assert_ne!(f["type"], "summary", "{name}: {family} is a summary");
            if f["type"] == "histogram" {
                check_histogram(&format!("{name}: {family}"), f);
            }
        }
    }
}

/// Per label set: bucket counts never fall as `le` grows, and the `+Inf` bucket is `_count`.
fn check_histogram(what: &str, family: &Value) {
    use std::collections::BTreeMap;
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for s in family["samples"].as_array().unwrap() {
        let (sample, value) = (s[0].as_str().unwrap(), s[2].as_f64().unwrap_or(f64::NAN));
        let mut labels = s[1].as_object().unwrap().clone();
        let le = labels.remove("le");
        let key = Value::Object(labels).to_string();
        if sample.ends_with("_bucket") {
            let le = le
                .and_then(|l| l.as_str()?.parse::<f64>().ok())
                .expect("le");
            buckets.entry(key).or_default().push((le, value));
        } else if sample.ends_with("_count") {
            counts.insert(key, value);
        }
    }
    assert!(!buckets.is_empty(), "{what}: no buckets");
    for (labels, mut b) in buckets {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(
            b.windows(2).all(|w| w[0].1 <= w[1].1),
            "{what} {labels}: {b:?}"
        );
        assert_eq!(
            b.last().map(|l| l.0),
            Some(f64::INFINITY),
            "{what} {labels}"
        );
        assert_eq!(
            b.last().map(|l| l.1),
            counts.get(&labels).copied(),
            "{what} {labels}"
        );
    }
}
