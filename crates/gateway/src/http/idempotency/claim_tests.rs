//! Claims against real Redis, with a 1 s lease: a request that runs longer than the lease
//! keeps its claim; a request whose client went away still finishes, and its retry replays
//! it; a claim left by a gateway that died lapses after the lease.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use tokio::sync::Notify;

use super::*;

const LEASE: Duration = Duration::from_secs(1);

/// A router whose `POST /slow` answers 201 once `go` is notified, behind the idempotency
/// layer as caller `ten_claims`/`tester`; and its Redis namespace.
async fn app(go: Arc<Notify>) -> (Router, ConnectionManager, String) {
    let redis = platform::cache::connect(&test_support::redis_url())
        .await
        .unwrap();
    let namespace = test_support::unique_prefix();
    let idem = Idempotency {
        redis: Some(redis.clone()),
        redis_health: Arc::new(platform::cache::Breaker::new(Duration::from_secs(1))),
        max_body_bytes: 1 << 16,
        route_body_limits: &[],
        namespace: namespace.clone(),
        claim_lease: LEASE,
    };
    let router = Router::new()
        .route(
            "/slow",
            post(move || {
                let go = go.clone();
                async move {
                    go.notified().await;
                    StatusCode::CREATED
                }
            }),
        )
        .layer(axum::middleware::from_fn(
            move |mut req: Request, next: Next| {
                let idem = idem.clone();
                async move {
                    req.extensions_mut().insert(Identity {
                        tenant_id: "ten_claims".into(),
                        subject: "tester".into(),
                        roles: Vec::new(),
                        scopes: Vec::new(),
                        request_id: None,
                    });
                    run(&idem, req, next).await
                }
            },
        ));
    (router, redis, namespace)
}

fn slow(key: &str) -> Request {
    Request::post("/slow")
        .header(HEADER, key)
        .body(Body::from("{}"))
        .unwrap()
}

/// Waits (at most 10 s) until the key's record (`None`: no key) is as `wanted`.
async fn until_record(
    redis: &mut ConnectionManager,
    key: &str,
    what: &str,
    wanted: impl Fn(Option<&str>) -> bool,
) {
    for _ in 0..200 {
        let record: Option<String> = redis::cmd("GET").arg(key).query_async(redis).await.unwrap();
        if wanted(record.as_deref()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the record of {key} never became {what}");
}

fn present(r: Option<&str>) -> bool {
    r.is_some()
}

fn gone(r: Option<&str>) -> bool {
    r.is_none()
}

/// A slow request under `name`, started and holding its claim: where two tests begin.
struct Claimed {
    router: Router,
    redis: ConnectionManager,
    key: String,
    go: Arc<Notify>,
    first: tokio::task::JoinHandle<Result<axum::response::Response, std::convert::Infallible>>,
}

async fn claimed(name: &str) -> Claimed {
    use tower::ServiceExt;
    let go = Arc::new(Notify::new());
    let (router, mut redis, ns) = app(go.clone()).await;
    let key = redis_key(&ns, "ten_claims", "tester", name);
    let first = tokio::spawn(router.clone().oneshot(slow(name)));
    until_record(&mut redis, &key, "present", present).await;
    Claimed {
        router,
        redis,
        key,
        go,
        first,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_lease_keeps_its_claim() {
    use tower::ServiceExt;
    let Claimed {
        router,
        mut redis,
        key,
        go,
        first,
    } = claimed("long").await;
    // Three leases long: without renewal the claim would be gone.
    tokio::time::sleep(LEASE * 3).await;
    // (Were the claim gone, the duplicate would run — and wait on `go` like the first.)
    let dup = tokio::time::timeout(Duration::from_secs(5), router.clone().oneshot(slow("long")))
        .await
        .expect("the duplicate ran: the claim lapsed while its request was running")
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT, "still in progress");
    go.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::CREATED);
    let replay = router.oneshot(slow("long")).await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert!(replay.headers().contains_key(REPLAYED));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 3600, "the finished record keeps its 24 hours: {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_went_away_finishes_and_its_retry_replays_it() {
    use tower::ServiceExt;
    let Claimed {
        router,
        mut redis,
        key,
        go,
        first,
    } = claimed("gone").await;
    // The client hangs up mid-request: its connection's future is dropped.
    first.abort();
    go.notify_one();
    // The request ran on and its outcome was stored: the retry replays it, not runs it.
    until_record(&mut redis, &key, "done", |r| {
        r.is_some_and(|r| r.contains("\"done\""))
    })
    .await;
    let retry = router.oneshot(slow("gone")).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(
        retry.headers().contains_key(REPLAYED),
        "replayed, not run again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_left_by_a_gateway_that_died_lapses_after_the_lease() {
    use tower::ServiceExt;
    let go = Arc::new(Notify::new());
    let (router, mut redis, ns) = app(go.clone()).await;
    let key = redis_key(&ns, "ten_claims", "tester", "orphan");
    // What a gateway killed mid-request leaves: its claim, which nobody renews.
    let orphan = serde_json::to_string(&Record::InProgress {
        fingerprint: fingerprint(&Method::POST, "/slow", b"{}"),
        holder: "a-dead-gateway".into(),
    })
    .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(orphan)
        .arg("PX")
        .arg(LEASE.as_millis() as u64)
        .query_async(&mut redis)
        .await
        .unwrap();
    let meanwhile = router.clone().oneshot(slow("orphan")).await.unwrap();
    assert_eq!(meanwhile.status(), StatusCode::CONFLICT, "in progress");
    until_record(&mut redis, &key, "gone", gone).await;
    go.notify_one();
    let retry = router.oneshot(slow("orphan")).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(!retry.headers().contains_key(REPLAYED), "run, once");
}
