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

/// One keep-alive client that writes each request's head and body separately (as Python's
/// http.client does), through a mix of 201s and 429s: no request may be lost to a connection
/// the gateway closes under it. Answers the count of (created, limited, transport errors).
async fn keep_alive_loop(addr: &str, bearer: &str, n: usize) -> (usize, usize, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp: Option<tokio::net::TcpStream> = None;
    let (mut created, mut limited, mut errors) = (0, 0, 0);
    for i in 0..n {
        let body = json!({"name": format!("KA {i}"), "slug": format!("ka-{i}")}).to_string();
        let head = format!(
            "POST /v1/tenants HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {bearer}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let conn = match &mut tcp {
            Some(c) => c,
            None => tcp.insert(tokio::net::TcpStream::connect(addr).await.unwrap()),
        };
        let sent = async {
            conn.write_all(head.as_bytes()).await?;
            tokio::task::yield_now().await;
            conn.write_all(body.as_bytes()).await
        }
        .await;
        // Read the head, then exactly content-length bytes of body.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let answer = async {
            sent?;
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = conn.read(&mut chunk).await?;
                        if n == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    return Ok::<_, std::io::Error>(head);
                }
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        .await;
        match answer {
            Ok(head) => {
                if head.starts_with("http/1.1 201") {
                    created += 1;
                } else if head.starts_with("http/1.1 429") {
                    limited += 1;
                }
                if head.contains("connection: close") {
                    tcp = None;
                }
            }
            Err(_) => {
                errors += 1;
                tcp = None;
            }
        }
    }
    (created, limited, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_lose_no_request_to_a_closing_connection() {
    let stack = Stack::start_with(&[
        // Mostly 429s (answered before the body is read), some 201s.
        ("RATE_LIMIT_CALLER_PER_SEC", "5"),
        ("RATE_LIMIT_CALLER_BURST", "5"),
    ])
    .await;
    let addr = stack
        .gateway
        .url()
        .trim_start_matches("http://")
        .to_string();
    let (created, limited, errors) = keep_alive_loop(&addr, &admin(), 1_500).await;
    assert_eq!(errors, 0, "{created} created, {limited} limited");
    assert!(
        created > 0 && limited > 0,
        "{created} created, {limited} limited"
    );
    assert_eq!(created + limited, 1_500);
    stack.stop().await;
}
