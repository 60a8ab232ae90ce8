//! Boots all seven services in-process, each with its own fresh database, sharing one event
//! prefix so they form one isolated stack.

use platform::ServiceName;
use test_support::{RunningService, TestDb};

pub struct Stack {
    pub gateway: RunningService,
    pub services: Vec<(ServiceName, RunningService)>,
    dbs: Vec<TestDb>,
}

impl Stack {
    pub async fn start() -> Stack {
        test_support::init_logging();
        let prefix = test_support::unique_prefix();
        let mut services = Vec::new();
        let mut dbs = Vec::new();
        let mut upstream_vars = Vec::new();
        for service in ServiceName::internal() {
            let db = TestDb::new().await;
            let cfg = test_support::config(service, &db.url, &prefix, &[]);
            let app = match service {
                ServiceName::User => user_service::build(cfg).await,
                ServiceName::Subscription => subscription_service::build(cfg).await,
                ServiceName::Billing => billing_service::build(cfg).await,
                ServiceName::Payment => payment_service::build(cfg).await,
                ServiceName::Invoicing => invoicing_service::build(cfg).await,
                ServiceName::Notification => notification_service::build(cfg).await,
                ServiceName::Gateway => unreachable!("internal() excludes the gateway"),
            }
            .unwrap_or_else(|e| panic!("{service} failed to start: {e}"));
            let running = test_support::spawn(app).await;
            upstream_vars.push((service.addr_var(), running.url()));
            services.push((service, running));
            dbs.push(db);
        }
        let gateway_cfg = test_support::config(
            ServiceName::Gateway,
            "postgres://unused/unused",
            &prefix,
            &upstream_vars,
        );
        let gateway =
            test_support::spawn(gateway::build(gateway_cfg).await.expect("gateway starts")).await;
        Stack {
            gateway,
            services,
            dbs,
        }
    }

    /// `http://gateway/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        for (_, s) in self.services {
            s.stop().await;
        }
        for db in self.dbs {
            db.drop_db().await;
        }
    }
}
