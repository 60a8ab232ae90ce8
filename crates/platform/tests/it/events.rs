//! The outbox publishes exactly what committed, once; the inbox applies each event once.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use platform::events::{
    CloudEvent, ConsumerSpec, EventBus, EventError, EventHandler, HandlerError, OutboxRelay,
    enqueue, run_consumer,
};
use platform::{CancellationToken, db};
use sqlx::{PgConnection, PgPool};
use test_support::TestDb;
use uuid::Uuid;

struct Env {
    db: TestDb,
    pool: PgPool,
    bus: EventBus,
}

impl Env {
    async fn new() -> Env {
        test_support::init_logging();
        let db = TestDb::new().await;
        let settings = db::PoolSettings {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        };
        let pool = db::connect_and_migrate(&db.url, settings, &sqlx::migrate::Migrator::DEFAULT)
            .await
            .expect("migrate test database");
        sqlx::query("CREATE TABLE effects (id INT PRIMARY KEY, n INT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO effects VALUES (1, 0)")
            .execute(&pool)
            .await
            .unwrap();
        let bus = EventBus::connect(&test_support::nats_url(), &test_support::unique_prefix())
            .await
            .expect("NATS reachable");
        bus.ensure_streams().await.expect("streams");
        Env { db, pool, bus }
    }

    async fn done(self) {
        self.bus.delete_streams().await.ok();
        self.pool.close().await;
        self.db.drop_db().await;
    }

    /// Every event id currently in `stream` (in stream order).
    async fn stream_ids(&self, stream: &str) -> Vec<Uuid> {
        let stream = self
            .bus
            .jetstream()
            .get_stream(self.bus.stream_name(stream))
            .await
            .unwrap();
        let count = stream.get_info().await.unwrap().state.messages as usize;
        if count == 0 {
            return Vec::new();
        }
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut batch = consumer
            .fetch()
            .max_messages(count)
            .messages()
            .await
            .unwrap();
        let mut ids = Vec::new();
        while let Some(msg) = batch.next().await {
            let ev: CloudEvent = serde_json::from_slice(&msg.unwrap().payload).unwrap();
            ids.push(ev.id);
        }
        ids
    }

