//! The subscription service over gRPC against real Postgres, Redis and NATS: plans and
//! subscriptions, usage de-duplication under concurrent re-sends, rollups equal to a
//! recomputation, seats following user events (with redeliveries), entitlements changing with
//! usage and suspension, tenant isolation and the billing streams.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use platform::ServiceName;
use platform::events::{CloudEvent, EventBus};
use platform::grpc::Caller;
use platform::grpc::Channel;
use rand::Rng;
use rpc::common::v1 as common;
use rpc::subscription::v1 as pb;
use rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient;
use rust_decimal::Decimal;
use subscription_service::settings::Settings;
use test_support::{RunningService, TestDb};

struct Harness {
    svc: Option<RunningService>,
    db: Option<TestDb>,
    pool: sqlx::PgPool,
    bus: EventBus,
    channel: Channel,
}

impl Harness {
    async fn start() -> Harness {
        test_support::init_logging();
        let prefix = test_support::unique_prefix();
        let db = TestDb::new().await;
        let cfg = test_support::config(ServiceName::Subscription, &db.url, &prefix, &[]);
        let settings = Settings {
            usage_grace: chrono::Duration::hours(72),
            entitlement_ttl: Duration::from_secs(60),
            tick: Duration::from_secs(3600),
            usage_read_parts: 3,
            usage_writers: 2,
        };
        let app = subscription_service::build_with(cfg, settings)
            .await
            .unwrap();
        let svc = test_support::spawn(app).await;
        let channel = platform::grpc::lazy_channel(&svc.url(), Duration::from_secs(30)).unwrap();
        let bus = EventBus::connect(&test_support::nats_url(), &prefix)
            .await
            .unwrap();
        let pool = db.pool().await;
        Harness {
            svc: Some(svc),
            db: Some(db),
            pool,
            bus,
            channel,
        }
    }

    /// The catalog's "pro" plan (see [`plan`]), as most tests need it.
    async fn create_pro_plan(&self) {
        self.client()
            .create_plan(admin(pb::CreatePlanRequest {
                plan: Some(plan("pro", "4900")),
            }))
            .await
            .unwrap();
    }

    fn client(&self) -> SubscriptionServiceClient<Channel> {
        SubscriptionServiceClient::new(self.channel.clone())
    }

    async fn stop(mut self) {
        self.svc.take().unwrap().stop().await;
        self.pool.close().await;
        self.db.take().unwrap().drop_db().await;
        let _ = self.bus.delete_streams().await;
    }
}

fn as_caller<T>(tenant: &str, roles: &[&str], msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    Caller {
        tenant_id: ids::TenantId::parse(tenant).unwrap(),
        subject: "usr_test".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        scopes: Vec::new(),
        request_id: None,
    }
    .apply(&mut req);
    req
}

fn admin<T>(msg: T) -> tonic::Request<T> {
    as_caller("ten_platform", &["platform_admin"], msg)
}

fn d(v: &str) -> Option<common::Decimal> {
    Some(common::Decimal { value: v.into() })
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(platform::grpc::timestamp(t))
}

/// 49.00 flat, 10.00 per seat, api_calls metered (hard limit 1000), storage soft limit, sso.
fn plan(id: &str, base: &str) -> pb::Plan {
    use pb::price_model::{Flat, Model, PerUnit};
    pb::Plan {
        id: id.into(),
        name: format!("Plan {id}"),
        currency: "USD".into(),
        interval: pb::Interval::Month as i32,
        prices: vec![
            pb::Price {
                id: "base".into(),
                kind: pb::ChargeKind::Flat as i32,
                model: Some(pb::PriceModel {
                    model: Some(Model::Flat(Flat { amount: d(base) })),
                }),
                ..Default::default()
            },
            pb::Price {
                id: "seats".into(),
                kind: pb::ChargeKind::Seat as i32,
                model: Some(pb::PriceModel {
                    model: Some(Model::PerUnit(PerUnit {
                        unit_amount: d("1000"),
                    })),
                }),
                ..Default::default()
            },
            pb::Price {
                id: "calls".into(),
                kind: pb::ChargeKind::Metered as i32,
                metric: "api_calls".into(),
                model: Some(pb::PriceModel {
                    model: Some(Model::PerUnit(PerUnit {
                        unit_amount: d("0.1"),
                    })),
                }),
                ..Default::default()
            },
        ],
        features: vec![
            pb::Feature {
                key: "sso".into(),
                value: Some(pb::feature::Value::Enabled(true)),
            },
            pb::Feature {
                key: "calls".into(),
                value: Some(pb::feature::Value::Limit(pb::feature::MeteredLimit {
                    metric: "api_calls".into(),
                    limit: d("1000"),
                    kind: pb::LimitKind::Hard as i32,
                })),
            },
            pb::Feature {
                key: "storage".into(),
                value: Some(pb::feature::Value::Limit(pb::feature::MeteredLimit {
                    metric: "storage_gb".into(),
                    limit: d("10"),
                    kind: pb::LimitKind::Soft as i32,
                })),
            },
        ],
        ..Default::default()
    }
}

