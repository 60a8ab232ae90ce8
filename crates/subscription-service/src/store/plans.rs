//! The plan catalog. Versions are immutable, so a version once read is cached for good.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use pricing::{Currency, Interval};
use sqlx::PgConnection;

use crate::domain::plan::PlanDef;
use crate::error::SubError;

#[derive(Debug, Clone)]
pub struct PlanRow {
    pub id: String,
    pub version: u32,
    pub def: PlanDef,
    pub created_at: DateTime<Utc>,
}

type Raw = (
    String,
    i32,
    String,
    String,
    String,
    i32,
    bool,
    serde_json::Value,
    serde_json::Value,
    bool,
    DateTime<Utc>,
);

const COLUMNS: &str = "id, version, name, currency, interval, trial_days, fixed_seats, prices, \
                       features, archived, created_at";

fn decode(r: Raw) -> Result<PlanRow, SubError> {
    let corrupt = |what: &str| SubError::Corrupt(format!("plan {} v{}: {what}", r.0, r.1));
    Ok(PlanRow {
        def: PlanDef {
            name: r.2.clone(),
            currency: Currency::parse(&r.3).map_err(|_| corrupt("currency"))?,
            interval: Interval::parse(&r.4).ok_or_else(|| corrupt("interval"))?,
            trial_days: u32::try_from(r.5).map_err(|_| corrupt("trial_days"))?,
            fixed_seats: r.6,
            prices: serde_json::from_value(r.7.clone()).map_err(|_| corrupt("prices"))?,
            features: serde_json::from_value(r.8.clone()).map_err(|_| corrupt("features"))?,
            archived: r.9,
        },
        id: r.0,
        version: u32::try_from(r.1).map_err(|_| SubError::Corrupt("version".into()))?,
        created_at: r.10,
    })
}

pub async fn insert(
    conn: &mut PgConnection,
    id: &str,
    version: u32,
    def: &PlanDef,
) -> Result<PlanRow, SubError> {
    let q = format!(
        "INSERT INTO plans ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now()) \
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
    id: &str,
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

type Versions = HashMap<(String, u32), Arc<PlanRow>>;

/// Immutable plan versions, read once per process.
#[derive(Debug, Default, Clone)]
pub struct PlanCache {
    versions: Arc<RwLock<Versions>>,
}

impl PlanCache {
    pub async fn get(
        &self,
        conn: &mut PgConnection,
        id: &str,
        version: u32,
    ) -> Result<Option<Arc<PlanRow>>, SubError> {
        let key = (id.to_string(), version);
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
