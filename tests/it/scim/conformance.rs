//! The independent SCIM conformance suite, and where locations point.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::*;

/// The independent SCIM 2.0 conformance suite (installed by `cargo xtask test`; its Python in
/// `SCIM_TESTER_PYTHON`) runs discovery, CRUD, PATCH and search checks for Users and Groups
/// against the gateway, to the end, with no check breaking a MUST of the RFCs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_conformance_suite_runs_to_the_end() {
    let python = std::env::var("SCIM_TESTER_PYTHON").expect(
        "SCIM_TESTER_PYTHON names a Python with scim2-tester; `cargo xtask test` installs it",
    );
    // The suite sends a few hundred requests in a burst; limits are not what it checks.
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_CALLER_PER_SEC", "1000000"),
        ("RATE_LIMIT_CALLER_BURST", "1000000"),
        ("RATE_LIMIT_TENANT_PER_SEC", "1000000"),
        ("RATE_LIMIT_TENANT_BURST", "1000000"),
    ])
    .await;
    let (_, _, scim) = setup(&stack, "conformance-co").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scim/conformance.py");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new(&python)
            .arg(&script)
            .env("SCIM_URL", format!("{}/scim/v2", scim.base))
            .env("SCIM_TOKEN", &scim.token)
            .output(),
    )
    .await
    .expect("the suite finished within 5 minutes")
    .expect("the suite ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary line\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let failures: Vec<&str> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    eprintln!("{stdout}");
    assert_eq!(failures, Vec::<&str>::new(), "{stdout}");
    // Every check succeeded: none skipped, none a deviation or a warning.
    let counts = summary["counts"].as_object().unwrap();
    let other: Vec<&String> = counts.keys().filter(|k| *k != "SUCCESS").collect();
    assert!(
        other.is_empty(),
        "checks that did not succeed: {other:?}\n{stdout}"
    );
    let passed = counts["SUCCESS"].as_u64().unwrap_or(0);
    assert!(passed >= 69, "{passed} checks passed: {stdout}");
    stack.stop().await;
}

/// `meta.location` and `Location` are built on `PUBLIC_URL`, never on a client's
/// `X-Forwarded-Proto`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_use_the_configured_public_url() {
    let stack = Stack::start_with(&[("PUBLIC_URL", "https://id.example.test/")]).await;
    let (_, _, scim) = setup(&stack, "public-co").await;
    let (s, u, headers) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("pub@p.example")),
            &[("x-forwarded-proto", "gopher"), ("host", "evil.example")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let expected = format!(
        "https://id.example.test/scim/v2/Users/{}",
        u["id"].as_str().unwrap()
    );
    assert_eq!(u["meta"]["location"], expected.as_str());
    assert_eq!(headers["location"], expected.as_str());
    stack.stop().await;

    // Unset: plain http and the request's host; the client's X-Forwarded-Proto is ignored.
    let stack = Stack::start().await;
    let (_, _, scim) = setup(&stack, "dev-co").await;
    let (_, u, _) = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("dev@p.example")),
            &[("x-forwarded-proto", "https")],
        )
        .await;
    let location = u["meta"]["location"].as_str().unwrap();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    stack.stop().await;
}