async fn subscribe(h: &Harness, tenant: &str, plan_id: &str) -> pb::Subscription {
    h.client()
        .create_subscription(admin(pb::CreateSubscriptionRequest {
            tenant_id: tenant.into(),
            plan_id: plan_id.into(),
            trial_days: Some(0),
            seats: None,
        }))
        .await
        .unwrap()
        .into_inner()
}

fn record(
    tenant: &str,
    id: &str,
    user: &str,
    metric: &str,
    q: &str,
    t: DateTime<Utc>,
) -> pb::UsageRecord {
    pb::UsageRecord {
        id: id.into(),
        tenant_id: tenant.into(),
        user_id: user.into(),
        metric: metric.into(),
        quantity: d(q),
        timestamp: ts(t),
    }
}

async fn ingest(h: &Harness, records: Vec<pb::UsageRecord>) -> pb::IngestUsageResponse {
    h.client()
        .ingest_usage(admin(pb::IngestUsageRequest { records }))
        .await
        .unwrap()
        .into_inner()
}

async fn entitlement(
    h: &Harness,
    tenant: &str,
    feature: &str,
    user: Option<&str>,
) -> pb::Entitlement {
    h.client()
        .check_entitlement(as_caller(
            tenant,
            &["member"],
            pb::CheckEntitlementRequest {
                tenant_id: tenant.into(),
                user_id: user.map(str::to_string),
                feature: feature.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn plans_are_versioned_and_subscriptions_prorate_plan_changes() {
    let h = Harness::start().await;
    let mut c = h.client();
    let p = c
        .create_plan(admin(pb::CreatePlanRequest {
            plan: Some(plan("pro", "4900")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p.id.as_str(), p.version), ("pro", 1));
    // Only the operator edits the catalog.
    let denied = c
        .create_plan(as_caller(
            "ten_a",
            &["owner"],
            pb::CreatePlanRequest {
                plan: Some(plan("x", "1")),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    // Bad definitions name the field.
    let mut bad = plan("bad", "100");
    bad.prices[2].metric = String::new();
    let e = c
        .create_plan(admin(pb::CreatePlanRequest { plan: Some(bad) }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(e.metadata().get("x-error-field").unwrap(), "metric");
    let dup = c
        .create_plan(admin(pb::CreatePlanRequest {
            plan: Some(plan("pro", "1")),
        }))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);

    let sub = subscribe(&h, "ten_a", "pro").await;
    assert_eq!(sub.status, pb::SubscriptionStatus::Active as i32);
    assert_eq!((sub.plan_id.as_str(), sub.plan_version), ("pro", 1));

    // Editing makes version 2; the subscription keeps version 1 until moved.
    let v2 = c
        .update_plan(admin(pb::UpdatePlanRequest {
            plan_id: "pro".into(),
            plan: Some(plan("pro", "9900")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);
    let got = c
        .get_subscription(as_caller(
            "ten_a",
            &["viewer"],
            pb::GetSubscriptionRequest {
                tenant_id: "ten_a".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.plan_version, 1);
    let v1 = c
        .get_plan(admin(pb::GetPlanRequest {
            plan_id: "pro".into(),
            version: 1,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v1.prices[0].model, plan("pro", "4900").prices[0].model);

    // Moving to the latest version prorates the recurring charges over the rest of the period.
    let moved = c
        .change_plan(as_caller(
            "ten_a",
            &["owner"],
            pb::ChangePlanRequest {
                tenant_id: "ten_a".into(),
                plan_id: "pro".into(),
                plan_version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.plan_version, 2);
    let (credit, charge): (i64, i64) = sqlx::query_as(
        "SELECT credit_minor, charge_minor FROM plan_changes WHERE tenant_id = 'ten_a'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    // Changed moments after the period began: (almost) the whole of both plans, 0 seats.
    assert!((-4900..=-4890).contains(&credit), "{credit}");
    assert!((9880..=9900).contains(&charge), "{charge}");

    // Cancel at period end, then immediately; both idempotent in effect.
    let s = c
        .cancel_subscription(admin(pb::CancelSubscriptionRequest {
            tenant_id: "ten_a".into(),
            immediately: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(s.cancel_at_period_end);
    assert_eq!(s.status, pb::SubscriptionStatus::Active as i32);
    let s = c
        .cancel_subscription(admin(pb::CancelSubscriptionRequest {
            tenant_id: "ten_a".into(),
            immediately: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status, pb::SubscriptionStatus::Canceled as i32);
    let e = c
        .change_plan(admin(pb::ChangePlanRequest {
            tenant_id: "ten_a".into(),
            plan_id: "pro".into(),
            plan_version: 1,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    // Every change left a `subscription.*` event in the outbox, in the changing transaction.
    let events: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY seq")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "subscription.created",
            "subscription.plan_changed",
            "subscription.cancel_scheduled",
            "subscription.canceled"
        ]
    );
    assert_eq!(events[1]["data"]["proration_credit_minor"], credit);
    assert_eq!(events[1]["data"]["proration_charge_minor"], charge);
    assert!(events.iter().all(|e| e["tenantid"] == "ten_a"));
    h.stop().await;
}

#[tokio::test]
async fn tenants_are_walled_off() {
    let h = Harness::start().await;
    let mut c = h.client();
    h.create_pro_plan().await;
    subscribe(&h, "ten_b", "pro").await;
    // A caller of tenant A asking about tenant B: not found, on every tenant-scoped call.
    let a = |msg| as_caller("ten_a", &["owner"], msg);
    let e = c
        .get_subscription(a(pb::GetSubscriptionRequest {
            tenant_id: "ten_b".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c
        .list_seat_history(as_caller(
            "ten_a",
            &["owner"],
            pb::GetSubscriptionRequest {
                tenant_id: "ten_b".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c
        .cancel_subscription(as_caller(
            "ten_a",
            &["owner"],
            pb::CancelSubscriptionRequest {
                tenant_id: "ten_b".into(),
                immediately: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c
        .check_entitlement(as_caller(
            "ten_a",
            &["owner"],
            pb::CheckEntitlementRequest {
                tenant_id: "ten_b".into(),
                user_id: None,
                feature: "sso".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // A tenant's own machine client cannot write usage for another tenant.
    let now = Utc::now();
    let r = c
        .ingest_usage(as_caller(
            "ten_a",
            &["owner"],
            pb::IngestUsageRequest {
                records: vec![record("ten_b", "x1", "", "api_calls", "1", now)],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.accepted, 0);
    assert_eq!(r.rejected[0].reason, pb::RejectReason::UnknownTenant as i32);
    h.stop().await;
}

#[tokio::test]
async fn usage_is_counted_once_under_concurrent_resends_and_bad_records_are_named() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    subscribe(&h, "ten_a", "pro").await;
    let now = Utc::now();
    let batch: Vec<_> = (0..2000)
        .map(|i| {
            record(
                "ten_a",
                &format!("evt-{i}"),
                &format!("usr_{}", i % 7),
                "api_calls",
                "1.5",
                now - chrono::Duration::minutes(i % 300),
            )
        })
        .collect();
    // The same batch four times at once: every record is stored and counted exactly once.
    let sends = (0..4).map(|_| ingest(&h, batch.clone()));
    let results = futures::future::join_all(sends).await;
    let accepted: u32 = results.iter().map(|r| r.accepted).sum();
    let duplicates: u32 = results.iter().map(|r| r.duplicates).sum();
    assert_eq!((accepted, duplicates), (2000, 6000));
    let total: rust_decimal::Decimal = sqlx::query_scalar(
        "SELECT sum(quantity) FROM usage_period_total WHERE tenant_id = 'ten_a'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(total, rust_decimal::Decimal::from(3000));

    // Partial success: each bad record says which and why; the good one is stored.
    let r = ingest(
        &h,
        vec![
            record("ten_a", "ok-1", "", "api_calls", "2", now),
            record("ten_nobody", "r-1", "", "api_calls", "1", now),
            record("ten_a", "r-2", "", "bogus_metric", "1", now),
            record(
                "ten_a",
                "r-3",
                "",
                "api_calls",
                "1",
                now - chrono::Duration::hours(100),
            ),
            record("ten_a", "r-4", "", "api_calls", "-3", now),
            record("ten_a", "ok-1", "", "api_calls", "2", now),
        ],
    )
    .await;
    assert_eq!((r.accepted, r.duplicates), (1, 1));
    let reasons: Vec<(u32, i32)> = r.rejected.iter().map(|x| (x.index, x.reason)).collect();
    assert_eq!(
        reasons,
        vec![
            (1, pb::RejectReason::UnknownTenant as i32),
            (2, pb::RejectReason::UnknownMetric as i32),
            (3, pb::RejectReason::TooOld as i32),
            (4, pb::RejectReason::Invalid as i32),
        ]
    );
    assert!(r.rejected.iter().all(|x| !x.message.is_empty()));
    let too_many = h
        .client()
        .ingest_usage(admin(pb::IngestUsageRequest {
            records: vec![record("ten_a", "z", "", "api_calls", "1", now); 10_001],
        }))
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
    h.stop().await;
}

/// Batches sent at once are stored in groups (`store::group_commit`); overlapping ones fall
/// back to one transaction each. Either way each batch learns its own count, every record is
/// counted once, and the rollups agree with the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_batches_each_get_their_own_count_and_count_once() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    let tenants = ["ten_g1", "ten_g2", "ten_g3"];
    for t in tenants {
        subscribe(&h, t, "pro").await;
    }
    let now = Utc::now();
    // Batch k: 400 records of its own and 100 it shares with batch k + 1, of tenant k % 3.
    let batch = |k: usize| -> Vec<pb::UsageRecord> {
        let t = tenants[k % 3];
        let own = (0..400).map(move |i| format!("b{k}-{i}"));
        let shared_prev = (0..50).map(move |i| format!("s{k}-{i}"));
        let shared_next = (0..50).map(move |i| format!("s{}-{i}", k + 3));
        own.chain(shared_prev)
            .chain(shared_next)
            .map(|id| record(t, &id, "usr_1", "api_calls", "2", now))
            .collect()
    };
    let sends = (0..24).map(|k| ingest(&h, batch(k)));
    let results = futures::future::join_all(sends).await;
    for (k, r) in results.iter().enumerate() {
        assert_eq!(r.accepted + r.duplicates, 500, "batch {k}: {r:?}");
        assert!(r.rejected.is_empty(), "batch {k}: {r:?}");
    }
    // Own ids 24 × 400; shared ids s{k}-{i} for k in 0..27, 50 each.
    let distinct = 24 * 400 + 27 * 50;
    let accepted: u32 = results.iter().map(|r| r.accepted).sum();
    assert_eq!(accepted, distinct);
    let (records, total, hourly, period): (i64, Decimal, Decimal, Decimal) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_records), \
                (SELECT sum(quantity) FROM usage_period_total), \
                (SELECT sum(quantity) FROM usage_hourly), \
                (SELECT sum(quantity) FROM usage_period)",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let expected = Decimal::from(2 * distinct);
    assert_eq!(
        (records, total, hourly, period),
        (i64::from(distinct), expected, expected, expected)
    );
    h.stop().await;
}

#[tokio::test]
async fn windows_equal_a_recomputation_after_a_random_workload() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    for t in ["ten_a", "ten_b"] {
        subscribe(&h, t, "pro").await;
    }
    let now = Utc::now();
    let mut rng = rand::rng();
    let mut batches = Vec::new();
    for _ in 0..12 {
        let n = rng.random_range(1..400);
        let batch: Vec<_> = (0..n)
            .map(|_| {
                let t = if rng.random_bool(0.5) {
                    "ten_a"
                } else {
                    "ten_b"
                };
                let id = format!("e{}", rng.random_range(0..1500)); // overlapping ids across batches
                let user = format!("usr_{}", rng.random_range(0..5));
                let metric = if rng.random_bool(0.7) {
                    "api_calls"
                } else {
                    "storage_gb"
                };
                let q = format!("{}.{}", rng.random_range(0..100), rng.random_range(0..1000));
                let at = now - chrono::Duration::seconds(rng.random_range(0..60 * 3600));
                record(t, &id, &user, metric, &q, at)
            })
            .collect();
        batches.push(batch);
    }
    // Quantities at the edges of what a stream must carry exactly: the largest allowed, more
    // digits than an i64 holds, the smallest step, zero, and whole base-10000 digits.
    let edges = [
        "1000000000000",
        "999999999999.999999999999",
        "0.000000000001",
        "0",
        "20000",
        "10000.0001",
    ];
    batches.push(
        edges
            .iter()
            .enumerate()
            .map(|(i, q)| {
                record(
                    "ten_a",
                    &format!("edge{i}"),
                    "usr_edge",
                    "api_calls",
                    q,
                    now,
                )
            })
            .collect(),
    );
    let results = futures::future::join_all(batches.into_iter().map(|b| ingest(&h, b))).await;
    assert!(results.iter().all(|r| r.rejected.is_empty()));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_records")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        results.iter().map(|r| i64::from(r.accepted)).sum::<i64>()
    );
    // Each rollup equals the same aggregation over the raw records (EXCEPT both ways = empty).
    let checks = [
        "SELECT tenant_id, metric, date_trunc('hour', ts, 'UTC'), user_id, sum(quantity) FROM usage_records GROUP BY 1,2,3,4",
        "SELECT tenant_id, metric, hour, user_id, quantity FROM usage_hourly",
        "SELECT r.tenant_id, r.metric, p.period_start, sum(r.quantity) FROM usage_records r JOIN subscriptions s ON s.tenant_id = r.tenant_id JOIN usage_period_total p ON p.tenant_id = r.tenant_id AND p.metric = r.metric AND greatest(r.ts, s.period_anchor) >= p.period_start AND greatest(r.ts, s.period_anchor) < p.period_end GROUP BY 1,2,3",
        "SELECT tenant_id, metric, period_start, quantity FROM usage_period_total",
        "SELECT tenant_id, metric, period_start, sum(quantity) FROM usage_period GROUP BY 1,2,3",
        "SELECT tenant_id, metric, period_start, quantity FROM usage_period_total",
        // Each record names the period it was counted in: billing reads a period by it.
        "SELECT tenant_id, metric, period_start, sum(quantity) FROM usage_records GROUP BY 1,2,3",
        "SELECT tenant_id, metric, period_start, quantity FROM usage_period_total",
    ];
    for pair in checks.chunks(2) {
        for (a, b) in [(pair[0], pair[1]), (pair[1], pair[0])] {
            let diff: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM (({a}) EXCEPT ({b})) x"
            )))
            .fetch_one(&h.pool)
            .await
            .unwrap();
            assert_eq!(diff, 0, "rollup differs from recomputation:\n{a}\nvs\n{b}");
        }
    }
    // Every raw record falls in a period row (none was left out of the period rollup).
    let unplaced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM usage_records r WHERE NOT EXISTS (SELECT 1 FROM usage_period_total p \
         JOIN subscriptions s ON s.tenant_id = p.tenant_id WHERE p.tenant_id = r.tenant_id AND p.metric = r.metric AND greatest(r.ts, s.period_anchor) >= p.period_start AND greatest(r.ts, s.period_anchor) < p.period_end)",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(unplaced, 0);
    // The query API reads the rollups: hourly points sum to the raw total.
    let raw_total: rust_decimal::Decimal = sqlx::query_scalar("SELECT coalesce(sum(quantity), 0) FROM usage_records WHERE tenant_id = 'ten_a' AND metric = 'api_calls'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    let usage = h
        .client()
        .get_usage(as_caller(
            "ten_a",
            &["viewer"],
            pb::GetUsageRequest {
                tenant_id: "ten_a".into(),
                metric: "api_calls".into(),
                from: ts(now - chrono::Duration::hours(61)),
                to: ts(now + chrono::Duration::hours(1)),
                granularity: pb::Granularity::Hour as i32,
                user_id: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        usage
            .total
            .unwrap()
            .value
            .parse::<rust_decimal::Decimal>()
            .unwrap(),
        raw_total
    );

    // Billing's stream returns exactly the period's raw records, as records and as columns,
    // selected by time window or by the periods they were counted in.
    // (tenant, user, metric) → (records, total quantity), once per stream form.
    type Sums = BTreeMap<(String, String, String), (i64, Decimal)>;
    let counted: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT DISTINCT tenant_id, period_start FROM usage_period_total")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    let by_period: Vec<pb::TenantPeriod> = counted
        .iter()
        .map(|(t, s)| pb::TenantPeriod {
            tenant_id: t.clone(),
            period_start: ts(*s),
        })
        .collect();
    let mut sums: [Sums; 4] = Default::default();
    let forms = [(false, false), (true, false), (false, true), (true, true)];
    for ((columnar, periods), sums) in forms.into_iter().zip(&mut sums) {
        let mut stream = h
            .client()
            .stream_usage(admin(pb::StreamUsageRequest {
                tenant_ids: vec![],
                period: Some(common::Period {
                    start: ts(now - chrono::Duration::days(30)),
                    end: ts(now + chrono::Duration::hours(1)),
                }),
                batch_size: 100,
                columnar,
                periods: if periods { by_period.clone() } else { vec![] },
            }))
            .await
            .unwrap()
            .into_inner();
        while let Some(b) = stream.next().await {
            let b = b.unwrap();
            let mut add = |t: &str, u: &str, m: &str, q: Decimal| {
                let e = sums.entry((t.into(), u.into(), m.into())).or_default();
                e.0 += 1;
                e.1 += q;
            };
            if let Some(c) = b.columns {
                assert!(columnar && b.records.is_empty());
                assert!(c.units.len() <= 100);
                let s = |i: u32| c.strings[i as usize].as_str();
                for i in 0..c.units.len() {
                    let q = match c.wide.get(&(i as u32)) {
                        Some(d) => d.value.parse().unwrap(),
                        None => Decimal::new(c.units[i], c.scale[i]),
                    };
                    add(s(c.tenant[i]), s(c.user[i]), s(c.metric[i]), q);
                }
            } else {
                assert!(!columnar);
                assert!(b.records.len() <= 100);
                for r in &b.records {
                    let q = r.quantity.as_ref().unwrap().value.parse().unwrap();
                    add(&r.tenant_id, &r.user_id, &r.metric, q);
                }
            }
        }
    }
    let streamed: i64 = sums[0].values().map(|v| v.0).sum();
    assert_eq!(streamed, stored);
    assert_eq!(
        sums[0], sums[1],
        "columns carry the same records as records do"
    );
    assert_eq!(sums[0], sums[2], "the periods select the same records");
    assert_eq!(sums[0], sums[3]);
    let all: Decimal = sqlx::query_scalar("SELECT sum(quantity) FROM usage_records")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(sums[1].values().map(|v| v.1).sum::<Decimal>(), all);
    h.stop().await;
}

/// The `n`th test user's id (a well-formed `usr_` id, as the user service makes them).
fn uid(n: u32) -> String {
    format!("usr_{n:032x}")
}

/// A `user.*` event as the user service publishes it (the typed contract).
fn user_event(kind: &str, tenant: &str, user: &str, status: &str) -> CloudEvent {
    let payload = event_types::UserChanged {
        tenant_id: ids::TenantId::parse(tenant).unwrap(),
        user_id: ids::UserId::parse(user).unwrap(),
        email: format!("{user}@example.test"),
        status: status.into(),
        roles: vec!["member".into()],
    };
    CloudEvent::new("/services/user", kind, event_types::data(&payload))
        .with_tenant(tenant)
        .with_subject(user)
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn seats_follow_user_events_counting_redeliveries_once() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    // Two users exist before the subscription; it starts with their seats.
    for u in [uid(1), uid(2)] {
        h.bus
            .publish(&user_event("user.created", "ten_a", &u, "active"))
            .await
            .unwrap();
    }
    wait_for("members", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM members")
            .fetch_one(&h.pool)
            .await
            .unwrap()
            == 2
    })
    .await;
    let sub = subscribe(&h, "ten_a", "pro").await;
    assert_eq!(sub.seats, 2);
    // A third user, delivered three times (a re-publish without the broker's de-dup id, and
    // one with a fresh event id but the same state): one seat.
    let third = user_event("user.created", "ten_a", &uid(3), "active");
    h.bus.publish(&third).await.unwrap();
    let payload = serde_json::to_vec(&third).unwrap();
    h.bus
        .jetstream()
        .publish(h.bus.subject("user.created"), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    h.bus
        .publish(&user_event("user.updated", "ten_a", &uid(3), "active"))
        .await
        .unwrap();
    // Deactivating one user drops a seat; a stale event (older time) does not undo it.
    let mut off = user_event("user.deactivated", "ten_a", &uid(1), "deactivated");
    off.time = Utc::now() + chrono::Duration::seconds(1);
    h.bus.publish(&off).await.unwrap();
    let mut stale = user_event("user.updated", "ten_a", &uid(1), "active");
    stale.time = Utc::now() - chrono::Duration::hours(1);
    h.bus.publish(&stale).await.unwrap();
    let marker = user_event("user.created", "ten_other", &uid(9), "active");
    h.bus.publish(&marker).await.unwrap();
    wait_for("all events applied", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM members WHERE tenant_id = 'ten_other'")
            .fetch_one(&h.pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    let got = h
        .client()
        .get_subscription(admin(pb::GetSubscriptionRequest {
            tenant_id: "ten_a".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.seats, 2, "usr_2 and usr_3 active, usr_1 deactivated");
    let history = h
        .client()
        .list_seat_history(admin(pb::GetSubscriptionRequest {
            tenant_id: "ten_a".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let counts: Vec<u32> = history.segments.iter().map(|s| s.seats).collect();
    assert_eq!(counts.first(), Some(&2));
    assert_eq!(counts.last(), Some(&2));
    assert!(counts.contains(&3), "{counts:?}");
    assert!(history.segments.last().unwrap().to.is_none());
    assert!(
        history.segments[..history.segments.len() - 1]
            .iter()
            .all(|s| s.to.is_some())
    );
    // A deactivated user is denied; an active one is not.
    assert_eq!(
        entitlement(&h, "ten_a", "sso", Some(uid(1).as_str()))
            .await
            .reason,
        "user_inactive"
    );
    assert!(
        entitlement(&h, "ten_a", "sso", Some(uid(2).as_str()))
            .await
            .allowed
    );
    h.stop().await;
}

#[tokio::test]
async fn entitlements_change_with_usage_and_suspension() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    assert_eq!(
        entitlement(&h, "ten_a", "calls", None).await.reason,
        "no_subscription"
    );
    subscribe(&h, "ten_a", "pro").await;
    let e = entitlement(&h, "ten_a", "calls", None).await;
    assert!(e.allowed);
    assert_eq!(e.remaining.unwrap().value, "1000");
    assert_eq!(
        entitlement(&h, "ten_a", "nope", None).await.reason,
        "not_in_plan"
    );
    let now = Utc::now();
    // Cached now; usage below the limit changes the answer at once (invalidation).
    ingest(
        &h,
        (0..999)
            .map(|i| record("ten_a", &format!("c{i}"), "", "api_calls", "1", now))
            .collect(),
    )
    .await;
    let e = entitlement(&h, "ten_a", "calls", None).await;
    assert_eq!(
        (e.allowed, e.remaining.unwrap().value.as_str()),
        (true, "1")
    );
    // Usage stamped just before the subscription began still counts (first period).
    let early = ingest(
        &h,
        vec![record(
            "ten_a",
            "early-1",
            "",
            "storage_gb",
            "0.5",
            now - chrono::Duration::hours(2),
        )],
    )
    .await;
    assert_eq!(early.accepted, 1);
    let e = entitlement(&h, "ten_a", "storage", None).await;
    assert_eq!(e.used.unwrap().value, "0.5");
    // Crossing the hard limit denies.
    ingest(
        &h,
        vec![record("ten_a", "c-last", "", "api_calls", "1", now)],
    )
    .await;
    let e = entitlement(&h, "ten_a", "calls", None).await;
    assert_eq!(
        (e.allowed, e.reason.as_str(), e.used.unwrap().value.as_str()),
        (false, "limit_reached", "1000")
    );
    // Soft limits allow and flag.
    ingest(
        &h,
        vec![record("ten_a", "s1", "", "storage_gb", "12.5", now)],
    )
    .await;
    let e = entitlement(&h, "ten_a", "storage", None).await;
    assert_eq!(
        (e.allowed, e.reason.as_str()),
        (true, "soft_limit_exceeded")
    );
    // The tenant is suspended (user service event): everything is denied; reactivated: back.
    assert!(entitlement(&h, "ten_a", "sso", None).await.allowed);
    let ev = |kind| {
        CloudEvent::new(
            "/services/user",
            kind,
            serde_json::json!({"tenant_id": "ten_a"}),
        )
        .with_tenant("ten_a")
    };
    h.bus.publish(&ev("tenant.suspended")).await.unwrap();
    wait_for("suspension", async || {
        entitlement(&h, "ten_a", "sso", None).await.reason == "subscription_suspended"
    })
    .await;
    let sub = h
        .client()
        .get_subscription(admin(pb::GetSubscriptionRequest {
            tenant_id: "ten_a".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sub.status, pb::SubscriptionStatus::Suspended as i32);
    h.bus.publish(&ev("tenant.reactivated")).await.unwrap();
    wait_for("reactivation", async || {
        entitlement(&h, "ten_a", "sso", None).await.allowed
    })
    .await;
    // Canceled denies.
    h.client()
        .cancel_subscription(admin(pb::CancelSubscriptionRequest {
            tenant_id: "ten_a".into(),
            immediately: true,
        }))
        .await
        .unwrap();
    assert_eq!(
        entitlement(&h, "ten_a", "sso", None).await.reason,
        "subscription_canceled"
    );
    // Subscribing again starts fresh (the canceled subscription stays for billing): the
    // new period's usage starts at zero.
    let again = subscribe(&h, "ten_a", "pro").await;
    assert_eq!(again.status, pb::SubscriptionStatus::Active as i32);
    let e = entitlement(&h, "ten_a", "sso", None).await;
    assert!(e.allowed, "{e:?}");
    let billable = h
        .client()
        .list_billable_subscriptions(admin(pb::ListBillableSubscriptionsRequest {
            period: Some(common::Period {
                start: ts(now - chrono::Duration::days(1)),
                end: ts(now + chrono::Duration::days(1)),
            }),
            tenant_ids: vec!["ten_a".into()],
            by_period: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    let statuses: Vec<i32> = billable
        .into_iter()
        .map(|b| b.unwrap().subscription.unwrap().status)
        .collect();
    assert_eq!(
        statuses,
        [
            pb::SubscriptionStatus::Canceled as i32,
            pb::SubscriptionStatus::Active as i32
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn the_clock_ends_trials_and_applies_scheduled_cancellations() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    let s = h
        .client()
        .create_subscription(admin(pb::CreateSubscriptionRequest {
            tenant_id: "ten_t".into(),
            plan_id: "pro".into(),
            trial_days: Some(14),
            seats: Some(5),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (s.status, s.seats),
        (pb::SubscriptionStatus::Trialing as i32, 5)
    );
    subscribe(&h, "ten_c", "pro").await;
    h.client()
        .cancel_subscription(admin(pb::CancelSubscriptionRequest {
            tenant_id: "ten_c".into(),
            immediately: false,
        }))
        .await
        .unwrap();
    let later = Utc::now() + chrono::Duration::days(40);
    assert_eq!(tick(&h, later).await, 2);
    let get = |t: &str| {
        let mut c = h.client();
        let t = t.to_string();
        async move {
            c.get_subscription(admin(pb::GetSubscriptionRequest { tenant_id: t }))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let t = get("ten_t").await;
    assert_eq!(t.status, pb::SubscriptionStatus::Active as i32);
    let p = t.current_period.unwrap();
    assert!(
        p.start.unwrap().seconds <= later.timestamp() && later.timestamp() < p.end.unwrap().seconds
    );
    assert_eq!(
        get("ten_c").await.status,
        pb::SubscriptionStatus::Canceled as i32
    );
    // Nothing more is due at the same instant.
    assert_eq!(tick(&h, later).await, 0);
    h.stop().await;
}

/// One pass of the subscription clock as if it were `at`; how many subscriptions changed.
async fn tick(h: &Harness, at: DateTime<Utc>) -> usize {
    let redis = platform::cache::connect(&test_support::redis_url())
        .await
        .unwrap();
    let cache =
        subscription_service::cache::EntitlementCache::new(redis, Duration::from_secs(60), "tick");
    let plans = subscription_service::store::plans::PlanCache::default();
    subscription_service::events::tick(&h.pool, &plans, &cache, at)
        .await
        .unwrap()
}

/// The periods of `tenant`'s subscriptions as (start, end, ended_at), oldest first.
async fn periods(
    h: &Harness,
    tenant: &str,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        "SELECT period_start, period_end, ended_at FROM subscription_periods \
         WHERE tenant_id = $1 ORDER BY period_start",
    )
    .bind(tenant)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_period_gets_one_row_and_usage_names_the_period_it_was_counted_in() {
    let h = Harness::start().await;
    h.create_pro_plan().await;
    let p = subscribe(&h, "ten_p", "pro").await;
    let first = p.current_period.unwrap();
    let start = DateTime::from_timestamp(first.start.unwrap().seconds, 0).unwrap();
    let opened = periods(&h, "ten_p").await;
    assert_eq!(opened.len(), 1);
    assert_eq!(
        (opened[0].0.timestamp(), opened[0].2),
        (start.timestamp(), None)
    );

    // Usage stamped an hour before the subscription began counts in its first period.
    let early = Utc::now() - chrono::Duration::hours(1);
    let r = ingest(
        &h,
        vec![record("ten_p", "early", "", "api_calls", "2", early)],
    )
    .await;
    assert_eq!(r.accepted, 1, "{r:?}");
    let counted: DateTime<Utc> =
        sqlx::query_scalar("SELECT period_start FROM usage_records WHERE id = 'early'")
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(counted, opened[0].0);

    // The clock away for about three periods: each one still gets its row, closed at its
    // end, without gaps; the one containing "now" is open. A second tick adds nothing.
    subscribe(&h, "ten_q", "pro").await;
    h.client()
        .cancel_subscription(admin(pb::CancelSubscriptionRequest {
            tenant_id: "ten_q".into(),
            immediately: false,
        }))
        .await
        .unwrap();
    let later = Utc::now() + chrono::Duration::days(100);
    tick(&h, later).await;
    tick(&h, later).await;
    let rows = periods(&h, "ten_p").await;
    assert!(rows.len() >= 4, "{rows:?}");
    for w in rows.windows(2) {
        assert_eq!(w[0].1, w[1].0, "periods are contiguous: {rows:?}");
    }
    let (last, closed) = rows.split_last().unwrap();
    assert!(
        closed.iter().all(|(_, end, ended)| *ended == Some(*end)),
        "{rows:?}"
    );
    assert!(
        last.0 <= later && later < last.1 && last.2.is_none(),
        "{last:?}"
    );

    // Canceled at the period's end: that period closes and no other opens.
    let q = periods(&h, "ten_q").await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].2, Some(q[0].1));

    // Canceled now: the open period closes at the cancellation.
    subscribe(&h, "ten_r", "pro").await;
    let canceled = h
        .client()
        .cancel_subscription(admin(pb::CancelSubscriptionRequest {
            tenant_id: "ten_r".into(),
            immediately: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let r = periods(&h, "ten_r").await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        r[0].2.map(|t| t.timestamp()),
        canceled.canceled_at.map(|t| t.seconds)
    );

    // A new billing interval ends the current period at the change and opens the next.
    let mut yearly = plan("pro-yearly", "49000");
    yearly.interval = pb::Interval::Year as i32;
    h.client()
        .create_plan(admin(pb::CreatePlanRequest { plan: Some(yearly) }))
        .await
        .unwrap();
    subscribe(&h, "ten_s", "pro").await;
    let moved = h
        .client()
        .change_plan(admin(pb::ChangePlanRequest {
            tenant_id: "ten_s".into(),
            plan_id: "pro-yearly".into(),
            plan_version: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let s = periods(&h, "ten_s").await;
    assert_eq!(s.len(), 2, "{s:?}");
    let new_start = moved.current_period.unwrap().start.unwrap().seconds;
    assert_eq!(s[1].0.timestamp(), new_start);
    assert_eq!(
        s[0].2,
        Some(s[1].0),
        "the old period ended where the new one began"
    );
    assert!(s[1].2.is_none());
    h.stop().await;
}

#[path = "service/streams.rs"]
mod streams;
