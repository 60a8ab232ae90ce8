//! A billing run end to end against real Postgres, Redis and NATS: usage ingested into the
//! subscription service, `StartRun` on the billing service, the run consumed from JetStream,
//! executed through `StreamUsage` and the pipeline, and completed with exact summaries.

use std::time::Duration;

use billing_service::store::runs;
use chrono::Utc;
use platform::ServiceName;
use platform::grpc::Caller;
use rpc::billing::v1 as bpb;
use rpc::billing::v1::billing_service_client::BillingServiceClient;
use rpc::common::v1::{Decimal, Period};
use rpc::subscription::v1 as spb;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use test_support::TestDb;

/// The billing service's run lease in these tests.
const LEASE: Duration = Duration::from_secs(2);

#[path = "runs/cycles.rs"]
mod cycles;
#[path = "runs/shards.rs"]
mod shards;

/// A request as a verified caller of `tenant` with `role`.
pub(crate) fn as_caller<T>(tenant: &str, role: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    Caller {
        tenant_id: ids::TenantId::parse(tenant).unwrap(),
        subject: "tester".into(),
        roles: vec![role.into()],
        scopes: Vec::new(),
        request_id: None,
    }
    .apply(&mut req);
    req
}

pub(crate) fn admin<T>(msg: T) -> tonic::Request<T> {
    as_caller("ten_platform", "platform_admin", msg)
}

pub(crate) fn d(v: &str) -> Option<Decimal> {
    Some(Decimal { value: v.into() })
}

/// A usage record of `api_calls`.
pub(crate) fn calls(
    id: String,
    tenant: &str,
    user: &str,
    quantity: &str,
    at: chrono::DateTime<Utc>,
) -> spb::UsageRecord {
    spb::UsageRecord {
        id,
        tenant_id: tenant.into(),
        user_id: user.into(),
        metric: "api_calls".into(),
        quantity: d(quantity),
        timestamp: Some(platform::grpc::timestamp(at)),
    }
}

