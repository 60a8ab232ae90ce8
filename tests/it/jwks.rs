//! Keys from a JWKS URL verify tokens, and a key the identity provider rotates in is picked
//! up without restarting the gateway.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stack::{Stack, token};

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/gateway/tests/fixtures")
        .join(name);
    std::fs::read_to_string(path).expect("fixture exists")
}

fn rs256(kid: &str, pem: &str, tenant: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let header = jsonwebtoken::Header {
        kid: Some(kid.into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
    };
    let claims = json!({"iss": "saas-platform-dev", "aud": "saas-platform", "sub": "idp-user",
                        "tid": tenant, "roles": ["viewer"], "iat": now, "exp": now + 600});
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_keys_verify_and_rotation_needs_no_restart() {
    let full: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let mut first = full.clone();
    first["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "rsa-2");
    let doc = Arc::new(Mutex::new(first.to_string()));
    let served = doc.clone();
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let d = served.lock().unwrap().clone();
            async move { d }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = Stack::start_with(&[
        ("JWT_JWKS_URL", url.as_str()),
        ("JWT_ALLOW_HS256", "true"),
        ("JWT_JWKS_MIN_REFETCH_SECS", "1"),
    ])
    .await;
    let admin = token("ten_platform", "op", &["platform_admin"]);
    let client = reqwest::Client::new();
    let t: Value = client
        .post(stack.url("/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "JWKS", "slug": "jwks-co"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = t["id"].as_str().unwrap().to_string();
    let get_tenant = |bearer: String| {
        let c = client.clone();
        let u = stack.url(&format!("/v1/tenants/{tenant}"));
        async move { c.get(u).bearer_auth(bearer).send().await.unwrap().status() }
    };

    assert_eq!(
        get_tenant(rs256("rsa-1", &fixture("rsa-1.pem"), &tenant)).await,
        StatusCode::OK
    );
    let rotated = rs256("rsa-2", &fixture("rsa-2.pem"), &tenant);
    assert_eq!(get_tenant(rotated.clone()).await, StatusCode::UNAUTHORIZED);

    // The identity provider publishes rsa-2; the unknown kid makes the gateway refetch.
    *doc.lock().unwrap() = full.to_string();
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..50 {
        status = get_tenant(rotated.clone()).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "rotated key accepted without a restart"
    );
    stack.stop().await;
}
