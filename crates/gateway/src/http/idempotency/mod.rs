//! `Idempotency-Key` on POST: the same key and body replay the first response; the same key
//! with another body is refused; concurrent duplicates execute once.
//!
//! Records live in Redis for 24 hours under `idem:v2:<tenant>:<subject>:<key>`, each part
//! base64url-encoded (subjects such as `apikey:key_…` contain `:`, and raw parts could
//! collide), shared by every gateway replica. A record is claimed with `SET NX` before the request runs ("in progress"),
//! so a concurrent duplicate sees the claim and gets 409 instead of running too; the finished
//! response replaces the claim. The claim is a lease ([`CLAIM_LEASE`]) the gateway renews
//! while the request runs, so one left by a gateway that died lapses seconds later; the
//! request runs detached from the client's connection, so one whose client hung up still
//! finishes and is stored for the retry to replay ([`claim`]). A 5xx answer releases the
//! claim so the client can retry. If
//! Redis is unreachable, a request that carries a key is refused with 503 rather than run
//! without the guarantee it asked for.
//!
//! The request body is buffered up to the route's own limit (`/v1/usage` takes more than
//! `MAX_BODY_BYTES`). A response is stored up to `MAX_STORED_RESPONSE`; a larger one still
//! reaches the client whole, and a replay of its key answers 409
//! `idempotency_response_not_stored` with the original status rather than an empty body.

use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::BytesMut;
use futures::StreamExt;
use platform::Problem;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Identity;

mod claim;

use claim::{Claim, Renewal};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";
const TTL_SECS: u64 = 24 * 3600;
/// How long an in-progress claim outlives the gateway holding it: the gateway renews it
/// every third of this while the request runs, so a claim left by a gateway that died
/// mid-request lapses this long after — and the client's retry runs — instead of blocking
/// the key for minutes.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// Largest response body kept for replay.
pub const MAX_STORED_RESPONSE: usize = 4 << 20;

#[derive(Clone)]
pub struct Idempotency {
    pub redis: Option<ConnectionManager>,
    /// Redis's health, shared with the rate limiter: while Redis is down a key is refused at
    /// once rather than after a reconnect attempt per request.
    pub redis_health: std::sync::Arc<platform::cache::Breaker>,
    pub max_body_bytes: usize,
    /// Routes (matched paths) whose body limit is not `max_body_bytes`.
    pub route_body_limits: &'static [(&'static str, usize)],
    /// Prepended to every key (`EVENT_PREFIX`), so stacks sharing one Redis stay apart.
    pub namespace: String,
    /// [`CLAIM_LEASE`] (shorter in tests).
    pub claim_lease: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    InProgress {
        fingerprint: String,
        /// Unique to the request holding the claim: only it renews, replaces or releases
        /// the claim (a retry's claim, after this one lapsed, is another).
        #[serde(default)]
        holder: String,
    },
    Done {
        fingerprint: String,
        status: u16,
        content_type: Option<String>,
        body_b64: String,
    },
    /// Done, but the response was over `MAX_STORED_RESPONSE`.
    NotStored { fingerprint: String, status: u16 },
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    Problem::new(status, code)
        .with_detail(detail)
        .into_response()
}

fn valid_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The Redis key of `key` sent by (`tenant`, `subject`): every part base64url-encoded, so no
/// two different triples share a key whatever characters they hold.
fn redis_key(namespace: &str, tenant: &str, subject: &str, key: &str) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ns = if namespace.is_empty() {
        String::new()
    } else {
        format!("{namespace}:")
    };
    format!(
        "{ns}idem:v2:{}:{}:{}",
        b.encode(tenant),
        b.encode(subject),
        b.encode(key)
    )
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Runs `req` through `next` at most once per `Idempotency-Key` (POSTs of an authenticated
/// caller; every other request passes straight through).
pub async fn run(idem: &Idempotency, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().unwrap_or("").to_string())
    else {
        return next.run(req).await;
    };
    if !valid_key(&key) {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 printable ASCII characters",
        );
    }
    let Some(identity) = req.extensions().get::<Identity>().cloned() else {
        return next.run(req).await; // public route: nothing to scope a key by
    };
    let Some(mut redis) = idem
        .redis
        .clone()
        .filter(|_| idem.redis_health.allows(std::time::Instant::now()))
    else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "idempotency_unavailable",
            "idempotency keys cannot be honoured right now; retry shortly",
        );
    };
    let limit = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| {
            idem.route_body_limits
                .iter()
                .find(|(route, _)| *route == p.as_str())
        })
        .map_or(idem.max_body_bytes, |(_, limit)| *limit);
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("the request body is larger than this route's limit of {limit} bytes"),
            );
        }
    };
    let fp = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let redis_key = redis_key(
        &idem.namespace,
        &identity.tenant_id,
        &identity.subject,
        &key,
    );

    let claim = serde_json::to_string(&Record::InProgress {
        fingerprint: fp.clone(),
        holder: uuid::Uuid::new_v4().simple().to_string(),
    })
    .expect("a record always serializes");
    let claimed: Result<Option<String>, _> = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&claim)
        .arg("NX")
        .arg("PX")
        .arg(idem.claim_lease.as_millis() as u64)
        .query_async(&mut redis)
        .await;
    if claimed.is_ok() && idem.redis_health.succeeded() {
        tracing::info!("Redis is back: idempotency keys honoured again");
    }
    match claimed {
        Ok(Some(_)) => {}
        Ok(None) => return existing(&mut redis, &redis_key, &fp).await,
        Err(e) => {
            if idem.redis_health.failed(std::time::Instant::now()) {
                tracing::warn!(error = %e, "Redis unavailable: requests with an Idempotency-Key are refused (503) until it is back");
            }
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_unavailable",
                "idempotency keys cannot be honoured right now; retry shortly",
            );
        }
    }

    // The rest runs detached from the client's connection: a client that goes away does not
    // cut a mutation off half-way, and its outcome is still stored for the retry to replay.
    let claim = Claim {
        redis,
        key: redis_key,
        value: claim,
        lease: idem.claim_lease,
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    match tokio::spawn(execute(claim, fp, next, req)).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "an idempotent request's task failed");
            Problem::internal().into_response()
        }
    }
}