/// Polls a run until it leaves queued/running (10 s at most).
pub(crate) async fn wait_done(
    billing: &mut BillingServiceClient<platform::grpc::Channel>,
    id: &str,
) -> bpb::BillingRun {
    for _ in 0..200 {
        let r = billing
            .get_run(admin(bpb::GetRunRequest { run_id: id.into() }))
            .await
            .unwrap()
            .into_inner();
        if r.status != bpb::RunStatus::Queued as i32 && r.status != bpb::RunStatus::Running as i32 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {id} did not finish in 10 s");
}

/// Polls a run until it ends, which must be `completed`.
pub(crate) async fn wait_completed(
    billing: &mut BillingServiceClient<platform::grpc::Channel>,
    id: &str,
) -> bpb::BillingRun {
    let run = wait_done(billing, id).await;
    assert_eq!(
        run.status,
        bpb::RunStatus::Completed as i32,
        "{}",
        run.error
    );
    run
}

/// The subscription and billing services on their own databases and event namespace.
pub(crate) struct Stack {
    prefix: String,
    pub(crate) sdb: TestDb,
    pub(crate) bdb: TestDb,
    subs_svc: test_support::RunningService,
    billing_svc: test_support::RunningService,
}

impl Stack {
    /// Both services on fresh databases and a fresh event namespace.
    pub(crate) async fn fresh() -> Stack {
        test_support::init_logging();
        let (sdb, bdb) = (TestDb::new().await, TestDb::new().await);
        Stack::start(test_support::unique_prefix(), sdb, bdb).await
    }

    async fn start(prefix: String, sdb: TestDb, bdb: TestDb) -> Stack {
        let subs_svc = test_support::spawn(
            subscription_service::build(test_support::config(
                ServiceName::Subscription,
                &sdb.url,
                &prefix,
                &[],
            ))
            .await
            .unwrap(),
        )
        .await;
        // The billing clock off: the tests start runs (and tick the clock) themselves.
        let billing_svc = test_support::spawn(
            billing_service::build_with(
                test_support::config(
                    ServiceName::Billing,
                    &bdb.url,
                    &prefix,
                    &[("SUBSCRIPTION_SERVICE_ADDR", subs_svc.url())],
                ),
                billing_service::settings::Settings {
                    clock: None,
                    lease: LEASE,
                    shards: 4,
                },
            )
            .await
            .unwrap(),
        )
        .await;
        Stack {
            prefix,
            sdb,
            bdb,
            subs_svc,
            billing_svc,
        }
    }

    /// [`Stack::fresh`], and a pool on the billing database, migrated before the services
    /// start (for tests that plant rows the services must find).
    pub(crate) async fn with_billing_pool() -> (Stack, sqlx::PgPool) {
        test_support::init_logging();
        let (sdb, bdb) = (TestDb::new().await, TestDb::new().await);
        let pool = bdb.pool().await;
        billing_service::MIGRATOR.run(&pool).await.unwrap();
        let stack = Stack::start(test_support::unique_prefix(), sdb, bdb).await;
        (stack, pool)
    }

    pub(crate) fn clients(
        &self,
    ) -> (
        SubscriptionServiceClient<platform::grpc::Channel>,
        BillingServiceClient<platform::grpc::Channel>,
    ) {
        let ch = |url: String| platform::grpc::lazy_channel(&url, Duration::from_secs(30)).unwrap();
        (
            SubscriptionServiceClient::new(ch(self.subs_svc.url())),
            BillingServiceClient::new(ch(self.billing_svc.url())),
        )
    }

    /// One pass of the subscription clock as if it were `at`: periods ending by then end.
    pub(crate) async fn tick_subscriptions(&self, at: chrono::DateTime<Utc>) {
        let pool = self.sdb.pool().await;
        let redis = platform::cache::connect(&test_support::redis_url())
            .await
            .unwrap();
        let cache = subscription_service::cache::EntitlementCache::new(
            redis,
            Duration::from_secs(60),
            &self.prefix,
        );
        let plans = subscription_service::store::plans::PlanCache::default();
        subscription_service::events::tick(&pool, &plans, &cache, at)
            .await
            .unwrap();
        pool.close().await;
    }

    pub(crate) async fn stop(self) {
        self.billing_svc.stop().await;
        self.subs_svc.stop().await;
        self.sdb.drop_db().await;
        self.bdb.drop_db().await;
        let nats = test_support::nats_url();
        if let Ok(bus) = platform::events::EventBus::connect(&nats, &self.prefix).await {
            let _ = bus.delete_streams().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_bills_the_period_once_with_exact_totals() {
    let stack = Stack::fresh().await;
    let (mut subs, mut billing) = stack.clients();

    subs.create_plan(admin(spb::CreatePlanRequest {
        plan: Some(spb::Plan {
            id: "metered".into(),
            name: "Metered".into(),
            currency: "USD".into(),
            interval: spb::Interval::Month as i32,
            prices: vec![spb::Price {
                id: "calls".into(),
                kind: spb::ChargeKind::Metered as i32,
                metric: "api_calls".into(),
                model: Some(spb::PriceModel {
                    model: Some(spb::price_model::Model::PerUnit(
                        spb::price_model::PerUnit {
                            unit_amount: d("0.5"),
                        },
                    )),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }))
    .await
    .unwrap();
    let now = Utc::now();
    let mut expected = std::collections::BTreeMap::new();
    for (t, n) in [("ten_a", 3000usize), ("ten_b", 1700)] {
        subs.create_subscription(admin(spb::CreateSubscriptionRequest {
            tenant_id: t.into(),
            plan_id: "metered".into(),
            trial_days: Some(0),
            seats: None,
        }))
        .await
        .unwrap();
        let records: Vec<_> = (0..n)
            .map(|i| {
                let at = now - chrono::Duration::minutes((i % 600) as i64);
                let q = format!("{}.5", i % 7);
                calls(format!("{t}-{i}"), t, &format!("usr_{}", i % 13), &q, at)
            })
            .collect();
        let total: rust_decimal::Decimal = (0..n)
            .map(|i| {
                format!("{}.5", i % 7)
                    .parse::<rust_decimal::Decimal>()
                    .unwrap()
            })
            .sum();
        expected.insert(t.to_string(), (n as i64, total));
        let r = subs
            .ingest_usage(admin(spb::IngestUsageRequest { records }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.accepted as usize, n);
    }

    // The records are stamped up to ten hours before the subscriptions began: they are
    // counted in the first period, and billed with it.
    // The first period ends (the subscription clock, a month and a day from now).
    let later = now + chrono::Duration::days(32);
    stack.tick_subscriptions(later).await;
    let period = Period {
        start: Some(platform::grpc::timestamp(now - chrono::Duration::days(1))),
        end: Some(platform::grpc::timestamp(later)),
    };
    let start = || bpb::StartRunRequest {
        period: Some(period),
        tenant_ids: vec!["ten_b".into(), "ten_a".into()],
        ..Default::default()
    };
    let run = billing
        .start_run(admin(start()))
        .await
        .unwrap()
        .into_inner();
    // The same tenants and period: the same run, not a second one.
    let again = billing
        .start_run(admin(start()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, run.id);
    assert_eq!(run.tenant_ids, ["ten_a", "ten_b"]);

    let done = wait_completed(&mut billing, &run.id).await;
    assert_eq!(done.progress.unwrap().records_processed, 4700);
    assert!(done.finished_at.is_some());

    let pool = stack.bdb.pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let run_id = ids::RunId::parse(&run.id).unwrap();
    let totals = runs::totals(&mut conn, &run_id).await.unwrap();
    let got: std::collections::BTreeMap<_, _> = totals
        .into_iter()
        .map(|(t, records, q)| (t.into_string(), (records, q)))
        .collect();
    assert_eq!(got, expected);
    // billing.run.completed left through the outbox with the totals.
    let event: serde_json::Value = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE payload->>'type' = 'billing.run.completed'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let completed: event_types::RunCompleted = event_types::read(&event["data"]).unwrap();
    assert_eq!(completed.run.run_id, run_id);
    assert_eq!(completed.totals.len(), 2);

    // Priced at the plan: 0.5 minor units per call, one rounding per line.
    let run = billing
        .get_run(admin(bpb::GetRunRequest {
            run_id: run.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let money: Vec<(String, i64)> = run
        .totals
        .iter()
        .map(|t| (t.tenant_id.clone(), t.total.as_ref().unwrap().amount_cents))
        .collect();
    let want: Vec<(String, i64)> = expected
        .iter()
        .map(|(t, (_, q))| {
            let exact = *q * rust_decimal::Decimal::new(5, 1);
            let cents = exact
                .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            (t.clone(), i64::try_from(cents).unwrap())
        })
        .collect();
    assert_eq!(money, want);
    let lines = billing
        .list_charges(admin(bpb::ListChargesRequest {
            run_id: run.id.clone(),
            tenant_id: Some("ten_a".into()),
            page: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lines.charges.len(), 1);
    assert_eq!(lines.charges[0].kind, bpb::ChargeKind::Usage as i32);
    assert_eq!(event["data"]["amounts"].as_array().unwrap().len(), 2);

    // Late usage arrives for ten_a; a correction bills only the difference, never twice.
    let late: Vec<_> = (0..100)
        .map(|i| calls(format!("late-{i}"), "ten_a", "usr_late", "3", now))
        .collect();
    subs.ingest_usage(admin(spb::IngestUsageRequest { records: late }))
        .await
        .unwrap();
    let fix = billing
        .start_run(admin(bpb::StartRunRequest {
            rerun: true,
            ..start()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(fix.id, run.id);
    assert_eq!(fix.corrects_run_id.as_deref(), Some(run.id.as_str()));
    let fixed = wait_completed(&mut billing, &fix.id).await;
    // 300 more calls × 0.5 = 150 minor units for ten_a; nothing for ten_b.
    let adj: Vec<(String, i64)> = fixed
        .totals
        .iter()
        .map(|t| (t.tenant_id.clone(), t.total.as_ref().unwrap().amount_cents))
        .collect();
    assert_eq!(adj, [("ten_a".to_string(), 150)]);
    let lines = billing
        .list_charges(admin(bpb::ListChargesRequest {
            run_id: fix.id.clone(),
            tenant_id: None,
            page: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lines.charges.len(), 1);
    assert_eq!(lines.charges[0].kind, bpb::ChargeKind::Adjustment as i32);
    // Correcting again with nothing new bills nothing more.
    let again = billing
        .start_run(admin(bpb::StartRunRequest {
            rerun: true,
            ..start()
        }))
        .await;
    let again = match again {
        Ok(r) => r.into_inner(),
        Err(e) => panic!("{e}"),
    };
    let again = wait_completed(&mut billing, &again.id).await;
    assert!(again.totals.is_empty(), "{:?}", again.totals);

    // A tenant sees runs naming it, and nothing else.
    let req = as_caller(
        "ten_c",
        "owner",
        bpb::GetRunRequest {
            run_id: run.id.clone(),
        },
    );
    assert_eq!(
        billing.get_run(req).await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    drop(conn);
    pool.close().await;
    stack.stop().await;
}

/// A plan with a flat fee of `flat` minor units and calls at `per_call` each.
pub(crate) fn flat_and_calls(id: &str, flat: &str, per_call: &str) -> spb::CreatePlanRequest {
    let price = |id: &str, kind: spb::ChargeKind, metric: &str, model| spb::Price {
        id: id.into(),
        kind: kind as i32,
        metric: metric.into(),
        model: Some(spb::PriceModel { model: Some(model) }),
        ..Default::default()
    };
    use spb::price_model::{Flat, Model, PerUnit};
    spb::CreatePlanRequest {
        plan: Some(spb::Plan {
            id: id.into(),
            name: id.into(),
            currency: "USD".into(),
            interval: spb::Interval::Month as i32,
            prices: vec![
                price(
                    "base",
                    spb::ChargeKind::Flat,
                    "",
                    Model::Flat(Flat { amount: d(flat) }),
                ),
                price(
                    "calls",
                    spb::ChargeKind::Metered,
                    "api_calls",
                    Model::PerUnit(PerUnit {
                        unit_amount: d(per_call),
                    }),
                ),
            ],
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_abandoned_by_a_dead_process_is_rerun_from_scratch() {
    let (stack, pool) = Stack::with_billing_pool().await;
    // The state a billing process that died (or froze) mid-run leaves while another one
    // runs: a run `running` well inside its deadline, its heartbeat silent for longer than
    // the lease, with a partial summary row.
    // (One statement: the service's sweeps never see the run without its row.)
    sqlx::query(
        "WITH dead AS (INSERT INTO billing_runs (id, period_start, period_end, tenant_ids, \
         tenant_key, status, deadline_seconds, started_at, heartbeat_at, attempt) VALUES \
         ('run_dead', now() - interval '1 day', now(), '{}', '', 'running', 600, \
         now() - interval '1 minute', now() - interval '1 minute', 1) RETURNING id) \
         INSERT INTO tenant_summaries (run_id, tenant_id, records, quantity) \
         SELECT id, 'ten_x', 5, 5 FROM dead",
    )
    .execute(&pool)
    .await
    .unwrap();

    assert_eq!(settled_status(&pool, "run_dead").await, "completed");
    let partial: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenant_summaries WHERE run_id = 'run_dead'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(partial, 0, "the dead attempt's partial rows were dropped");
    let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM billing_runs WHERE id = 'run_dead'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempt, 2, "run again by a second attempt");

    pool.close().await;
    stack.stop().await;
}

/// The status of run `id` once it is `completed`, or after 30 s (polled every 50 ms).
pub(crate) async fn settled_status(pool: &sqlx::PgPool, id: &str) -> String {
    let mut status = String::new();
    for _ in 0..600 {
        status = sqlx::query_scalar("SELECT status FROM billing_runs WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status
}

/// A run that failed (the subscription service was away, say) is not the window's last
/// word: asking for the window again runs it again, as the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_failed_runs_again_when_asked_again() {
    let stack = Stack::fresh().await;
    let (_, mut billing) = stack.clients();
    let now = Utc::now();
    let start = || bpb::StartRunRequest {
        period: Some(Period {
            start: Some(platform::grpc::timestamp(now - chrono::Duration::days(2))),
            end: Some(platform::grpc::timestamp(now - chrono::Duration::days(1))),
        }),
        ..Default::default()
    };
    let run = billing
        .start_run(admin(start()))
        .await
        .unwrap()
        .into_inner();
    wait_completed(&mut billing, &run.id).await;
    let pool = stack.bdb.pool().await;
    sqlx::query("UPDATE billing_runs SET status = 'failed', error = 'usage stream: unavailable' WHERE id = $1")
        .bind(&run.id)
        .execute(&pool)
        .await
        .unwrap();
    // A row the failed attempt's late write left behind.
    sqlx::query("INSERT INTO tenant_summaries (run_id, tenant_id, records, quantity) VALUES ($1, 'ten_late', 5, 5)")
        .bind(&run.id)
        .execute(&pool)
        .await
        .unwrap();

    let again = billing
        .start_run(admin(start()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, run.id, "the same run");
    assert_ne!(again.status, bpb::RunStatus::Failed as i32);
    let done = wait_completed(&mut billing, &run.id).await;
    assert_eq!(done.error, "");
    let attempt: i32 = sqlx::query_scalar("SELECT attempt FROM billing_runs WHERE id = $1")
        .bind(&run.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempt, 2);
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tenant_summaries WHERE run_id = $1 AND tenant_id = 'ten_late'",
    )
    .bind(&run.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(late, 0, "the failed attempt's rows are not billed");
    pool.close().await;
    stack.stop().await;
}

/// Migration 0304 keys the runs it finds with SQL; new runs are keyed in Rust. Same digest.
#[tokio::test]
async fn the_sql_tenant_key_is_the_rust_one() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    for set in [
        vec![],
        vec!["ten_a".to_string()],
        (0..100).map(|i| format!("ten_{i:032x}")).collect(),
    ] {
        let sql: String = sqlx::query_scalar(
            "SELECT encode(sha256(convert_to(array_to_string($1::text[], E'\\n'), 'UTF8')), 'hex')",
        )
        .bind(&set)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            sql,
            billing_service::store::runs::tenant_key(
                &set.iter()
                    .map(|t| ids::TenantId::parse(t).unwrap())
                    .collect::<Vec<_>>()
            ),
            "{set:?}"
        );
    }
    pool.close().await;
    db.drop_db().await;
}
