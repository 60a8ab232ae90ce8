//! The service layer: what the subscription service does, as plain async functions over its
//! database and caches. Transport (`grpc`) parses requests into the arguments here and turns
//! results back into messages; it holds no business flow of its own.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ids::PlanId;
use sqlx::{PgConnection, PgPool};

use crate::cache::EntitlementCache;
use crate::error::SubError;
use crate::settings::Settings;
use crate::store::group_commit::GroupCommit;
use crate::store::plans::{self, PlanCache, PlanRow};

mod subscriptions;
mod usage;

pub use subscriptions::NewSubscription;
pub use usage::{Ingested, Rejected};

/// The service's state; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Service {
    pub pool: PgPool,
    pub plans: PlanCache,
    pub cache: EntitlementCache,
    pub settings: Settings,
    /// Where usage batches are stored (group commit).
    pub writer: GroupCommit,
}

impl Service {
    /// Needs a Tokio runtime: the usage writers are tasks of their own.
    pub fn new(pool: PgPool, cache: EntitlementCache, settings: Settings) -> Self {
        Service {
            writer: GroupCommit::start(pool.clone(), settings.usage_writers),
            pool,
            plans: PlanCache::default(),
            cache,
            settings,
        }
    }

    /// One version of a plan (immutable, so cached).
    pub async fn plan_version(
        &self,
        conn: &mut PgConnection,
        id: &PlanId,
        version: u32,
    ) -> Result<Arc<PlanRow>, SubError> {
        self.plans
            .get(conn, id, version)
            .await?
            .ok_or(SubError::NotFound("plan"))
    }

    /// The latest version (version 0) or the given one.
    pub async fn resolve_plan(
        &self,
        conn: &mut PgConnection,
        id: &PlanId,
        version: u32,
    ) -> Result<Arc<PlanRow>, SubError> {
        if version == 0 {
            let latest = plans::latest(conn, id, false)
                .await?
                .ok_or(SubError::NotFound("plan"))?;
            Ok(Arc::new(latest))
        } else {
            self.plan_version(conn, id, version).await
        }
    }
}

/// The database's clock: every time a transaction records is the same server's.
async fn db_now(conn: &mut PgConnection) -> Result<DateTime<Utc>, SubError> {
    Ok(sqlx::query_scalar("SELECT now()").fetch_one(conn).await?)
}
