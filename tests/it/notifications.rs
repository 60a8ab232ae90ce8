//! Notifications through the gateway, end to end: a tenant registers a webhook endpoint (a
//! real HTTP receiver here) and recipients; events of its subscription and invoices reach the
//! receiver signed per Standard Webhooks — verified by the independent `standardwebhooks`
//! library, before and after a secret rotation — retried after a 503 with Retry-After, and
//! the endpoint is disabled by a 410 and replayed to once enabled again. E-mail lands in the
//! stack's maildir (parsed by Python's `email` package; the invoice PDF attached is the one
//! the invoicing service serves), SMS in its file.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as AxStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::payments::{finalized_invoice, subscribe};
use crate::stack::{Api, Stack, outbox_dir, token};

/// A status to answer, with a `Retry-After`.
type Answer = (u16, Option<&'static str>);

/// What the receiver got, and what it answers next (`always` once the plan is spent).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    plan: Arc<Mutex<VecDeque<Answer>>>,
    always: Arc<Mutex<u16>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let r = Receiver {
            always: Arc::new(Mutex::new(200)),
            ..Receiver::default()
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let s = state.clone();
                async move {
                    s.got.lock().unwrap().push((headers, body));
                    let next = s.plan.lock().unwrap().pop_front();
                    let (code, retry_after) = next.unwrap_or((*s.always.lock().unwrap(), None));
                    let mut resp = axum::response::Response::new(axum::body::Body::from("thanks"));
                    *resp.status_mut() = AxStatus::from_u16(code).unwrap();
                    if let Some(ra) = retry_after {
                        resp.headers_mut()
                            .insert("retry-after", ra.parse().unwrap());
                    }
                    resp
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn with_id(&self, id: &str) -> Vec<(HeaderMap, String)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| h["webhook-id"] == id)
            .cloned()
            .collect()
    }
}

/// Per delivery, per secret: "ok" or the library's refusal.
fn verify(secrets: &[&str], deliveries: &[(HeaderMap, String)]) -> Vec<Vec<String>> {
    let input = json!({
        "secrets": secrets,
        "deliveries": deliveries.iter().map(|(h, body)| json!({
            "headers": {
                "webhook-id": h["webhook-id"].to_str().unwrap(),
                "webhook-timestamp": h["webhook-timestamp"].to_str().unwrap(),
                "webhook-signature": h["webhook-signature"].to_str().unwrap(),
            },
            "body": body,
        })).collect::<Vec<_>>(),
    });
    let file = std::env::temp_dir().join(format!("webhooks-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, input.to_string()).unwrap();
    let verdicts = crate::py::run("verify_webhooks.py", &[&file]);
    let _ = std::fs::remove_file(&file);
    serde_json::from_value(verdicts).unwrap()
}

/// Every message in the maildir's `new/`, parsed by Python's `email` package.
fn mails(prefix: &str) -> Vec<Value> {
    let dir = outbox_dir(prefix).join("mail").join("new");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| crate::py::run("read_mail.py", &[&e.unwrap().path()]))
        .collect()
}

/// The tenant's message for `event_type` once `pred` holds for it.
async fn message(
    api: &Api,
    t: &str,
    bearer: &str,
    event_type: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let listed = api
        .until(
            &format!("/v1/tenants/{t}/messages?event_type={event_type}"),
            bearer,
            |v| v["data"].as_array().is_some_and(|d| d.iter().any(&pred)),
        )
        .await;
    let id = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| pred(m))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, m) = api
        .send(
            Method::GET,
            &format!("/v1/tenants/{t}/messages/{id}"),
            bearer,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    m
}

