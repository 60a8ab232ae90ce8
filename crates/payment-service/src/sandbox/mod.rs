//! The built-in sandbox PSP: a real HTTP server speaking the part of Stripe's API the
//! [`Stripe`](crate::psp::stripe::Stripe) connector uses, behaving like Stripe's test mode
//! ([`cards`]), and sending signed `Stripe-Signature` callbacks to a URL (the gateway's
//! `/v1/webhooks/psp/stripe`). No account, no network: a local stack takes payments with it.
//! Under `/adyen/v71` it speaks the part of Adyen's Checkout API the
//! [`Adyen`](crate::psp::adyen::Adyen) connector uses ([`adyen`]), with HMAC-signed
//! notifications once [`set_adyen`](Sandbox::set_adyen) named their URL and key.
//!
//! Like Stripe it honours `Idempotency-Key` (a repeat replays the first answer; a repeat
//! with another body is refused; one still running answers 409), so the service's retries
//! are exercised for real. For fault tests it can [`hold`](Sandbox::hold) answers: the
//! charge happens, the answer (and its callback) comes late — after the client gave up.

mod adyen;
pub mod cards;
pub mod standalone;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use wire::{Intent, Keyed, Notice};

/// A running sandbox.
#[derive(Clone)]
pub struct Sandbox {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

struct Inner {
    api_key: String,
    webhook_secret: String,
    callback_url: RwLock<Option<String>>,
    /// Where Adyen notifications go, and the hex HMAC key they are signed with.
    adyen: RwLock<Option<(String, String)>>,
    state: Mutex<wire::Ledger>,
    http: reqwest::Client,
    /// Answers still to hold back, and for how long.
    hold: Mutex<Option<(Duration, u32)>>,
}

impl Sandbox {
    /// Serves on `addr` (port 0: any free port) until [`stop`](Sandbox::stop).
    pub async fn start(
        addr: SocketAddr,
        api_key: &str,
        webhook_secret: &str,
        callback_url: Option<String>,
    ) -> std::io::Result<Sandbox> {
        // Its callbacks go out through reqwest on rustls, which needs a provider (the
        // platform's: ring) whether or not the payment service installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            api_key: api_key.to_string(),
            webhook_secret: webhook_secret.to_string(),
            callback_url: RwLock::new(callback_url),
            adyen: RwLock::new(None),
            state: Mutex::new(wire::Ledger::new(format!("http://{addr}"))),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
            hold: Mutex::new(None),
        });
        let app = Router::new()
            .route("/v1/payment_methods/{id}", get(payment_method))
            .route("/v1/payment_intents", post(create))
            .route("/v1/payment_intents/{id}/{action}", post(act))
            .route("/v1/refunds", post(refund))
            .route("/sandbox/3ds/{id}", post(authenticate).get(authenticate))
            .route("/sandbox/charges", get(charges))
            .route("/readyz", get(|| async { StatusCode::OK }))
            .route("/adyen/v71/storedPaymentMethods", get(adyen::stored))
            .route("/adyen/v71/payments", post(adyen::pay))
            .route(
                "/adyen/v71/payments/{reference}/{kind}",
                post(adyen::modify),
            )
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Sandbox { addr, inner, stop })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where callbacks go from now on.
    pub fn set_callback_url(&self, url: impl Into<String>) {
        *self.inner.callback_url.write().expect("not poisoned") = Some(url.into());
    }

    /// Where Adyen notifications go from now on, signed with `hmac_key` (hex).
    pub fn set_adyen(&self, url: impl Into<String>, hmac_key: impl Into<String>) {
        *self.inner.adyen.write().expect("not poisoned") = Some((url.into(), hmac_key.into()));
    }

    /// The next `count` answers to a charge, capture or refund come after `delay`; the
    /// work itself is done at once.
    pub fn hold(&self, delay: Duration, count: u32) {
        *self.inner.hold.lock().expect("not poisoned") = Some((delay, count));
    }

    /// How many times money moved (a charge authorized or captured), per PSP intent.
    pub fn charges(&self) -> HashMap<String, u32> {
        self.inner
            .state
            .lock()
            .expect("not poisoned")
            .charges
            .clone()
    }

    /// Completes (or fails) a pending 3-D Secure challenge, as the customer would.
    pub async fn authenticate(&self, psp_intent_id: &str, succeed: bool) -> bool {
        let done = self
            .inner
            .state
            .lock()
            .expect("not poisoned")
            .authenticate(psp_intent_id, succeed);
        match done {
            Some(events) => {
                self.inner.send(events);
                true
            }
            None => false,
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Inner {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k == self.api_key)
    }

    /// Sends each notice to its callback URL, signed, retrying a few times as a PSP does.
    fn send(self: &Arc<Self>, notices: Vec<Notice>) {
        for notice in notices {
            let (url, body, header) = match notice {
                Notice::Stripe(event) => {
                    let Some(url) = self.callback_url.read().expect("not poisoned").clone() else {
                        continue;
                    };
                    (url, event.to_string(), true)
                }
                Notice::Adyen(item) => {
                    let Some((url, key)) = self.adyen.read().expect("not poisoned").clone() else {
                        continue;
                    };
                    (url, adyen::notification(item, &key), false)
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                for attempt in 0..5u32 {
                    let mut req = me
                        .http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    if header {
                        let t = chrono::Utc::now().timestamp();
                        let sig = crate::domain::signature::stripe_sign(
                            &me.webhook_secret,
                            t,
                            body.as_bytes(),
                        );
                        req = req.header("stripe-signature", sig);
                    }
                    if req.send().await.is_ok_and(|r| r.status().is_success()) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                tracing::warn!(%url, "sandbox callback not accepted after 5 tries");
            });
        }
    }

    fn take_hold(&self) -> Option<Duration> {
        let mut hold = self.hold.lock().expect("not poisoned");
        let (delay, left) = (*hold)?;
        *hold = (left > 1).then_some((delay, left - 1));
        Some(delay)
    }

    /// Runs `work` once per idempotency key; a repeat replays its answer. `authorized`: the
    /// caller's API key was checked.
    async fn keyed(
        self: &Arc<Self>,
        authorized: bool,
        headers: &HeaderMap,
        fingerprint: String,
        work: impl FnOnce(&mut wire::Ledger) -> wire::Answered,
    ) -> Response {
        if !authorized {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API key",
            );
        }
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, body, events) = {
            let mut st = self.state.lock().expect("not poisoned");
            if let Some(k) = &key {
                match st.keys.get(k) {
                    Some(Keyed::Done(fp, status, body)) if *fp == fingerprint => {
                        return (*status, axum::Json(body.clone())).into_response();
                    }
                    Some(Keyed::Running(fp)) if *fp == fingerprint => {
                        return error(
                            StatusCode::CONFLICT,
                            "idempotency_error",
                            "idempotency_key_in_use",
                            "A request with this key is still being processed",
                        );
                    }
                    Some(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "idempotency_error",
                            "idempotency_key_reused",
                            "Keys for idempotent requests can only be used with the same parameters",
                        );
                    }
                    None => {}
                }
                st.keys
                    .insert(k.clone(), Keyed::Running(fingerprint.clone()));
            }
            work(&mut st)
        };
        // Finished in a task of its own: like a real PSP, the sandbox completes the request
        // even when the client has given up and gone.
        let me = self.clone();
        let hold = self.take_hold();
        let done = tokio::spawn(async move {
            if let Some(delay) = hold {
                tokio::time::sleep(delay).await;
            }
            if let Some(k) = key {
                me.state
                    .lock()
                    .expect("not poisoned")
                    .keys
                    .insert(k, Keyed::Done(fingerprint, status, body.clone()));
            }
            me.send(events);
            (status, axum::Json(body)).into_response()
        });
        done.await
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// How many times money moved, per PSP intent (what [`Sandbox::charges`] tells in-process):
/// a test's view of the PSP's ledger from outside.
async fn charges(State(s): State<Arc<Inner>>) -> Response {
    let charges = s.state.lock().expect("not poisoned").charges.clone();
    axum::Json(charges).into_response()
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"type": kind, "code": code, "message": message}})),
    )
        .into_response()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn off_session(f: &HashMap<String, String>) -> bool {
    f.get("off_session").is_some_and(|v| v == "true")
}

