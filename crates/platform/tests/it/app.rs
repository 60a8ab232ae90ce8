//! One port serving HTTP and gRPC: probes, gRPC health following readiness, panics and
//! timeouts as problems, graceful drain on shutdown.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use platform::{AppBuilder, ServiceName};

fn config(extra: &[(&str, String)]) -> platform::ServiceConfig {
    test_support::config(
        ServiceName::User,
        "postgres://unused@localhost/unused",
        &test_support::unique_prefix(),
        extra,
    )
}

fn routes() -> Router {
    Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler bug");
                }
                "unreachable"
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_drives_http_probe_and_grpc_health() {
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = ready.clone();
    let app = AppBuilder::new(config(&[]))
        .ready_check("database", move || {
            let ok = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err("connection refused".to_string())
                }
            }
        })
        .build();
    let svc = test_support::spawn(app).await;
    let channel = platform::grpc::lazy_channel(&svc.url(), Duration::from_secs(2)).unwrap();

    let resp = reqwest::get(format!("{}/readyz", svc.url())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        reqwest::get(format!("{}/healthz", svc.url()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    platform::grpc::check_health(channel.clone())
        .await
        .expect("serving");

    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    let resp = reqwest::get(format!("{}/readyz", svc.url())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["checks"]["database"]["error"], "connection refused");
    // The gRPC health status follows within its refresh period (2 s).
    let mut grpc = Ok(());
    for _ in 0..40 {
        grpc = platform::grpc::check_health(channel.clone()).await;
        if grpc.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(grpc, Err("status NOT_SERVING".to_string()));
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_timeouts_become_problems() {
    let app = AppBuilder::new(config(&[("REQUEST_TIMEOUT_MS", "200".into())]))
        .http(routes())
        .build();
    let svc = test_support::spawn(app).await;

    let resp = reqwest::get(format!("{}/panic", svc.url())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "internal");
    assert!(
        !body.to_string().contains("handler bug"),
        "internals stay inside"
    );

    let resp = reqwest::get(format!("{}/slow", svc.url())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 504);

    // Still serving after both.
    let resp = reqwest::get(format!("{}/healthz", svc.url()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_set_and_propagated() {
    let svc = test_support::spawn(AppBuilder::new(config(&[])).build()).await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/healthz", svc.url()))
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let resp = client
        .get(format!("{}/healthz", svc.url()))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    // An id no log should carry is replaced, not propagated.
    let resp = client
        .get(format!("{}/healthz", svc.url()))
        .header("x-request-id", "x".repeat(200))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_are_labelled_by_route_template_and_bounded() {
    let svc = test_support::spawn(AppBuilder::new(config(&[])).build()).await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/no/such/route", "/another/junk/path"] {
        client
            .get(format!("{}{path}", svc.url()))
            .send()
            .await
            .unwrap();
    }
    let made_up = reqwest::Method::from_bytes(b"BREW").unwrap();
    client
        .request(made_up, format!("{}/healthz", svc.url()))
        .send()
        .await
        .unwrap();
    let text = client
        .get(format!("{}/metrics", svc.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let requests: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .collect();
    let has = |parts: &[&str]| requests.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&["method=\"GET\"", "route=\"/healthz\"", "status=\"200\""]),
        "{requests:#?}"
    );
    assert!(
        has(&["route=\"unmatched\"", "status=\"404\""]),
        "{requests:#?}"
    );
    assert!(has(&["method=\"other\""]), "{requests:#?}");
    // This very request's connection is open (other tests in the process may add more).
    let open: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("connections_open{protocol=\"http1\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connections_open gauge:\n{text}"));
    assert!(open >= 1.0, "{open}");
    assert!(
        !requests
            .iter()
            .any(|l| l.contains("junk") || l.contains("BREW")),
        "paths and methods callers make up stay out of the labels: {requests:#?}"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_then_refuses_new_ones() {
    let app = AppBuilder::new(config(&[])).http(routes()).build();
    let svc = test_support::spawn(app).await;
    let url = svc.url();

    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            reqwest::get(format!("{url}/slow"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    svc.stop().await; // returns once the server has drained
    assert_eq!(
        in_flight.await.unwrap(),
        "done",
        "the in-flight request completed"
    );
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer accepting"
    );
}

/// HTTP/2 connections are driven in batches (`batched.rs`) and watched like HTTP/1 ones: a
/// call in flight finishes, while a connection that never sent a byte does not hold the
/// drain up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_http2_calls_and_does_not_wait_for_silent_connections() {
    let grace = Duration::from_secs(20);
    let app = AppBuilder::new(config(&[(
        "SHUTDOWN_GRACE_SECS",
        grace.as_secs().to_string(),
    )]))
    .http(routes())
    .build();
    let svc = test_support::spawn(app).await;
    let url = svc.url();
    let silent = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
    let in_flight = tokio::spawn({
        let (h2, url) = (h2.clone(), url.clone());
        async move {
            let resp = h2.get(format!("{url}/slow")).send().await.unwrap();
            (resp.version(), resp.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    svc.stop().await;
    assert!(
        started.elapsed() < grace,
        "the silent connection held the drain for the whole grace period"
    );
    assert_eq!(
        in_flight.await.unwrap(),
        (reqwest::Version::HTTP_2, "done".to_string())
    );
    drop(silent);
}

/// Slow clients are cut off: a connection that sends nothing, and one that stalls halfway
/// through a request head, are both closed after `HEADER_READ_TIMEOUT_MS`; a client that
/// sends its request in time is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_stall_before_a_complete_request_head_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = AppBuilder::new(config(&[("HEADER_READ_TIMEOUT_MS", "300".to_string())])).build();
    let svc = test_support::spawn(app).await;
    let addr = svc.url().trim_start_matches("http://").to_string();
    // Reads until the server closes; what it sent, or None if it kept the connection open.
    async fn until_closed(mut tcp: tokio::net::TcpStream) -> Option<String> {
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got));
        match read.await {
            Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
            Err(_) => None,
        }
    }
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(&addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (silent, partial) = tokio::join!(until_closed(silent), until_closed(partial));
    assert!(silent.is_some(), "a silent connection was kept open");
    let partial = partial.expect("a stalled request head kept its connection open");
    assert!(
        !partial.contains("200 OK"),
        "a half-sent request was answered: {partial}"
    );
    let mut prompt = tokio::net::TcpStream::connect(&addr).await.unwrap();
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(prompt).await.expect("closed after answering");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    svc.stop().await;
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the server's tasks run where the subscriber below is the default (no global
// subscriber: under plain `cargo test` other tests share the process).
#[tokio::test(flavor = "current_thread")]
async fn every_request_leaves_one_access_log_line_in_its_span() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let svc = test_support::spawn(AppBuilder::new(config(&[])).build()).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/healthz", svc.url()))
        .header("x-request-id", "req-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    svc.stop().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request finished") && l.contains("req-log-1"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("status=200"), "{}", lines[0]);
    assert!(lines[0].contains("path=/healthz"), "{}", lines[0]);
}

/// Reads one HTTP/1 response head from `tcp` (lower-cased).
async fn response_head(tcp: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_was_read_tells_keep_alive_clients_to_reconnect() {
    use tokio::io::AsyncWriteExt;
    let app = AppBuilder::new(config(&[]))
        .http(Router::new().route(
            "/echo",
            axum::routing::post(|body: String| async move { body }),
        ))
        .build();
    let svc = test_support::spawn(app).await;
    let addr = svc.url().trim_start_matches("http://").to_string();
    // The body is announced but not sent yet when the answer (404: no such route) is decided,
    // as when a client writes headers and body separately. Before, this response promised
    // keep-alive and the connection was then closed under the client's next request.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"POST /nowhere HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n")
        .await
        .unwrap();
    let head = response_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // A body that was read keeps the connection: two requests on one connection.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for _ in 0..2 {
        tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let head = response_head(&mut tcp).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        // The 5-byte body follows the head; the next read starts after it.
        let mut body = [0u8; 5];
        use tokio::io::AsyncReadExt;
        if !head.ends_with("hello") {
            tcp.read_exact(&mut body).await.unwrap();
        }
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let app = AppBuilder::new(config(&[("HTTP2_IDLE_TIMEOUT_SECS", "1".into())]))
        .http(routes())
        .build();
    let svc = test_support::spawn(app).await;
    let tcp = tokio::net::TcpStream::connect(svc.url().trim_start_matches("http://"))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = axum::http::Request::get(format!("{}/healthz", svc.url()))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    // Then nothing: the server says GOAWAY and the connection ends (bounded wait; it was
    // never closed before).
    let ended = tokio::time::timeout(Duration::from_secs(20), driver).await;
    assert!(ended.is_ok(), "the idle connection is still open");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    use tokio::io::AsyncWriteExt;
    let app = AppBuilder::new(config(&[("MAX_CONNECTIONS", "1".into())]))
        .http(routes())
        .build();
    let svc = test_support::spawn(app).await;
    let addr = svc.url().trim_start_matches("http://").to_string();
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(response_head(&mut first).await.starts_with("http/1.1 200"));
    // The first connection stays open (keep-alive): the second is not served meanwhile.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let waiting =
        tokio::time::timeout(Duration::from_millis(500), response_head(&mut second)).await;
    assert!(waiting.is_err(), "served beyond the cap");
    drop(first);
    assert!(response_head(&mut second).await.starts_with("http/1.1 200"));
    svc.stop().await;
}
