//! Spec-driven fuzzing with an independent client: schemathesis (installed by `cargo xtask
//! test`, path in `SCHEMATHESIS`) generates valid and invalid requests for every operation of
//! `/openapi.json` and fails on any 5xx, any status or content type the spec does not
//! document, any response that does not match its schema, and any operation that answers
//! 2xx without credentials.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::stack::{Api, Stack, token};

/// The checks that make the spec true (not `positive_data_acceptance`: the spec does not
/// state every business rule, e.g. that a tenant must exist).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance,ignored_auth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let st = std::env::var("SCHEMATHESIS").expect(
        "SCHEMATHESIS names the schemathesis binary; `cargo xtask test` installs it and sets it",
    );
    // Limits out of the way: operations must not hide behind 429s (ignored_auth sends bad
    // tokens on purpose).
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_CALLER_PER_SEC", "1000000"),
        ("RATE_LIMIT_CALLER_BURST", "1000000"),
        ("RATE_LIMIT_TENANT_PER_SEC", "1000000"),
        ("RATE_LIMIT_TENANT_BURST", "1000000"),
        ("AUTH_FAILURE_PER_SEC", "1000000"),
        ("AUTH_FAILURE_BURST", "1000000"),
    ])
    .await;
    let base = stack.url("");
    let operator = token("ten_platform", "fuzzer", &["platform_admin"]);
    let ids = seed(&Api::new(&stack), &operator).await;
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/schemathesis.toml");
    let workdir = std::env::temp_dir().join(format!("st-{}", test_support::unique_prefix()));
    std::fs::create_dir_all(&workdir).unwrap();
    let mut cmd = tokio::process::Command::new(&st);
    cmd.current_dir(&workdir)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base])
        .args(["-H", &format!("Authorization: Bearer {operator}")])
        .args(["--checks", CHECKS])
        .args(["--mode", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "60", "--seed", "20261202"])
        // One worker: with two, Python 3.11's `ast` (used by hypothesis from both threads)
        // now and then fails with "AST constructor recursion depth mismatch" — a tool
        // error, not a finding.
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"])
        // The PSP callbacks reach the payment service, a shell until its issue lands.
        .args(["--exclude-path-regex", "^/v1/webhooks/"])
        .envs(ids)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(420), cmd.output())
        .await
        .expect("schemathesis finishes within 7 minutes")
        .expect("schemathesis runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&workdir);
    stack.stop().await;
    // The summary (operations, cases, failures) is worth seeing in CI's log.
    println!("{text}");
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    assert!(text.contains("passed"), "{text}");
}

/// Real objects for the path parameters (`tests/fuzz/schemathesis.toml` reads them from
/// these variables), so operations are exercised past "not found".
async fn seed(api: &Api, operator: &str) -> Vec<(&'static str, String)> {
    let ok = |what: &str, (s, v): (reqwest::StatusCode, Value)| -> Value {
        assert!(s.is_success(), "seeding {what}: {s} {v}");
        v
    };
    let tenant = ok(
        "tenant",
        api.send(
            Method::POST,
            "/v1/tenants",
            operator,
            Some(json!({"name": "Fuzz", "slug": "fuzz-co", "owner_email": "owner@fuzz.example"})),
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = ok(
        "user",
        api.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/users"),
            operator,
            Some(json!({"email": "member@fuzz.example"})),
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = ok(
        "api key",
        api.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/api_keys"),
            operator,
            Some(json!({"name": "fuzz", "scopes": ["users:read"]})),
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let scim = ok(
        "SCIM token",
        api.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/scim_tokens"),
            operator,
            None,
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        "plan",
        api.send(
            Method::POST,
            "/v1/plans",
            operator,
            Some(json!({
                "id": "fuzz", "name": "Fuzz", "currency": "EUR", "interval": "month",
                "prices": [
                    {"id": "base", "kind": "flat", "model": {"type": "flat", "amount": "10"}},
                    {"id": "calls", "kind": "metered", "metric": "api_calls",
                     "model": {"type": "per_unit", "unit_amount": "0.1"}}],
                "features": [{"key": "calls", "type": "limit", "metric": "api_calls",
                              "limit": "100", "limit_kind": "soft"}],
            })),
        )
        .await,
    );
    ok(
        "subscription",
        api.send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/subscription"),
            operator,
            Some(json!({"plan_id": "fuzz"})),
        )
        .await,
    );
    let now = chrono::Utc::now();
    let run = ok(
        "billing run",
        api.send(
            Method::POST,
            "/v1/billing/runs",
            operator,
            Some(
                json!({"period_start": (now - chrono::Duration::days(30)).to_rfc3339(),
                        "period_end": now.to_rfc3339()}),
            ),
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    vec![
        ("FUZZ_TENANT_ID", tenant),
        ("FUZZ_USER_ID", user),
        ("FUZZ_KEY_ID", key),
        ("FUZZ_TOKEN_ID", scim),
        ("FUZZ_PLAN_ID", "fuzz".to_string()),
        ("FUZZ_RUN_ID", run),
    ]
}
