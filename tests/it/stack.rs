//! Boots all seven services in-process, each with its own fresh database, sharing one event
//! prefix so they form one isolated stack.

use platform::ServiceName;
use test_support::{RunningService, TestDb};

/// The HS256 secret the test gateway trusts.
pub const SECRET: &str = "e2e-test-secret-0123456789abcdef-0123";

/// A token for `tenant` with `roles`, valid for ten minutes.
pub fn token(tenant: &str, subject: &str, roles: &[&str]) -> String {
    token_with(tenant, subject, roles, |_| {})
}

/// Like [`token`], with the claims adjusted by `edit` (for the failure cases).
pub fn token_with(
    tenant: &str,
    subject: &str,
    roles: &[&str],
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        "iss": "saas-platform-dev", "aud": "saas-platform", "sub": subject, "tid": tenant,
        "roles": roles, "iat": now, "nbf": now, "exp": now + 600,
    });
    edit(&mut claims);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign test token")
}

/// Where a stack's invoicing service stores PDFs.
fn blob_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("saas-e2e-blobs-{prefix}"))
}

/// Where a stack's notification service writes e-mail (a maildir) and SMS (a file).
pub fn outbox_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("saas-e2e-outbox-{prefix}"))
}

/// The stack's sandbox PSP signs its callbacks with this.
pub const SANDBOX_SECRET: &str = "whsec_e2e_sandbox";