/// Runs the claimed request, renewing the claim meanwhile, then replaces the claim with the
/// outcome (or releases it after a 5xx, so the client can retry).
async fn execute(mut claim: Claim, fp: String, next: Next, req: Request) -> Response {
    let renewal = Renewal::start(&claim);
    let resp = next.run(req).await;
    let (rparts, rbody) = resp.into_parts();
    let (kept, body) = match buffer_up_to(rbody, MAX_STORED_RESPONSE).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "response body failed; releasing the idempotency claim");
            claim.settle(None).await;
            return Problem::internal().into_response();
        }
    };
    let status = rparts.status.as_u16();
    let record = if rparts.status.is_server_error() {
        // Not a result worth pinning: let the client retry with the same key.
        None
    } else if let Some(bytes) = &kept {
        Some(Record::Done {
            fingerprint: fp,
            status,
            content_type: rparts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body_b64: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    } else {
        Some(Record::NotStored {
            fingerprint: fp,
            status,
        })
    };
    claim.settle(record).await;
    drop(renewal);
    Response::from_parts(rparts, body)
}

/// Reads `body` while it stays within `cap` bytes: the whole body (`Some`) and a body that
/// replays it, or, past the cap, `None` and a body that yields what was read and then the
/// rest — the client always gets everything.
async fn buffer_up_to(body: Body, cap: usize) -> Result<(Option<Bytes>, Body), axum::Error> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        if buf.len() > cap {
            let head = futures::stream::once(async move { Ok::<_, axum::Error>(buf.freeze()) });
            return Ok((None, Body::from_stream(head.chain(stream))));
        }
    }
    let bytes = buf.freeze();
    Ok((Some(bytes.clone()), Body::from(bytes)))
}

async fn existing(redis: &mut ConnectionManager, redis_key: &str, fp: &str) -> Response {
    let stored: Option<String> = redis::cmd("GET")
        .arg(redis_key)
        .query_async(redis)
        .await
        .unwrap_or(None);
    let record = stored.and_then(|s| serde_json::from_str::<Record>(&s).ok());
    match record {
        Some(Record::InProgress { fingerprint, .. })
        | Some(Record::Done { fingerprint, .. })
        | Some(Record::NotStored { fingerprint, .. })
            if fingerprint != fp =>
        {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key",
            )
        }
        Some(Record::InProgress { .. }) => problem(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still in progress; retry shortly",
        ),
        Some(Record::NotStored { status, .. }) => {
            let mut resp = problem(
                StatusCode::CONFLICT,
                "idempotency_response_not_stored",
                &format!(
                    "the request with this Idempotency-Key was done (status {status}), but its response was too large to keep for replay; read the result instead"
                ),
            );
            resp.headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            resp
        }
        Some(Record::Done {
            status,
            content_type,
            body_b64,
            ..
        }) => {
            let body = base64::engine::general_purpose::STANDARD
                .decode(body_b64)
                .unwrap_or_default();
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                headers.insert(header::CONTENT_TYPE, ct);
            }
            headers.insert(REPLAYED, HeaderValue::from_static("true"));
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            (status, headers, body).into_response()
        }
        // Expired between SET NX and GET, or unreadable: treat as a conflict to be safe.
        None => problem(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "retry shortly",
        ),
    }
}

#[cfg(test)]
mod claim_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_fingerprints() {
        assert!(valid_key("order-123"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"x".repeat(256)));
        let a = fingerprint(&Method::POST, "/v1/x", b"{}");
        assert_eq!(a, fingerprint(&Method::POST, "/v1/x", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/y", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/v1/x", b"{ }"));
    }

    #[test]
    fn keys_of_different_callers_never_collide() {
        // Raw `tenant:subject:key` made these two the same record.
        let api_key = redis_key("", "ten_1", "apikey:key_abc", "k1");
        let jwt_user = redis_key("", "ten_1", "apikey", "key_abc:k1");
        assert_ne!(api_key, jwt_user);
        assert_ne!(
            redis_key("", "a:b", "c", "d"),
            redis_key("", "a", "b:c", "d")
        );
        assert!(redis_key("e2e_x", "t", "s", "k").starts_with("e2e_x:idem:v2:"));
    }

    #[tokio::test]
    async fn large_responses_reach_the_client_whole_and_are_not_stored() {
        let chunks = || {
            futures::stream::iter(
                (0..10).map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![b'a' + i as u8; 1000]))),
            )
        };
        let body = Body::from_stream(chunks());
        let (kept, body) = buffer_up_to(body, 2500).await.unwrap();
        assert!(kept.is_none());
        let all = to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 10_000);
        assert_eq!(&all[9_000..9_001], b"j");
        let (kept, body) = buffer_up_to(Body::from_stream(chunks()), 10_000)
            .await
            .unwrap();
        assert_eq!(kept.unwrap().len(), 10_000);
        assert_eq!(to_bytes(body, usize::MAX).await.unwrap().len(), 10_000);
    }
}
