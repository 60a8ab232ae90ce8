//! The plan catalog. Versions are immutable, so a version once read is cached for good.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use ids::PlanId;
use pricing::{Currency, Interval};
use sqlx::PgConnection;

use crate::domain::plan::PlanDef;
use crate::error::SubError;

#[derive(Debug, Clone)]
pub struct PlanRow {
    pub id: PlanId,
    pub version: u32,
    pub def: PlanDef,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Raw {
    id: PlanId,
    version: i32,
    name: String,
    currency: String,
    interval: String,
    trial_days: i32,
    fixed_seats: bool,
    rate_per_sec: Option<i32>,
    rate_burst: Option<i32>,
    prices: serde_json::Value,
    features: serde_json::Value,
    archived: bool,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, version, name, currency, interval, trial_days, fixed_seats, \
                       rate_per_sec, rate_burst, prices, features, archived, created_at";

fn decode(r: Raw) -> Result<PlanRow, SubError> {
    let corrupt = |what: &str| SubError::Corrupt(format!("plan {} v{}: {what}", r.id, r.version));
    let rate_limit = match (r.rate_per_sec, r.rate_burst) {
        (Some(p), Some(b)) => Some((
            u32::try_from(p).map_err(|_| corrupt("rate_per_sec"))?,
            u32::try_from(b).map_err(|_| corrupt("rate_burst"))?,
        )),
        _ => None,
    };
    Ok(PlanRow {
        def: PlanDef {
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?,
            interval: Interval::parse(&r.interval).ok_or_else(|| corrupt("interval"))?,
            trial_days: u32::try_from(r.trial_days).map_err(|_| corrupt("trial_days"))?,
            fixed_seats: r.fixed_seats,
            rate_limit,
            prices: serde_json::from_value(r.prices).map_err(|_| corrupt("prices"))?,
            features: serde_json::from_value(r.features).map_err(|_| corrupt("features"))?,
            archived: r.archived,
            name: r.name,
        },
        version: u32::try_from(r.version).map_err(|_| corrupt("version"))?,
        id: r.id,
        created_at: r.created_at,
    })
}

pub async fn insert(
    conn: &mut PgConnection,
    id: &PlanId,
    version: u32,
    def: &PlanDef,
) -> Result<PlanRow, SubError> {
    let q = format!(
        "INSERT INTO plans ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now()) \
         RETURNING {COLUMNS}"
    );
    let to_json = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| SubError::Corrupt(format!("serialising a plan: {e}")))
    };
    let row: Raw = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(id)
        .bind(version as i32)
        .bind(&def.name)
        .bind(def.currency.as_str())
        .bind(def.interval.as_str())
        .bind(def.trial_days as i32)
        .bind(def.fixed_seats)
        .bind(def.rate_limit.map(|(p, _)| p as i32))
        .bind(def.rate_limit.map(|(_, b)| b as i32))
        .bind(to_json(serde_json::to_value(&def.prices))?)
        .bind(to_json(serde_json::to_value(&def.features))?)
        .bind(def.archived)
        .fetch_one(conn)
        .await?;
    decode(row)
}

/// The latest version; `lock` takes a row lock so concurrent edits number versions in turn.
pub async fn latest(
    conn: &mut PgConnection,
    id: &PlanId,
    lock: bool,
) -> Result<Option<PlanRow>, SubError> {
    let q = format!(
        "SELECT {COLUMNS} FROM plans WHERE id = $1 ORDER BY version DESC LIMIT 1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(decode).transpose()
}

/// Latest versions ordered by id, after `after`, at most `limit` (+1 to tell if more exist).
pub async fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
    include_archived: bool,
) -> Result<Vec<PlanRow>, SubError> {
    let q = format!(
        "SELECT {COLUMNS} FROM (SELECT DISTINCT ON (id) * FROM plans ORDER BY id, version DESC) p \
         WHERE ($1::text IS NULL OR id > $1) AND ($2 OR NOT archived) ORDER BY id LIMIT $3"
    );
    let rows: Vec<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(q))
        .bind(after)
        .bind(include_archived)
        .bind(limit + 1)
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(decode).collect()
}

type Versions = HashMap<(PlanId, u32), Arc<PlanRow>>;

/// Immutable plan versions, read once per process.
#[derive(Debug, Default, Clone)]
pub struct PlanCache {
    versions: Arc<RwLock<Versions>>,
}

impl PlanCache {
    pub async fn get(
        &self,
        conn: &mut PgConnection,
        id: &PlanId,
        version: u32,
    ) -> Result<Option<Arc<PlanRow>>, SubError> {
        let key = (id.clone(), version);
        if let Some(p) = self
            .versions
            .read()
            .expect("plan cache lock is never poisoned: no panics while held")
            .get(&key)
        {
            return Ok(Some(p.clone()));
        }
        let q = format!("SELECT {COLUMNS} FROM plans WHERE id = $1 AND version = $2");
        let row: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(q))
            .bind(id)
            .bind(version as i32)
            .fetch_optional(conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let plan = Arc::new(decode(row)?);
        self.versions
            .write()
            .expect("plan cache lock is never poisoned: no panics while held")
            .insert(key, plan.clone());
        Ok(Some(plan))
    }
}
