//! Billing cycles end to end: runs over windows bill each part of each subscription period
//! once — fees in advance when a period begins, usage and the fees' true-up when it ends —
//! whatever windows the runs (and the billing clock) cover. Periods end by ticking the
//! subscription service's clock as if it were later.

use chrono::{DateTime, Duration, Utc};
use rpc::billing::v1 as bpb;
use rpc::common::v1::Period;
use rpc::subscription::v1 as spb;

use super::{Stack, admin, calls, flat_and_calls, wait_completed};

type Billing =
    rpc::billing::v1::billing_service_client::BillingServiceClient<platform::grpc::Channel>;
type Subs = rpc::subscription::v1::subscription_service_client::SubscriptionServiceClient<
    platform::grpc::Channel,
>;

/// A charge as the tests compare it: (period start, part, plan, price, kind, amount).
type Shape = (DateTime<Utc>, String, String, String, i32, i64);

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.unwrap();
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

/// Runs `tenant`'s billing over `[start, end)` to completion; its charges.
async fn bill(
    billing: &mut Billing,
    tenant: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<Shape> {
    let run = billing
        .start_run(admin(bpb::StartRunRequest {
            period: Some(Period {
                start: Some(platform::grpc::timestamp(start)),
                end: Some(platform::grpc::timestamp(end)),
            }),
            tenant_ids: vec![tenant.into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    wait_completed(billing, &run.id).await;
    charges(billing, &run.id).await
}

async fn charges(billing: &mut Billing, run_id: &str) -> Vec<Shape> {
    billing
        .list_charges(admin(bpb::ListChargesRequest {
            run_id: run_id.into(),
            tenant_id: None,
            page: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .charges
        .into_iter()
        .map(|c| {
            (
                time(&c.period.unwrap().start),
                c.part,
                c.plan_id,
                c.price_id,
                c.kind,
                c.amount.unwrap().amount_cents,
            )
        })
        .collect()
}

fn line(
    start: DateTime<Utc>,
    part: &str,
    plan: &str,
    price: &str,
    kind: bpb::ChargeKind,
    amount: i64,
) -> Shape {
    (
        start,
        part.into(),
        plan.into(),
        price.into(),
        kind as i32,
        amount,
    )
}

/// Subscribes `tenant` to `plan` now (no trial); its first period's bounds.
async fn subscribe(subs: &mut Subs, tenant: &str, plan: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let s = subs
        .create_subscription(admin(spb::CreateSubscriptionRequest {
            tenant_id: tenant.into(),
            plan_id: plan.into(),
            trial_days: Some(0),
            seats: None,
        }))
        .await
        .unwrap()
        .into_inner();
    let p = s.current_period.unwrap();
    (time(&p.start), time(&p.end))
}

async fn plans(subs: &mut Subs) {
    for plan in [
        flat_and_calls("pro", "3000", "1"),
        flat_and_calls("max", "6000", "2"),
    ] {
        subs.create_plan(admin(plan)).await.unwrap();
    }
}

/// Moves `tenant`'s plan change (made just now) to `at`, as if it had been made then.
async fn change_was_at(stack: &Stack, tenant: &str, at: DateTime<Utc>) {
    let pool = stack.sdb.pool().await;
    sqlx::query("UPDATE plan_changes SET changed_at = $2 WHERE tenant_id = $1")
        .bind(tenant)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_in_advance_usage_in_arrears_and_an_upgrade_trued_up_exactly_once() {
    use bpb::ChargeKind::{Flat, Proration, Usage};
    let stack = Stack::fresh().await;
    let (mut subs, mut billing) = stack.clients();
    plans(&mut subs).await;
    let (s, e) = subscribe(&mut subs, "ten_a", "pro").await;
    let hour = Duration::hours(1);

    // The period begins: pro's fee for all of it, in advance; nothing metered yet.
    let lines = bill(&mut billing, "ten_a", s - hour, s + hour).await;
    assert_eq!(lines, [line(s, "advance", "pro", "base", Flat, 3000)]);

    // Halfway through, an upgrade to max; 100 calls during the period.
    subs.change_plan(admin(spb::ChangePlanRequest {
        tenant_id: "ten_a".into(),
        plan_id: "max".into(),
        plan_version: 0,
    }))
    .await
    .unwrap();
    let half = s + (e - s) / 2;
    change_was_at(&stack, "ten_a", half).await;
    let records: Vec<_> = (0..100)
        .map(|i| calls(format!("c{i}"), "ten_a", "usr_1", "1", Utc::now()))
        .collect();
    subs.ingest_usage(admin(spb::IngestUsageRequest { records }))
        .await
        .unwrap();
    // A day in the middle of the period: nothing began or ended.
    assert_eq!(
        bill(
            &mut billing,
            "ten_a",
            s + Duration::days(5),
            s + Duration::days(6)
        )
        .await,
        []
    );

    // The period ends: the calls at max's price, half of pro's fee back, half of max's billed;
    // the next period begins: max's fee in advance.
    stack.tick_subscriptions(e + hour).await;
    let lines = bill(&mut billing, "ten_a", e - hour, e + hour).await;
    assert_eq!(
        lines,
        [
            line(s, "arrears", "max", "calls", Usage, 200),
            line(s, "arrears", "pro", "base", Proration, -1500),
            line(s, "arrears", "max", "base", Proration, 3000),
            line(e, "advance", "max", "base", Flat, 6000),
        ]
    );
    // Runs over windows overlapping everything billed so far bill nothing again.
    assert_eq!(
        bill(&mut billing, "ten_a", s - hour * 2, e + hour * 2).await,
        []
    );
    assert_eq!(
        bill(
            &mut billing,
            "ten_a",
            s - Duration::days(40),
            e + Duration::days(1)
        )
        .await,
        []
    );

    // The ledger: each part of each period billed by exactly one run.
    let pool = stack.bdb.pool().await;
    let parts: Vec<(DateTime<Utc>, String, i64)> = sqlx::query_as(
        "SELECT period_start, part, count(*) FROM billed_periods GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        parts,
        [
            (s, "advance".into(), 1),
            (s, "arrears".into(), 1),
            (e, "advance".into(), 1)
        ]
    );
    pool.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_downgrades_and_a_run_over_several_periods() {
    use bpb::ChargeKind::{Flat, Proration, Usage};
    let stack = Stack::fresh().await;
    let (mut subs, mut billing) = stack.clients();
    plans(&mut subs).await;
    let hour = Duration::hours(1);

    // Canceled now, a third of the way through: two thirds of the fee come back.
    let (s, e) = subscribe(&mut subs, "ten_c", "pro").await;
    subs.cancel_subscription(admin(spb::CancelSubscriptionRequest {
        tenant_id: "ten_c".into(),
        immediately: true,
    }))
    .await
    .unwrap();
    let third = s + (e - s) / 3;
    let pool = stack.sdb.pool().await;
    sqlx::query("UPDATE subscription_periods SET ended_at = $2 WHERE tenant_id = $1")
        .bind("ten_c")
        .bind(third)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE subscriptions SET canceled_at = $2 WHERE tenant_id = $1")
        .bind("ten_c")
        .bind(third)
        .execute(&pool)
        .await
        .unwrap();
    let lines = bill(&mut billing, "ten_c", s - hour, e + hour).await;
    assert_eq!(
        lines,
        [
            line(s, "advance", "pro", "base", Flat, 3000),
            line(s, "arrears", "pro", "calls", Usage, 0),
            line(s, "arrears", "pro", "base", Proration, -2000),
        ]
    );

    // Canceled at the period's end: the fee stands, and no next period is billed.
    let (s, e) = subscribe(&mut subs, "ten_d", "pro").await;
    subs.cancel_subscription(admin(spb::CancelSubscriptionRequest {
        tenant_id: "ten_d".into(),
        immediately: false,
    }))
    .await
    .unwrap();
    stack.tick_subscriptions(e + hour).await;
    let lines = bill(&mut billing, "ten_d", s - hour, e + hour).await;
    assert_eq!(
        lines,
        [
            line(s, "advance", "pro", "base", Flat, 3000),
            line(s, "arrears", "pro", "calls", Usage, 0),
        ]
    );

    // A downgrade from max to pro two thirds through.
    let (s, e) = subscribe(&mut subs, "ten_e", "max").await;
    subs.change_plan(admin(spb::ChangePlanRequest {
        tenant_id: "ten_e".into(),
        plan_id: "pro".into(),
        plan_version: 0,
    }))
    .await
    .unwrap();
    change_was_at(&stack, "ten_e", s + (e - s) * 2 / 3).await;
    // Three periods end while no run looks; one run over all of them bills each once.
    let (mut ends, mut at) = (vec![s], e);
    for _ in 0..3 {
        stack.tick_subscriptions(at + hour).await;
        ends.push(at);
        at = sqlx::query_scalar("SELECT period_end FROM subscriptions WHERE tenant_id = 'ten_e'")
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    let lines = bill(&mut billing, "ten_e", s - hour, ends[3] + hour).await;
    let mut want = vec![
        line(s, "advance", "max", "base", Flat, 6000),
        line(s, "arrears", "pro", "calls", Usage, 0),
        line(s, "arrears", "max", "base", Proration, -2000),
        line(s, "arrears", "pro", "base", Proration, 1000),
    ];
    for p in &ends[1..3] {
        want.push(line(*p, "advance", "pro", "base", Flat, 3000));
        want.push(line(*p, "arrears", "pro", "calls", Usage, 0));
    }
    want.push(line(ends[3], "advance", "pro", "base", Flat, 3000));
    let mut got = lines.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    pool.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_bills_what_began_and_ended_and_a_run_by_hand_bills_nothing_more() {
    use bpb::ChargeKind::{Flat, Usage};
    let stack = Stack::fresh().await;
    let (mut subs, mut billing) = stack.clients();
    plans(&mut subs).await;
    let (s, e) = subscribe(&mut subs, "ten_k", "pro").await;
    let records: Vec<_> = (0..7)
        .map(|i| calls(format!("k{i}"), "ten_k", "usr_1", "1", Utc::now()))
        .collect();
    subs.ingest_usage(admin(spb::IngestUsageRequest { records }))
        .await
        .unwrap();
    stack.tick_subscriptions(e + Duration::hours(1)).await;

    let pool = stack.bdb.pool().await;
    let run = billing_service::clock::tick(&pool, e + Duration::hours(2))
        .await
        .unwrap()
        .expect("the clock starts a run");
    // Where it stopped: a second tick at the same time starts nothing.
    assert!(
        billing_service::clock::tick(&pool, e + Duration::hours(2))
            .await
            .unwrap()
            .is_none()
    );
    wait_completed(&mut billing, run.id.as_str()).await;
    let mut lines = charges(&mut billing, run.id.as_str()).await;
    lines.sort();
    let mut want = vec![
        line(s, "advance", "pro", "base", Flat, 3000),
        line(s, "arrears", "pro", "calls", Usage, 7),
        line(e, "advance", "pro", "base", Flat, 3000),
    ];
    want.sort();
    assert_eq!(lines, want);
    // The same periods requested by hand: billed already.
    let by_hand = bill(
        &mut billing,
        "ten_k",
        s - Duration::days(1),
        e + Duration::days(1),
    )
    .await;
    assert_eq!(by_hand, []);
    pool.close().await;
    stack.stop().await;
}
