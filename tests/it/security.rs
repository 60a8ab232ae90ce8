//! The security model through the gateway (ARCHITECTURE.md, "Security model"): privileges
//! never grow, the operator role is bound to the operator tenant, suspended tenants stop
//! writing, failed authentication is throttled.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::identity::{admin, tenant};
use crate::stack::{Api, Stack, token};

async fn create_user(api: &Api, t: &str, bearer: &str, email: &str, roles: &[&str]) -> String {
    let (s, u) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/users"),
            bearer,
            Some(json!({"email": email, "roles": roles})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    u["id"].as_str().unwrap().to_string()
}

/// Creates an API key with `scopes` as `bearer`; (id, secret).
async fn create_key(api: &Api, t: &str, bearer: &str, scopes: &[&str]) -> (String, String) {
    let (s, k) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/api_keys"),
            bearer,
            Some(json!({"name": "test", "scopes": scopes})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    (
        k["id"].as_str().unwrap().to_string(),
        k["secret"].as_str().unwrap().to_string(),
    )
}

fn assert_forbidden(s: StatusCode, body: &Value, naming: &str, what: &str) {
    assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {body}");
    assert_eq!(body["code"], "forbidden", "{what}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains(naming),
        "{what}: the problem names {naming}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_never_exceed_the_granters_own_permissions() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (t, owner) = tenant(&api, "grants-co").await;
    let admin_id = create_user(&api, &t, &owner, "admin@grants.example", &["admin"]).await;
    let owner2_id = create_user(&api, &t, &owner, "owner2@grants.example", &["owner"]).await;
    let adm = token(&t, &admin_id, &["admin"]);
    let keys = format!("/v1/tenants/{t}/api_keys");

    // An admin lacks subscriptions:write, so no key of its may carry it.
    let (s, p) = api
        .send(
            Method::POST,
            &keys,
            &adm,
            Some(json!({"name": "sneaky", "scopes": ["users:read", "subscriptions:write"]})),
        )
        .await;
    assert_forbidden(
        s,
        &p,
        "subscriptions:write",
        "admin mints subscriptions:write",
    );
    // The owner lacks usage:write (an operator permission).
    let (s, p) = api
        .send(
            Method::POST,
            &keys,
            &owner,
            Some(json!({"name": "meter", "scopes": ["usage:write"]})),
        )
        .await;
    assert_forbidden(s, &p, "usage:write", "owner mints usage:write");
    // Nothing was half-created.
    let (_, list) = api.send(Method::GET, &keys, &owner, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");

    // Within its own permissions an admin may mint a key, and that key in turn may only mint
    // keys within its scopes.
    let (_, key) = create_key(&api, &t, &adm, &["users:read", "api_keys:write"]).await;
    let (s, p) = api
        .send(
            Method::POST,
            &keys,
            &key,
            Some(json!({"name": "wider", "scopes": ["users:write"]})),
        )
        .await;
    assert_forbidden(s, &p, "users:write", "a key mints a wider key");
    let (s, p) = api
        .send(
            Method::POST,
            &keys,
            &key,
            Some(json!({"name": "same", "scopes": ["users:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");

    // Roles: an admin can neither make itself owner nor create an owner or a billing admin.
    let (s, p) = api
        .send(
            Method::PUT,
            &format!("/v1/tenants/{t}/users/{admin_id}/roles"),
            &adm,
            Some(json!({"roles": ["owner"]})),
        )
        .await;
    assert_forbidden(s, &p, "subscriptions:write", "admin grants itself owner");
    for roles in [json!(["owner"]), json!(["billing_admin"])] {
        let (s, p) = api
            .send(
                Method::POST,
                &format!("/v1/tenants/{t}/users"),
                &adm,
                Some(json!({"email": "new@grants.example", "roles": roles})),
            )
            .await;
        assert_forbidden(
            s,
            &p,
            "subscriptions:write",
            "admin creates a user with {roles}",
        );
    }
    // Nor change, demote or deactivate someone more powerful.
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/v1/tenants/{t}/users/{owner2_id}/roles"),
            Some(json!({"roles": ["viewer"]})),
        ),
        (
            Method::PATCH,
            format!("/v1/tenants/{t}/users/{owner2_id}"),
            Some(json!({"email": "attacker@evil.example"})),
        ),
        (
            Method::POST,
            format!("/v1/tenants/{t}/users/{owner2_id}/deactivate"),
            None,
        ),
    ] {
        let (s, p) = api.send(method.clone(), &path, &adm, body).await;
        assert_forbidden(s, &p, "owner", &format!("admin {method} {path}"));
    }
    let (_, o) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{t}/users/{owner2_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(o["roles"], json!(["owner"]), "{o}");
    assert_eq!(o["email"], "owner2@grants.example");
    assert_eq!(o["status"], "active");
    // What an admin holds, it may grant.
    let member = create_user(&api, &t, &adm, "m@grants.example", &["member"]).await;
    let (s, p) = api
        .send(
            Method::PUT,
            &format!("/v1/tenants/{t}/users/{member}/roles"),
            &adm,
            Some(json!({"roles": ["admin", "viewer"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    // A SCIM token can grant billing_admin through groups: an admin may not create one.
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/scim_tokens"),
            &adm,
            Some(json!({})),
        )
        .await;
    assert_forbidden(s, &p, "subscriptions:write", "admin creates a SCIM token");
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/scim_tokens"),
            &owner,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    // The operator may do all of it.
    let (s, p) = api
        .send(
            Method::POST,
            &keys,
            &admin(),
            Some(json!({"name": "meter", "scopes": ["usage:write"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_admin_counts_only_in_the_operator_tenant() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (t, _) = tenant(&api, "claims-co").await;
    // A tenant whose identity provider lets its admins put any role in their tokens.
    let forged = token(&t, "tenant-admin", &["platform_admin"]);
    let (s, p) = api.send(Method::GET, "/v1/tenants", &forged, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            "/v1/plans",
            &forged,
            Some(json!({"code": "free-for-me", "name": "x", "currency": "USD", "interval": "month", "prices": []})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    let (s, p) = api.send(Method::GET, "/v1/tenants", &admin(), None).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    stack.stop().await;
}

/// The number the metrics endpoint of `url` shows for `http_requests_total` lines naming
/// `route` (summed over methods and statuses).
async fn requests_to(url: &str, route: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("http_requests_total{") && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_throttled_per_address_and_unknown_keys_are_remembered() {
    let stack = Stack::start_with(&[
        ("AUTH_FAILURE_BURST", "5"),
        ("AUTH_FAILURE_PER_SEC", "1"),
        ("API_KEY_CACHE_SECS", "60"),
    ])
    .await;
    let api = Api::new(&stack);
    let user_service = stack.service_url(platform::ServiceName::User);
    let verify = "/saas.user.v1.UserService/VerifyApiKey";
    let before = requests_to(&user_service, verify).await;
    // The same junk key five times: five 401s, one lookup (the answer is remembered).
    for i in 0..5 {
        let (s, p) = api
            .send(Method::GET, "/v1/plans", "sk_junk-junk-junk", None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "attempt {i}: {p}");
    }
    assert_eq!(requests_to(&user_service, verify).await - before, 1);
    // The address has spent its failures: 429 before any credential is looked at. (It
    // regains one a second, so on a slow machine a 401 may come first: bounded retries.)
    let mut refused = None;
    for _ in 0..5 {
        let resp = api
            .http
            .get(stack.url("/v1/plans"))
            .bearer_auth("sk_junk-junk-junk")
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = refused.expect("the address is throttled");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("failed authentication")
    );
    // Even good credentials wait: the address is refused, not the key.
    let (s, _) = api.send(Method::GET, "/v1/plans", &admin(), None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        requests_to(&user_service, verify).await - before,
        1,
        "refused requests cost no lookup"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_reads_but_writes_nothing_with_any_credential() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (t, owner) = tenant(&api, "paused-co").await;
    let (_, key) = create_key(&api, &t, &owner, &["users:read", "users:write"]).await;
    let (s, scim) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/scim_tokens"),
            &owner,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{scim}");
    let scim = scim["secret"].as_str().unwrap().to_string();
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/suspend"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");

    let users = format!("/v1/tenants/{t}/users");
    for bearer in [&owner, &key] {
        let (s, p) = api.send(Method::GET, &users, bearer, None).await;
        assert_eq!(s, StatusCode::OK, "reads go on: {p}");
        let (s, p) = api
            .send(
                Method::POST,
                &users,
                bearer,
                Some(json!({"email": "late@paused.example"})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
        assert_eq!(p["code"], "tenant_suspended");
    }
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/api_keys"),
            &owner,
            Some(json!({"name": "more", "scopes": ["users:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    // SCIM provisioning only writes: its token is refused outright.
    let resp = api
        .http
        .get(stack.url("/scim/v2/Users"))
        .bearer_auth(&scim)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Nothing was written; the operator reactivates, and writes work again.
    let (_, list) = api.send(Method::GET, &users, &owner, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/reactivate"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (s, p) = api
        .send(
            Method::POST,
            &users,
            &key,
            Some(json!({"email": "back@paused.example", "roles": []})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a users:write key cannot grant member: {p}"
    );
    let (s, p) = api
        .send(
            Method::POST,
            &users,
            &owner,
            Some(json!({"email": "back@paused.example"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_of_different_callers_never_meet() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let (t, owner) = tenant(&api, "idem-walls").await;
    let (key_id, key) = create_key(
        &api,
        &t,
        &owner,
        &[
            "tenants:read",
            "users:read",
            "users:write",
            "plans:read",
            "entitlements:read",
            "usage:read",
        ],
    )
    .await;
    let url = stack.url(&format!("/v1/tenants/{t}/users"));
    let body = json!({"email": "first@walls.example"});
    // The key (subject `apikey:<id>`) sends Idempotency-Key `k1` ...
    let first = api
        .http
        .post(&url)
        .bearer_auth(&key)
        .header("Idempotency-Key", "k1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    // ... and a token whose subject is `apikey` sends `<id>:k1`: with the parts joined by
    // raw colons both named one record, and this request got the key's response replayed.
    let other = token(&t, "apikey", &["owner"]);
    let second = api
        .http
        .post(&url)
        .bearer_auth(&other)
        .header("Idempotency-Key", format!("{key_id}:k1"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(second.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        second.status(),
        StatusCode::CONFLICT,
        "it ran: the e-mail is taken"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_usage_batches_get_the_routes_own_body_limit() {
    // The test stack's MAX_BODY_BYTES is 64 KiB; /v1/usage takes up to 8 MiB.
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let records: Vec<Value> = (0..2_000)
        .map(|i| json!({"id": format!("big-{i:05}"), "tenant_id": "ten_nobody", "metric": "api_calls", "quantity": 1, "timestamp": "2026-01-01T00:00:00Z"}))
        .collect();
    let body = json!({ "records": records });
    assert!(body.to_string().len() > 64 << 10);
    for key in [None, Some("batch-1")] {
        let mut req = api
            .http
            .post(stack.url("/v1/usage"))
            .bearer_auth(admin())
            .json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let report: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "key {key:?}: {report}");
        assert_eq!(report["rejected"].as_array().unwrap().len(), 2_000);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metrics_only_for_allowed_addresses_and_status_shares_its_checks() {
    let stack = Stack::start_with(&[("METRICS_ALLOW", "10.0.0.0/8")]).await;
    let resp = reqwest::get(stack.url("/metrics")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "a public port hides its metrics"
    );
    let user_service = stack.service_url(platform::ServiceName::User);
    let health = "/grpc.health.v1.Health/Check";
    let before = requests_to(&user_service, health).await;
    for _ in 0..30 {
        let resp = reqwest::get(stack.url("/v1/status")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let checks = requests_to(&user_service, health).await - before;
    assert!(
        (1..30).contains(&checks),
        "30 anonymous status calls made {checks} health checks"
    );
    stack.stop().await;
    // The default lets local scrapers in.
    let stack = Stack::start().await;
    let resp = reqwest::get(stack.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    stack.stop().await;
}
