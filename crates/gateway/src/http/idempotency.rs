//! `Idempotency-Key` on POST: the same key and body replay the first response; the same key
//! with another body is refused; concurrent duplicates execute once.
//!
//! Records live in Redis for 24 hours under `idem:<tenant>:<subject>:<key>`, shared by every
//! gateway replica. A record is claimed with `SET NX` before the request runs ("in progress"),
//! so a concurrent duplicate sees the claim and gets 409 instead of running too; the finished
//! response replaces the claim. A 5xx answer releases the claim so the client can retry. If
//! Redis is unreachable, a request that carries a key is refused with 503 rather than run
//! without the guarantee it asked for.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use platform::Problem;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Identity;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED: &str = "idempotent-replayed";
const TTL_SECS: u64 = 24 * 3600;
/// How long an in-progress claim survives a gateway that died mid-request.
const CLAIM_SECS: u64 = 120;

#[derive(Clone)]
pub struct Idempotency {
    pub redis: Option<ConnectionManager>,
    pub max_body_bytes: usize,
    /// Prepended to every key (`EVENT_PREFIX`), so stacks sharing one Redis stay apart.
    pub namespace: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    InProgress {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: u16,
        content_type: Option<String>,
        body_b64: String,
    },
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    Problem::new(status, code)
        .with_detail(detail)
        .into_response()
}

fn valid_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x21..=0x7e).contains(&b))
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
    let Some(mut redis) = idem.redis.clone() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "idempotency_unavailable",
            "idempotency keys cannot be honoured right now; retry shortly",
        );
    };
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, idem.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            );
        }
    };
    let fp = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let ns = if idem.namespace.is_empty() {
        String::new()
    } else {
        format!("{}:", idem.namespace)
    };
    let redis_key = format!("{ns}idem:{}:{}:{key}", identity.tenant_id, identity.subject);

    let claim = serde_json::to_string(&Record::InProgress {
        fingerprint: fp.clone(),
    })
    .expect("a record always serializes");
    let claimed: Result<Option<String>, _> = redis::cmd("SET")
        .arg(&redis_key)
        .arg(&claim)
        .arg("NX")
        .arg("EX")
        .arg(CLAIM_SECS)
        .query_async(&mut redis)
        .await;
    match claimed {
        Ok(Some(_)) => {}
        Ok(None) => return existing(&mut redis, &redis_key, &fp).await,
        Err(e) => {
            tracing::warn!(error = %e, "Redis unavailable for idempotency");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "idempotency_unavailable",
                "idempotency keys cannot be honoured right now; retry shortly",
            );
        }
    }

    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (rparts, rbody) = resp.into_parts();
    let rbytes = to_bytes(rbody, 16 << 20).await.unwrap_or_default();
    if rparts.status.is_server_error() {
        // Not a result worth pinning: let the client retry with the same key.
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(&redis_key)
            .query_async(&mut redis)
            .await;
    } else {
        let done = Record::Done {
            fingerprint: fp,
            status: rparts.status.as_u16(),
            content_type: rparts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body_b64: base64::engine::general_purpose::STANDARD.encode(&rbytes),
        };
        let stored = serde_json::to_string(&done).expect("a record always serializes");
        if let Err(e) = redis::cmd("SET")
            .arg(&redis_key)
            .arg(stored)
            .arg("EX")
            .arg(TTL_SECS)
            .query_async::<()>(&mut redis)
            .await
        {
            tracing::warn!(error = %e, "could not store the idempotent response");
        }
    }
    Response::from_parts(rparts, Body::from(rbytes))
}

async fn existing(redis: &mut ConnectionManager, redis_key: &str, fp: &str) -> Response {
    let stored: Option<String> = redis::cmd("GET")
        .arg(redis_key)
        .query_async(redis)
        .await
        .unwrap_or(None);
    let record = stored.and_then(|s| serde_json::from_str::<Record>(&s).ok());
    match record {
        Some(Record::InProgress { fingerprint }) | Some(Record::Done { fingerprint, .. })
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
}
