//! The east-west channel (`platform::grpc::Channel`) against real servers: an absent peer is
//! UNAVAILABLE, a silent one DEADLINE_EXCEEDED, and a restarted one is reached again.

use std::time::Duration;

use platform::grpc::{check_health, lazy_channel};
use platform::{AppBuilder, CancellationToken, ServiceName};
use tokio::net::TcpListener;

fn app() -> platform::App {
    let cfg = test_support::config(
        ServiceName::User,
        "postgres://unused@localhost/unused",
        &test_support::unique_prefix(),
        &[],
    );
    AppBuilder::new(cfg).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_peer_is_unavailable() {
    // Bind and drop: a port nothing listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let ch = lazy_channel(&format!("http://{addr}"), Duration::from_secs(2)).unwrap();
    let err = check_health(ch).await.unwrap_err();
    assert!(err.contains("connecting to"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_runs_into_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // An HTTP/2 server that takes every call and never answers.
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(tcp).await.unwrap();
        let mut held = Vec::new();
        while let Some(Ok(call)) = conn.accept().await {
            held.push(call);
        }
    });
    let ch = lazy_channel(&format!("http://{addr}"), Duration::from_millis(300)).unwrap();
    let err = check_health(ch).await.unwrap_err();
    assert!(err.contains("no answer from"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reached_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let first = tokio::spawn(app().serve(listener, stop.clone()));
    let ch = lazy_channel(&format!("http://{addr}"), Duration::from_secs(2)).unwrap();
    check_health(ch.clone()).await.expect("serving");

    stop.cancel();
    first.await.unwrap().unwrap();
    assert!(
        check_health(ch.clone()).await.is_err(),
        "nobody is serving now"
    );

    // The same port again: the channel reconnects on its own.
    let stop = CancellationToken::new();
    let second = tokio::spawn(app().serve(TcpListener::bind(addr).await.unwrap(), stop.clone()));
    let mut last = Err(String::new());
    for _ in 0..40 {
        last = check_health(ch.clone()).await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, Ok(()));
    stop.cancel();
    second.await.unwrap().unwrap();
}

/// An HTTP/2 server on a free port that counts the calls it gets and answers each with
/// gRPC status UNIMPLEMENTED (enough to tell which replica a call reached).
async fn counting_peer() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = conn.accept().await {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let head = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "12")
                        .body(())
                        .unwrap();
                    let _ = respond.send_response(head, true);
                }
            });
        }
    });
    (format!("http://{addr}"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_take_calls_in_turn_and_one_that_is_down_is_passed_over() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (a, at_a) = counting_peer().await;
    let (b, at_b) = counting_peer().await;
    let ch = lazy_channel(&format!("http://{dead},{a},{b}"), Duration::from_secs(2)).unwrap();
    for _ in 0..12 {
        let err = check_health(ch.clone()).await.unwrap_err();
        // Every call reached a live replica (which answers UNIMPLEMENTED), none failed on
        // the dead one.
        assert!(err.contains("not implemented"), "{err}");
    }
    let (at_a, at_b) = (
        at_a.load(std::sync::atomic::Ordering::SeqCst),
        at_b.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert_eq!(at_a + at_b, 12);
    assert!(
        at_a >= 4 && at_b >= 4,
        "spread over both: {at_a} and {at_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_is_resolved_to_its_addresses_and_called() {
    let (url, calls) = counting_peer().await;
    let port = url.rsplit(':').next().unwrap();
    // `localhost` resolves to the peer's address (a Kubernetes headless Service resolves to
    // every ready pod's).
    let ch = lazy_channel(&format!("dns://localhost:{port}"), Duration::from_secs(2)).unwrap();
    for _ in 0..3 {
        let err = check_health(ch.clone()).await.unwrap_err();
        assert!(err.contains("not implemented"), "{err}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);

    let nowhere = lazy_channel("dns://no-such-peer.invalid:50051", Duration::from_secs(2)).unwrap();
    let err = check_health(nowhere).await.unwrap_err();
    assert!(err.contains("no-such-peer.invalid:50051"), "{err}");
    for bad in ["dns://svc", "dns://", "dns://svc:port"] {
        assert!(
            lazy_channel(bad, Duration::from_secs(1)).is_err(),
            "{bad} accepted"
        );
    }
}