    async fn effects(&self) -> i32 {
        sqlx::query_scalar("SELECT n FROM effects WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn event(n: usize) -> CloudEvent {
    CloudEvent::new(
        "/services/test",
        "billing.run.completed",
        serde_json::json!({ "n": n }),
    )
    .with_tenant("t_1")
}

async fn enqueue_committed(pool: &PgPool, count: usize) -> Vec<Uuid> {
    let mut tx = pool.begin().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let ev = event(n);
        ids.push(ev.id);
        enqueue(&mut tx, &ev).await.unwrap();
    }
    tx.commit().await.unwrap();
    ids
}

async fn unsent(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_crash_midway_then_restart_publishes_each_event_exactly_once() {
    let env = Env::new().await;
    let ids = enqueue_committed(&env.pool, 10).await;

    let crashing = OutboxRelay::new(env.pool.clone(), env.bus.clone(), Duration::from_millis(50))
        .crash_after_publishes(4);
    let err = crashing.relay_once().await.unwrap_err();
    assert!(matches!(err, EventError::InjectedCrash(4)), "{err}");
    // Four reached JetStream, but nothing was marked sent: the crash lost the bookkeeping.
    assert_eq!(env.stream_ids("BILLING").await.len(), 4);
    assert_eq!(unsent(&env.pool).await, 10);

    let relay = OutboxRelay::new(env.pool.clone(), env.bus.clone(), Duration::from_millis(50));
    assert_eq!(relay.drain().await.unwrap(), 10);
    assert_eq!(unsent(&env.pool).await, 0);
    assert_eq!(relay.drain().await.unwrap(), 0, "nothing left to send");

    // JetStream de-duplicated the four re-publishes by Nats-Msg-Id: each event once, in order.
    assert_eq!(env.stream_ids("BILLING").await, ids);
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_transaction_publishes_nothing() {
    let env = Env::new().await;
    let mut tx = env.pool.begin().await.unwrap();
    enqueue(&mut tx, &event(1)).await.unwrap();
    tx.rollback().await.unwrap();

    let relay = OutboxRelay::new(env.pool.clone(), env.bus.clone(), Duration::from_millis(50));
    assert_eq!(relay.drain().await.unwrap(), 0);
    assert!(env.stream_ids("BILLING").await.is_empty());
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_relays_publish_each_row_once() {
    let env = Env::new().await;
    let ids = enqueue_committed(&env.pool, 300).await;
    let relays: Vec<_> = (0..3)
        .map(|_| {
            let r = OutboxRelay::new(env.pool.clone(), env.bus.clone(), Duration::from_millis(50))
                .with_batch_size(16);
            tokio::spawn(async move { r.drain().await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for r in relays {
        total += r.await.unwrap();
    }
    // SKIP LOCKED hands every row to exactly one relay.
    assert_eq!(total, 300);
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT attempts FROM outbox")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, vec![1]);
    let published: BTreeSet<Uuid> = env.stream_ids("BILLING").await.into_iter().collect();
    assert_eq!(published, ids.into_iter().collect());
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_relay_wakes_on_commit() {
    let env = Env::new().await;
    let stop = CancellationToken::new();
    // A long poll interval: only the NOTIFY wake-up can make this quick.
    let relay = OutboxRelay::new(env.pool.clone(), env.bus.clone(), Duration::from_secs(3600));
    let task = tokio::spawn(relay.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = enqueue_committed(&env.pool, 3).await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = env.stream_ids("BILLING").await;
        if seen.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, ids);
    stop.cancel();
    task.await.unwrap();
    env.done().await;
}

/// Counts effects; fails the first `fail_first` deliveries of each event.
struct Counter {
    fail_first: usize,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EventHandler for Counter {
    async fn handle(&self, tx: &mut PgConnection, event: &CloudEvent) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if event.data["poison"] == true {
            return Err(HandlerError::Permanent("poison".into()));
        }
        if call < self.fail_first {
            return Err(HandlerError::Transient("database hiccup".into()));
        }
        sqlx::query("UPDATE effects SET n = n + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

fn spec(name: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(name, "BILLING", "billing.>");
    spec.backoff = vec![Duration::from_millis(50)];
    spec.max_deliver = 3;
    spec
}

async fn wait_for(mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_event_has_one_effect() {
    let env = Env::new().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        env.bus.clone(),
        env.pool.clone(),
        spec("effects"),
        Counter {
            fail_first: 1,
            calls: calls.clone(),
        },
        stop.clone(),
    ));
    let ev = event(7);
    env.bus.publish(&ev).await.unwrap();
    // The same event again under another message id: what a re-publish after JetStream's
    // duplicate window looks like. Only the inbox can stop this one.
    let payload = serde_json::to_vec(&ev).unwrap();
    env.bus
        .jetstream()
        .send_publish(
            env.bus.subject("billing.run.completed"),
            jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id("another-message-id"),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    // First delivery fails (transient) and is retried; then it applies; the copy is a no-op.
    wait_for(async || calls.load(std::sync::atomic::Ordering::SeqCst) >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.effects().await, 1);
    let handled: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer = 'effects'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(handled, 1);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the duplicate never reaches the handler"
    );
    stop.cancel();
    consumer.await.unwrap().unwrap();
    env.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_exhausted_events_are_dead_lettered() {
    let env = Env::new().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        env.bus.clone(),
        env.pool.clone(),
        spec("dlq-test"),
        Counter {
            fail_first: usize::MAX,
            calls: calls.clone(),
        },
        stop.clone(),
    ));
    let mut poison = event(1);
    poison.data = serde_json::json!({ "poison": true });
    env.bus.publish(&poison).await.unwrap();
    let doomed = event(2);
    env.bus.publish(&doomed).await.unwrap();

    let mut dlq = Vec::new();
    wait_for(async || {
        dlq = env.stream_ids("DLQ").await;
        dlq.len() == 2
    })
    .await;
    assert_eq!(dlq, vec![poison.id, doomed.id]);
    // Poison: one call. Transient: max_deliver (3) calls, then dead-lettered.
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(env.effects().await, 0);
    let handled: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        handled, 0,
        "failed events leave no inbox row, so a replay can still apply them"
    );
    stop.cancel();
    consumer.await.unwrap().unwrap();
    env.done().await;
}

#[tokio::test]
async fn a_server_list_connects_through_whichever_server_answers() {
    // A cluster's NATS_URL: the first server is down (nothing listens on port 1), the
    // second is the real one; the bus must still connect and create its streams.
    let urls = format!("nats://127.0.0.1:1,{}", test_support::nats_url());
    let bus = EventBus::connect(&urls, &test_support::unique_prefix())
        .await
        .expect("the answering server is used");
    bus.ensure_streams_replicated(1).await.expect("streams");
    bus.delete_streams().await.ok();
    // And a list naming no valid server is refused with the variable named.
    let err = EventBus::connect("nats://127.0.0.1:1,not a url", "x")
        .await
        .expect_err("an invalid server address");
    assert!(err.to_string().contains("NATS_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_started_before_its_stream_exists_waits_for_it_instead_of_stopping() {
    // What a service meets when NATS (a cluster still electing its leader) cannot set up the
    // consumer at start-up: it used to return the error, and the consumer was gone for good.
    let env = Env::new().await;
    env.bus.delete_streams().await.unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let mut consumer = tokio::spawn(run_consumer(
        env.bus.clone(),
        env.pool.clone(),
        spec("late"),
        Counter {
            fail_first: 0,
            calls: calls.clone(),
        },
        stop.clone(),
    ));
    // Its attempts fail (no stream) and it keeps trying: half a second later it has not
    // returned (the old code returned its error at the first attempt, in milliseconds).
    let early = tokio::time::timeout(Duration::from_millis(500), &mut consumer).await;
    assert!(early.is_err(), "the consumer returned: {early:?}");
    env.bus.ensure_streams().await.unwrap();
    env.bus.publish(&event(1)).await.unwrap();
    wait_for(async || env.effects().await == 1).await;
    assert_eq!(
        env.effects().await,
        1,
        "the event was consumed once the stream existed"
    );
    stop.cancel();
    consumer.await.unwrap().unwrap();
    env.done().await;
}
