//! `/openapi.json` describes exactly the public routes, and no input shaped from it makes the
//! gateway answer 500.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::stack::{Stack, token};

async fn spec(stack: &Stack) -> Value {
    let resp = reqwest::get(stack.url("/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_lists_exactly_the_routes_of_the_permission_table() {
    let stack = Stack::start().await;
    let spec = spec(&stack).await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    let in_spec: BTreeSet<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let in_table: BTreeSet<(String, String)> = gateway::auth::permissions::ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .chain(
            gateway::auth::permissions::PUBLIC
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string())),
        )
        .collect();
    assert_eq!(in_spec, in_table);
    for (method, path, op) in operations(&spec) {
        let protected = gateway::auth::permissions::ROUTES
            .iter()
            .any(|(m, p, _)| *m == method && *p == path);
        assert_eq!(op.get("security").is_some(), protected, "{method} {path}");
        if protected {
            assert!(op["responses"].get("401").is_some(), "{method} {path}");
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            let content = response["content"].as_object();
            if status.starts_with('4') || status.starts_with('5') {
                let types: Vec<&String> = content.map(|c| c.keys().collect()).unwrap_or_default();
                assert_eq!(
                    types,
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
            }
        }
        // Every route can be rate limited and fed a bad path; bodies can be too large.
        for status in ["400", "429", "500"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{method} {path} {status}"
            );
        }
        if method != "GET" && method != "DELETE" {
            assert!(op["responses"].get("413").is_some(), "{method} {path} 413");
        }
    }
    stack.stop().await;
}

/// xorshift: deterministic, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn hostile_value(r: &mut Rng, depth: u32) -> Value {
    let strings = [
        "",
        " ",
        "a",
        "ü🦀",
        "' OR 1=1 --",
        "\u{0}",
        "%00",
        "../../etc/passwd",
        "<script>",
        "ten_platform",
        "x@y.zz",
        "owner",
        "users:read",
    ];
    match r.next() % 9 {
        0 => Value::Null,
        1 => json!(r.next().is_multiple_of(2)),
        2 => json!(r.next() as i64),
        3 => json!(-1e308),
        4 => json!(r.pick(&strings).to_string()),
        5 => json!("x".repeat((r.next() % 5000) as usize)),
        6 if depth < 3 => Value::Array(
            (0..r.next() % 4)
                .map(|_| hostile_value(r, depth + 1))
                .collect(),
        ),
        _ if depth < 3 => {
            let keys = [
                "name",
                "slug",
                "email",
                "roles",
                "scopes",
                "display_name",
                "owner_email",
                "id",
                "tenant_id",
                "tenant_ids",
                "zzz",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..r.next() % 5 {
                m.insert(r.pick(&keys).to_string(), hostile_value(r, depth + 1));
            }
            Value::Object(m)
        }
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_every_route_is_a_4xx_problem_never_a_500() {
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_CALLER_BURST", "100000"),
        ("RATE_LIMIT_TENANT_BURST", "100000"),
    ])
    .await;
    let spec = spec(&stack).await;
    let admin = token("ten_platform", "operator", &["platform_admin"]);
    let client = reqwest::Client::new();
    let segments = [
        "x",
        "ten_platform",
        "usr_zz",
        "%F0%9F%A6%80",
        "..",
        "a%2Fb",
        &"9".repeat(300),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut sent = 0;
    for (method, path, op) in operations(&spec) {
        for _ in 0..12 {
            let url_path = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        rng.pick(&segments).to_string()
                    } else {
                        seg.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let query = *rng.pick(&[
                "",
                "?limit=0",
                "?limit=-5",
                "?limit=abc",
                "?cursor=%%%",
                "?status=weird",
                "?email=%00",
                "?tenant_id=%00abc",
                "?status=%7F",
                "?unknown=1",
            ]);
            let mut req = client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    stack.url(&format!("{url_path}{query}")),
                )
                .bearer_auth(&admin);
            if method != "GET" && method != "DELETE" {
                req = match rng.next() % 4 {
                    0 => req
                        .header("content-type", "application/json")
                        .body("{not json"),
                    1 => req.header("content-type", "text/plain").body("hello"),
                    _ => req.json(&hostile_value(&mut rng, 0)),
                };
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            sent += 1;
            assert!(
                status.as_u16() < 500 || status == StatusCode::NOT_IMPLEMENTED,
                "{method} {url_path}{query}: {status} {}",
                resp.text().await.unwrap_or_default()
            );
            // (`..` is resolved by the client: the request reaches another route.)
            assert!(
                url_path.contains("/../") || op["responses"].get(status.as_str()).is_some(),
                "{method} {url_path}{query}: {status} is not in the spec"
            );
            if status.is_client_error() {
                assert_eq!(
                    resp.headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap_or("")),
                    Some("application/problem+json"),
                    "{method} {url_path}{query}: {status}"
                );
            }
        }
    }
    assert!(sent > 150, "{sent} requests");
    stack.stop().await;
}
