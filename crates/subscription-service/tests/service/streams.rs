//! `StreamUsage` by period selects exactly the (tenant, period) pairs asked for, even when a
//! tenant's other period started at the same moment as a period asked for another tenant.

use super::*;

/// Records stored straight into the table (no subscription needed): `n` of `quantity`
/// for `tenant`, counted in the period starting at `start`.
async fn stored(h: &Harness, tenant: &str, start: DateTime<Utc>, n: i64, quantity: i64) {
    sqlx::query(
        "INSERT INTO usage_records (tenant_id, id, user_id, metric, quantity, ts, period_start) \
         SELECT $1, $1 || '-' || $2::text || '-' || i, 'usr_1', 'api_calls', $3, $2, $2 \
         FROM generate_series(1, $4) i",
    )
    .bind(tenant)
    .bind(start)
    .bind(Decimal::from(quantity))
    .bind(n)
    .execute(&h.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn periods_select_exactly_the_pairs_asked_for() {
    let h = Harness::start().await;
    let jan = "2026-01-01T00:00:00.123456Z"
        .parse::<DateTime<Utc>>()
        .unwrap();
    let feb = "2026-02-01T00:00:00.123456Z"
        .parse::<DateTime<Utc>>()
        .unwrap();
    stored(&h, "ten_a", jan, 3, 1).await;
    stored(&h, "ten_a", feb, 5, 10).await;
    stored(&h, "ten_b", jan, 2, 1000).await;
    stored(&h, "ten_b", feb, 7, 100).await;
    stored(&h, "ten_c", feb, 4, 10_000).await;
    // Asked: ten_a's January and ten_b's February; both tenants and both starts are in the
    // request, but not ten_a's February, ten_b's January or ten_c at all.
    let asked = [("ten_a", jan), ("ten_b", feb)];
    for columnar in [true, false] {
        let mut stream = h
            .client()
            .stream_usage(admin(pb::StreamUsageRequest {
                batch_size: 3,
                columnar,
                periods: asked
                    .iter()
                    .map(|(t, s)| pb::TenantPeriod {
                        tenant_id: t.to_string(),
                        period_start: ts(*s),
                    })
                    .collect(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let mut got: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
        while let Some(b) = stream.next().await {
            let b = b.unwrap();
            let mut add = |t: &str, q: Decimal| {
                let e = got.entry(t.to_string()).or_default();
                e.0 += 1;
                e.1 += q;
            };
            if let Some(c) = b.columns {
                for i in 0..c.units.len() {
                    add(
                        &c.strings[c.tenant[i] as usize],
                        Decimal::new(c.units[i], c.scale[i]),
                    );
                }
            }
            for r in &b.records {
                add(
                    &r.tenant_id,
                    r.quantity.as_ref().unwrap().value.parse().unwrap(),
                );
            }
        }
        let want = BTreeMap::from([
            ("ten_a".to_string(), (3, Decimal::from(3))),
            ("ten_b".to_string(), (7, Decimal::from(700))),
        ]);
        assert_eq!(got, want, "columnar: {columnar}");
    }
    h.stop().await;
}

/// A table big enough to be read in parts (over 1024 blocks): the parts read every row the
/// filter selects exactly once, whichever way the filter is built.
#[tokio::test]
async fn a_read_in_parallel_parts_reads_every_row_once() {
    use subscription_service::domain::usage::Columns;
    use subscription_service::store::usage::{Select, StreamQuery, stream};
    use subscription_service::store::usage_copy;

    let h = Harness::start().await;
    let jan = "2026-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let feb = "2026-02-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    // Shuffled, as records of many tenants arrive: rows stored in index order would let the
    // planner prefer the index for most of the table, and a read by index is one part.
    sqlx::query(
        "INSERT INTO usage_records (tenant_id, id, user_id, metric, quantity, ts, period_start) \
         SELECT t, t || '-' || s::text || '-' || i, 'usr_1', 'api_calls', q, s, s \
         FROM (VALUES ('ten_a', $1::timestamptz, 40000, 1), ('ten_a', $2, 20000, 10), \
                      ('ten_b', $1, 30000, 100), ('ten_b', $2, 20000, 1000), \
                      ('ten_c', $1, 200, 5)) v(t, s, n, q), \
              generate_series(1, n) i \
         ORDER BY random()",
    )
    .bind(jan)
    .bind(feb)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE usage_records")
        .execute(&h.pool)
        .await
        .unwrap();
    let tenant = |t: &str| ids::TenantId::parse(t).unwrap();
    // A few rows of a big table: Postgres' index plan, one part.
    let few = Select::Periods(vec![(tenant("ten_c"), jan)]);
    assert_eq!(usage_copy::parts(&h.pool, &few, 3).await.unwrap(), 1);
    let cases = [
        // Every tenant asked for the same start: the filter is exact.
        (
            Select::Periods(vec![(tenant("ten_a"), jan), (tenant("ten_b"), jan)]),
            [(40_000, 40_000), (30_000, 3_000_000)],
        ),
        // Different starts: the filter lets through pairs the reader drops.
        (
            Select::Periods(vec![(tenant("ten_a"), jan), (tenant("ten_b"), feb)]),
            [(40_000, 40_000), (20_000, 20_000_000)],
        ),
    ];
    for (select, [a, b]) in cases {
        assert_eq!(
            usage_copy::parts(&h.pool, &select, 3).await.unwrap(),
            3,
            "{select:?}"
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let q = StreamQuery {
            select: select.clone(),
            size: 4096,
            parts: 3,
        };
        let pool = h.pool.clone();
        let reader = tokio::spawn(async move { stream::<Columns>(&pool, q, tx).await });
        let mut got: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
        while let Some(batch) = rx.recv().await {
            let c = batch.unwrap();
            for i in 0..c.len() {
                let e = got
                    .entry(c.strings[c.tenant[i] as usize].clone())
                    .or_default();
                e.0 += 1;
                e.1 += c.quantity[i];
            }
        }
        reader.await.unwrap();
        let want = BTreeMap::from([
            ("ten_a".to_string(), (a.0, Decimal::from(a.1))),
            ("ten_b".to_string(), (b.0, Decimal::from(b.1))),
        ]);
        assert_eq!(got, want, "{select:?}");
    }
    h.stop().await;
}