fn webhook_delivery(m: &Value) -> &Value {
    m["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "webhook")
        .expect("a webhook delivery")
}

fn delivered(m: &Value) -> bool {
    m["deliveries"].as_array().is_some_and(|d| {
        d.iter()
            .any(|d| d["channel"] == "webhook" && d["status"] == "delivered")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_tenant_signed_retried_and_by_mail() {
    let stack = Stack::start().await;
    let api = Api::new(&stack);
    let operator = token("ten_platform", "operator", &["platform_admin"]);
    let t = "ten_notified";
    let owner = token(t, "owner", &["owner"]);
    let member = token(t, "dev", &["member"]);
    let stranger = token("ten_stranger", "owner", &["owner"]);
    let (rx, url) = Receiver::start().await;
    let endpoints = format!("/v1/tenants/{t}/webhook_endpoints");

    // Bad input is named; a member may not add endpoints; another tenant sees nothing.
    for (body, field) in [
        (json!({"url": "ftp://example.com/hook"}), "url"),
        (
            json!({"url": url, "event_types": ["invoice.redy"]}),
            "event_types",
        ),
    ] {
        let (s, p) = api.send(Method::POST, &endpoints, &owner, Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert!(p.to_string().contains(field), "{p}");
    }
    let body = json!({"url": url, "event_types": ["subscription.*", "invoice.ready"]});
    let (s, _) = api
        .send(Method::POST, &endpoints, &member, Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, created) = api.send(Method::POST, &endpoints, &owner, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    let endpoint = format!("{endpoints}/{}", created["id"].as_str().unwrap());
    let (s, listed) = api.send(Method::GET, &endpoints, &owner, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        listed["data"][0].get("secret").is_none(),
        "the secret is shown once: {listed}"
    );
    let (s, _) = api.send(Method::GET, &endpoint, &stranger, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let recipients = format!("/v1/tenants/{t}/notification_recipients");
    for body in [
        json!({"channel": "email", "address": "ops@notified.example", "event_types": ["subscription.*", "invoice.ready"]}),
        json!({"channel": "sms", "address": "+4930123456", "event_types": ["subscription.created"]}),
    ] {
        let (s, r) = api
            .send(Method::POST, &recipients, &owner, Some(body))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let (s, p) = api
        .send(
            Method::POST,
            &recipients,
            &owner,
            Some(json!({"channel": "sms", "address": "030 123"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");

    // The first attempt meets a 503 asking for a second's patience; the retry gets through.
    rx.plan.lock().unwrap().push_back((503, Some("1")));
    subscribe(&api, &operator, t, "basic", "1500").await;
    let m = message(&api, t, &owner, "subscription.created", delivered).await;
    let d = webhook_delivery(&m);
    let codes: Vec<&Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["response_code"])
        .collect();
    assert_eq!(codes, [&json!(503), &json!(200)], "{m}");
    assert_eq!(m["body"]["type"], "subscription.created");
    assert_eq!(m["body"]["data"]["tenant_id"], t);
    let got = rx.with_id(m["id"].as_str().unwrap());
    assert_eq!(
        got.len(),
        2,
        "both attempts carry the message id as webhook-id"
    );
    assert_eq!(got[0].1, got[1].1, "a retry sends the same bytes");
    assert_eq!(serde_json::from_str::<Value>(&got[0].1).unwrap(), m["body"]);

    // The independent library accepts what we signed, and refuses it altered or with
    // another secret.
    let mut tampered = got[1].clone();
    tampered.1 = tampered.1.replace("1500", "1");
    tampered.1.push(' ');
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let verdicts = verify(
        &[&secret, other],
        &[got[0].clone(), got[1].clone(), tampered],
    );
    assert_eq!(verdicts[0][0], "ok", "{verdicts:?}");
    assert_eq!(verdicts[1][0], "ok", "{verdicts:?}");
    assert_ne!(verdicts[1][1], "ok", "another secret: {verdicts:?}");
    assert_ne!(verdicts[2][0], "ok", "an altered body: {verdicts:?}");

    // The same event by e-mail and SMS.
    let sub_mail = api_wait(|| {
        mails(&stack.prefix).into_iter().find(|m| {
            m["subject"]
                .as_str()
                .is_some_and(|s| s.contains("has started"))
        })
    })
    .await;
    assert_eq!(sub_mail["to"], "ops@notified.example");
    assert!(
        sub_mail["text"].as_str().unwrap().contains("Plan: basic"),
        "{sub_mail}"
    );
    assert!(
        sub_mail["html"]
            .as_str()
            .unwrap()
            .contains("<strong>basic</strong>"),
        "{sub_mail}"
    );
    let sms = std::fs::read_to_string(outbox_dir(&stack.prefix).join("sms.log")).unwrap();
    let sms: Value = serde_json::from_str(sms.lines().next().unwrap()).unwrap();
    assert_eq!(sms["to"], "+4930123456");
    assert!(
        sms["body"].as_str().unwrap().contains("has started"),
        "{sms}"
    );

    // A rotation: the previous secret signs beside the new one, and both verify.
    let (s, rotated) = api
        .send(
            Method::POST,
            &format!("{endpoint}/rotate_secret"),
            &owner,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let invoice = finalized_invoice(&api, &operator, t, &owner).await;
    let m = message(&api, t, &owner, "invoice.ready", delivered).await;
    let got = rx.with_id(m["id"].as_str().unwrap());
    let sigs = got[0].0["webhook-signature"].to_str().unwrap().to_string();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    let verdicts = verify(&[&secret, &new_secret], &got[..1]);
    assert_eq!(verdicts, [["ok", "ok"]]);

    // The invoice e-mail carries the PDF the invoicing service serves.
    let number = invoice["number"].as_str().unwrap().to_string();
    let inv_mail = api_wait(|| {
        mails(&stack.prefix)
            .into_iter()
            .find(|m| m["subject"].as_str().is_some_and(|s| s.contains(&number)))
    })
    .await;
    let pdf = reqwest::Client::new()
        .get(stack.url(&format!(
            "/v1/tenants/{t}/invoices/{}/pdf",
            invoice["id"].as_str().unwrap()
        )))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let attached = &inv_mail["attachments"][0];
    assert_eq!(attached["content_type"], "application/pdf", "{inv_mail}");
    assert_eq!(attached["size"], pdf.len());
    assert_eq!(attached["sha256"], sha256_hex(&pdf));

    // 410 Gone disables the endpoint; enabled again, a replay delivers the missed message.
    *rx.always.lock().unwrap() = 410;
    let (s, p) = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{t}/subscription/cancel"),
            &operator,
            Some(json!({})),
        )
        .await;
    assert!(s.is_success(), "{p}");
    let gone = api
        .until(&endpoint, &owner, |e| e["enabled"] == false)
        .await;
    assert_eq!(gone["disabled_reason"], "gone");
    let m = message(&api, t, &owner, "subscription.cancel_scheduled", |m| {
        m["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["status"] == "failed"))
    })
    .await;
    let replay = format!(
        "/v1/tenants/{t}/messages/{}/replay",
        m["id"].as_str().unwrap()
    );
    let (s, p) = api
        .send(Method::POST, &replay, &owner, Some(json!({})))
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a disabled endpoint is not replayed to: {p}"
    );
    *rx.always.lock().unwrap() = 200;
    let (s, e) = api
        .send(
            Method::PATCH,
            &endpoint,
            &owner,
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["enabled"], true);
    let (s, p) = api
        .send(Method::POST, &replay, &owner, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let m = message(&api, t, &owner, "subscription.cancel_scheduled", delivered).await;
    let d = webhook_delivery(&m);
    let codes: Vec<&Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["response_code"])
        .collect();
    assert_eq!(codes, [&json!(410), &json!(200)], "{m}");
    assert_eq!(rx.with_id(m["id"].as_str().unwrap()).len(), 2);

    stack.stop().await;
}

/// `f` until it finds something (bounded: 100 tries, 100 ms apart).
async fn api_wait<T>(f: impl Fn() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("condition not met in 10 s");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