async fn payment_method(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !s.authorized(&headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API key",
        );
    }
    match cards::Card::from_token(&id) {
        Some(card) => axum::Json(json!({
            "id": id, "object": "payment_method", "type": "card",
            "card": {"brand": card.brand, "last4": card.last4(), "exp_month": 12, "exp_year": 2034},
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "resource_missing",
            &format!("No such PaymentMethod: '{id}'"),
        ),
    }
}

async fn create(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let fingerprint = format!("create:{}", String::from_utf8_lossy(&body));
    s.keyed(s.authorized(&headers), &headers, fingerprint, move |st| {
        let amount = f
            .get("amount")
            .and_then(|a| a.parse::<i64>().ok())
            .filter(|a| *a > 0);
        let (Some(amount), Some(currency)) = (amount, f.get("currency")) else {
            return wire::invalid("amount and currency are required");
        };
        let mut pi = Intent::new(st.next_id("pi"), amount, currency.clone());
        pi.capture_manual = f.get("capture_method").is_some_and(|m| m == "manual");
        pi.metadata = f
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("metadata[")
                    .and_then(|k| k.strip_suffix(']'))
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        pi.payment_method = f.get("payment_method").cloned();
        let id = pi.id.clone();
        st.intents.insert(id.clone(), pi);
        if f.get("confirm").is_some_and(|c| c == "true") {
            st.confirm(&id, None, off_session(&f))
        } else {
            let pi = &st.intents[&id];
            (StatusCode::OK, pi.json(), vec![])
        }
    })
    .await
}

async fn act(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let fingerprint = format!("{action}:{id}:{}", String::from_utf8_lossy(&body));
    s.keyed(s.authorized(&headers), &headers, fingerprint, move |st| {
        if !st.intents.contains_key(&id) {
            return wire::missing(&id);
        }
        match action.as_str() {
            "confirm" => st.confirm(&id, f.get("payment_method").cloned(), off_session(&f)),
            "capture" => {
                let amount = f.get("amount_to_capture").and_then(|a| a.parse().ok());
                st.capture(&id, amount)
            }
            "cancel" => st.cancel(&id),
            _ => wire::invalid("unknown action"),
        }
    })
    .await
}

async fn refund(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let fingerprint = format!("refund:{}", String::from_utf8_lossy(&body));
    s.keyed(s.authorized(&headers), &headers, fingerprint, move |st| {
        let Some(pi) = f.get("payment_intent") else {
            return wire::invalid("payment_intent is required");
        };
        let amount = f.get("amount").and_then(|a| a.parse::<i64>().ok());
        st.refund(pi, amount, f.get("metadata[refund]").cloned())
    })
    .await
}

async fn authenticate(
    State(s): State<Arc<Inner>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let succeed = q.get("outcome").is_none_or(|o| o != "fail");
    let done = s
        .state
        .lock()
        .expect("not poisoned")
        .authenticate(&id, succeed);
    match done {
        Some(events) => {
            s.send(events);
            (StatusCode::OK, "authenticated").into_response()
        }
        None => {
            let (status, body, _) = wire::missing(&id);
            (status, axum::Json(body)).into_response()
        }
    }
}
