//! The in-memory tenant cache against a real Postgres: hits, invalidation by NOTIFY from any
//! writer, and no caching while it is not listening.

use std::sync::Arc;
use std::time::Duration;

use ids::TenantId;
use platform::db::{PoolSettings, connect_and_migrate};
use test_support::TestDb;
use tokio_util::sync::CancellationToken;
use user_service::domain::TenantStatus;
use user_service::store::tenant_cache::TenantCache;
use user_service::store::tenants;

async fn setup() -> (TestDb, sqlx::PgPool) {
    let db = TestDb::new().await;
    let pool = connect_and_migrate(
        &db.url,
        PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
        },
        &user_service::MIGRATOR,
    )
    .await
    .expect("migrated test database");
    (db, pool)
}

async fn insert_tenant(pool: &sqlx::PgPool, id: &TenantId) {
    let mut conn = pool.acquire().await.unwrap();
    tenants::insert(&mut conn, id, "Acme", &format!("acme-{id}"))
        .await
        .unwrap();
}

/// Waits (bounded) for `cond`; panics with `what` if it never holds.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_anyone_reaches_every_replica() {
    let (db, pool) = setup().await;
    let stop = CancellationToken::new();
    // Two replicas of the user service, each with its own memory.
    let replicas = [
        TenantCache::new(Duration::from_secs(300)),
        TenantCache::new(Duration::from_secs(300)),
    ];
    for r in &replicas {
        tokio::spawn(r.clone().listen(pool.clone(), stop.clone()));
    }
    for r in &replicas {
        let r = r.clone();
        eventually("the replica listens", move || {
            let r = r.clone();
            async move { r.is_listening() }
        })
        .await;
    }
    let id = &TenantId::parse("ten_0000000000000000000000000000cafe").unwrap();
    assert!(replicas[0].get(&pool, id).await.unwrap().is_none());
    assert!(replicas[0].is_empty(), "unknown ids are not remembered");
    insert_tenant(&pool, id).await;

    let first = replicas[0].get(&pool, id).await.unwrap().expect("found");
    let again = replicas[0].get(&pool, id).await.unwrap().expect("found");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second read is from memory"
    );
    replicas[1].get(&pool, id).await.unwrap().expect("found");
    assert_eq!((replicas[0].len(), replicas[1].len()), (1, 1));

    // An operator renames the tenant with plain SQL: both replicas hear of it.
    sqlx::query("UPDATE tenants SET name = 'Renamed', updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    for r in &replicas {
        let (r, pool) = (r.clone(), pool.clone());
        eventually("the replica serves the new name", move || {
            let (r, pool) = (r.clone(), pool.clone());
            async move { r.get(&pool, id).await.unwrap().unwrap().name == "Renamed" }
        })
        .await;
    }

    // Suspending through the store is seen the same way.
    let mut conn = pool.acquire().await.unwrap();
    tenants::set_status(&mut conn, id, TenantStatus::Suspended)
        .await
        .unwrap();
    drop(conn);
    let r = replicas[1].clone();
    let p = pool.clone();
    eventually("the replica serves the suspension", move || {
        let (r, p) = (r.clone(), p.clone());
        async move { r.get(&p, id).await.unwrap().unwrap().status == TenantStatus::Suspended }
    })
    .await;

    // A local forget takes effect before the next read, notification or not.
    sqlx::query("UPDATE tenants SET name = 'Local' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    replicas[0].forget(id.as_str());
    assert_eq!(
        replicas[0].get(&pool, id).await.unwrap().unwrap().name,
        "Local"
    );

    stop.cancel();
    pool.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_remembered_without_listening_or_with_a_zero_ttl() {
    let (db, pool) = setup().await;
    let id = &TenantId::parse("ten_0000000000000000000000000000beef").unwrap();
    insert_tenant(&pool, id).await;

    let deaf = TenantCache::new(Duration::from_secs(300));
    assert!(!deaf.is_listening());
    let a = deaf.get(&pool, id).await.unwrap().expect("found");
    let b = deaf.get(&pool, id).await.unwrap().expect("found");
    assert!(!Arc::ptr_eq(&a, &b), "each read went to Postgres");
    assert!(deaf.is_empty());

    let off = TenantCache::new(Duration::ZERO);
    let stop = CancellationToken::new();
    // With a zero TTL the listener returns at once instead of listening.
    tokio::time::timeout(
        Duration::from_secs(5),
        off.clone().listen(pool.clone(), stop.clone()),
    )
    .await
    .expect("a disabled cache does not listen");
    off.get(&pool, id).await.unwrap().expect("found");
    assert!(off.is_empty() && !off.is_listening());

    // A listener that stops takes the memory with it.
    let cache = TenantCache::new(Duration::from_secs(300));
    let task = tokio::spawn(cache.clone().listen(pool.clone(), stop.clone()));
    let c = cache.clone();
    eventually("the cache listens", move || {
        let c = c.clone();
        async move { c.is_listening() }
    })
    .await;
    cache.get(&pool, id).await.unwrap().expect("found");
    assert_eq!(cache.len(), 1);
    stop.cancel();
    task.await.unwrap();
    assert!(cache.is_empty() && !cache.is_listening());

    pool.close().await;
    db.drop_db().await;
}