pub struct Stack {
    pub gateway: RunningService,
    /// The sandbox PSP, its own HTTP server; its callbacks go to the gateway.
    pub sandbox: payment_service::sandbox::Sandbox,
    pub services: Vec<(ServiceName, RunningService)>,
    /// The stack's NATS namespace (EVENT_PREFIX).
    pub prefix: String,
    dbs: Vec<TestDb>,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(&[]).await
    }

    /// A stack whose gateway, payment and notification services read `overrides` (their settings and
    /// `ServiceConfig` variables such as `REDIS_URL`) over the test defaults.
    pub async fn start_with(overrides: &[(&str, &str)]) -> Stack {
        test_support::init_logging();
        let prefix = test_support::unique_prefix();
        let sandbox = payment_service::sandbox::Sandbox::start(
            "127.0.0.1:0".parse().expect("an address"),
            payment_service::settings::SANDBOX_API_KEY,
            SANDBOX_SECRET,
            None,
        )
        .await
        .expect("the sandbox PSP starts");
        let overridden = |k: &str| {
            overrides
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        let mut services = Vec::new();
        let mut dbs = Vec::new();
        let mut upstream_vars = Vec::new();
        for service in ServiceName::internal() {
            let db = TestDb::new().await;
            // Services started so far are reachable by the later ones (billing reads usage
            // from the subscription service).
            let peers: Vec<(&str, String)> = upstream_vars
                .iter()
                .map(|(k, v): &(&str, String)| (*k, v.clone()))
                .collect();
            let cfg = test_support::config(service, &db.url, &prefix, &peers);
            let app = match service {
                ServiceName::User => user_service::build(cfg).await,
                ServiceName::Subscription => subscription_service::build(cfg).await,
                // No billing clock: the tests start runs themselves.
                ServiceName::Billing => {
                    let settings = billing_service::settings::Settings::from_lookup(|k| {
                        (k == "BILLING_CLOCK_SECS").then(|| "0".into())
                    })
                    .expect("billing settings");
                    billing_service::build_with(cfg, settings).await
                }
                ServiceName::Payment => {
                    let url = sandbox.base_url();
                    let settings = payment_service::settings::Settings::from_lookup(|k| {
                        overridden(k).or(match k {
                            "SANDBOX_PSP" => Some(url.clone()),
                            "SANDBOX_WEBHOOK_SECRET" => Some(SANDBOX_SECRET.into()),
                            "PAYMENT_CLOCK_SECS" => Some("1".into()),
                            _ => None,
                        })
                    })
                    .expect("payment settings");
                    payment_service::build_with(cfg, settings).await
                }
                // PDFs in a directory of the stack's own, removed with it.
                ServiceName::Invoicing => {
                    let dir = blob_dir(&prefix);
                    let settings = invoicing_service::settings::Settings::from_lookup(|k| {
                        (k == "BLOB_STORE").then(|| dir.display().to_string())
                    })
                    .expect("invoicing settings");
                    invoicing_service::build_with(cfg, settings).await
                }
                // Webhooks to the tests' own receivers on loopback, retried within seconds;
                // e-mail and SMS into files of the stack's own.
                ServiceName::Notification => {
                    let out = outbox_dir(&prefix);
                    let settings = notification_service::settings::Settings::from_lookup(|k| {
                        overridden(k).or(match k {
                            "WEBHOOK_ALLOW_PRIVATE" => Some("true".into()),
                            "WEBHOOK_RETRY_SCHEDULE" => Some("0s,1s,2s".into()),
                            "WEBHOOK_TIMEOUT_MS" => Some("2000".into()),
                            "NOTIFY_CLOCK_MS" => Some("100".into()),
                            "EMAIL_TRANSPORT" => {
                                Some(format!("maildir:{}", out.join("mail").display()))
                            }
                            "SMS_TRANSPORT" => {
                                Some(format!("file:{}", out.join("sms.log").display()))
                            }
                            _ => None,
                        })
                    })
                    .expect("notification settings");
                    notification_service::build_with(cfg, settings).await
                }
                ServiceName::Gateway => unreachable!("internal() excludes the gateway"),
            }
            .unwrap_or_else(|e| panic!("{service} failed to start: {e}"));
            let running = test_support::spawn(app).await;
            upstream_vars.push((service.addr_var(), running.url()));
            services.push((service, running));
            dbs.push(db);
        }
        if let Some(url) = overridden("REDIS_URL") {
            upstream_vars.push(("REDIS_URL", url));
        }
        let gateway_cfg = test_support::config(
            ServiceName::Gateway,
            "postgres://unused/unused",
            &prefix,
            &upstream_vars,
        );
        let settings = gateway::config::GatewaySettings::from_lookup(|k| {
            overridden(k).or(match k {
                "JWT_HS256_SECRET" => Some(SECRET.to_string()),
                // Revocation must show at once in tests.
                "API_KEY_CACHE_SECS" => Some("0".to_string()),
                "MAX_BODY_BYTES" => Some("65536".to_string()),
                _ => None,
            })
        })
        .expect("gateway settings");
        let gateway = test_support::spawn(
            gateway::build_with(gateway_cfg, settings)
                .await
                .expect("gateway starts"),
        )
        .await;
        sandbox.set_callback_url(format!("{}/v1/webhooks/psp/stripe", gateway.url()));
        Stack {
            gateway,
            sandbox,
            services,
            prefix,
            dbs,
        }
    }

    /// `http://gateway/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    /// The base URL of one internal service (its `/metrics`, say).
    pub fn service_url(&self, service: ServiceName) -> String {
        self.services
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, r)| r.url())
            .expect("every internal service is in the stack")
    }

    /// One pass of the subscription service's clock as if it were `at` (periods that end by
    /// then end, the next ones begin).
    pub async fn tick_subscriptions(&self, at: chrono::DateTime<chrono::Utc>) {
        let i = ServiceName::internal()
            .position(|s| s == ServiceName::Subscription)
            .expect("the subscription service is internal");
        let pool = self.dbs[i].pool().await;
        let redis = platform::cache::connect(&test_support::redis_url())
            .await
            .expect("redis");
        let cache = subscription_service::cache::EntitlementCache::new(
            redis,
            std::time::Duration::from_secs(60),
            &self.prefix,
        );
        let plans = subscription_service::store::plans::PlanCache::default();
        subscription_service::events::tick(&pool, &plans, &cache, at)
            .await
            .expect("subscription tick");
        pool.close().await;
    }

    pub async fn stop(self) {
        self.sandbox.stop();
        self.gateway.stop().await;
        for (_, s) in self.services {
            s.stop().await;
        }
        for db in self.dbs {
            db.drop_db().await;
        }
        let _ = std::fs::remove_dir_all(blob_dir(&self.prefix));
        let _ = std::fs::remove_dir_all(outbox_dir(&self.prefix));
        // Streams are per test prefix; leave nothing behind in the shared NATS.
        if let Ok(bus) =
            platform::events::EventBus::connect(&test_support::nats_url(), &self.prefix).await
        {
            let _ = bus.delete_streams().await;
        }
    }
}

/// A JSON client of the stack's gateway.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(stack: &Stack) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: stack.url(""),
        }
    }

    /// Sends `body` as JSON with `bearer` (none when empty); the answer as JSON (or a string).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !bearer.is_empty() {
            req = req.bearer_auth(bearer);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("gateway answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// GETs `path` until `pred` holds (100 tries, 100 ms apart); the last answer.
    pub async fn until(
        &self,
        path: &str,
        bearer: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..100 {
            let (s, v) = self.send(reqwest::Method::GET, path, bearer, None).await;
            assert_eq!(s, reqwest::StatusCode::OK, "{v}");
            if pred(&v) {
                return v;
            }
            last = v;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{path}: condition not met; last answer {last}");
    }
}
