//! Ids and text enums against a real Postgres: they bind and decode as `text` and `text[]`,
//! and a stored state that is not a variant is an error, not a default.

use ids::{RunId, TenantId};
use test_support::TestDb;

ids::text_enum! {
    enum Phase { Draft = "draft", Final = "final" }
}

#[tokio::test]
async fn ids_and_states_round_trip_and_unknown_states_fail() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let tenants = vec![
        TenantId::generate(),
        TenantId::parse("ten_platform").unwrap(),
    ];
    let run = RunId::generate();
    let (back, run_back, phase, phases): (Vec<TenantId>, RunId, Phase, Vec<Phase>) =
        sqlx::query_as("SELECT $1::text[], $2::text, $3::text, $4::text[]")
            .bind(&tenants)
            .bind(&run)
            .bind(Phase::Final)
            .bind([Phase::Draft, Phase::Final])
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (back, run_back, phase, phases),
        (
            tenants.clone(),
            run,
            Phase::Final,
            vec![Phase::Draft, Phase::Final]
        )
    );
    let hit: bool = sqlx::query_scalar("SELECT $1 = ANY($2::text[])")
        .bind(&tenants[1])
        .bind(&tenants)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(hit);
    let corrupt = sqlx::query_scalar::<_, Phase>("SELECT 'archived'::text")
        .fetch_one(&pool)
        .await
        .unwrap_err();
    assert!(
        corrupt.to_string().contains("\"archived\" is not a Phase"),
        "{corrupt}"
    );
    pool.close().await;
    db.drop_db().await;
}
