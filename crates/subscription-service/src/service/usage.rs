//! Usage ingestion: validate a batch, place each record in its subscription's period, store
//! the new ones once.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use ids::TenantId;
use pricing::period_containing;

use super::Service;
use crate::domain::usage::{self, MAX_BATCH, RawRecord, Reject};
use crate::error::SubError;
use crate::store::subscriptions;
use crate::store::usage::Placed;

/// A record left out of a batch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the batch.
    pub index: usize,
    pub id: String,
    pub reason: Reject,
    pub message: String,
}

/// What a batch did: new records stored, records already stored (or repeated in the batch),
/// and the rejected ones in batch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejected>,
}

impl Service {
    /// Stores `records`. `only`: the one tenant the caller may report usage for (`None` for
    /// the operator, who reports for any). A batch is all-or-nothing in the database; each
    /// record is accepted, a duplicate, or rejected with a reason.
    pub async fn ingest(
        &self,
        only: Option<&TenantId>,
        records: &[RawRecord<'_>],
    ) -> Result<Ingested, SubError> {
        if records.len() > MAX_BATCH {
            return Err(SubError::invalid(
                "records",
                format!("at most {MAX_BATCH} per request"),
            ));
        }
        let now = Utc::now();
        let mut rejected = Vec::new();
        let mut reject = |index: usize, id: &str, reason: Reject, message: String| {
            rejected.push(Rejected {
                index,
                id: id.chars().take(128).collect(),
                reason,
                message,
            })
        };
        let mut valid = Vec::with_capacity(records.len());
        for (i, raw) in records.iter().enumerate() {
            match usage::validate(raw, now, self.settings.usage_grace) {
                Ok(v) if only.is_some_and(|t| *t != v.tenant_id) => {
                    reject(i, raw.id, Reject::UnknownTenant, "unknown tenant".into())
                }
                Ok(v) => valid.push((i, v)),
                Err((why, m)) => reject(i, raw.id, why, m),
            }
        }
        // The subscriptions (and so periods and metrics) of the tenants in the batch.
        let tenants: Vec<TenantId> = valid
            .iter()
            .map(|(_, v)| v.tenant_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut conn = self.pool.acquire().await?;
        let subs = if tenants.is_empty() {
            vec![]
        } else {
            subscriptions::list(&mut conn, &tenants).await?
        };
        let mut meters = HashMap::new();
        for s in subs.into_iter().filter(|s| s.status.is_live()) {
            let plan = self
                .plan_version(&mut conn, &s.plan_id, s.plan_version())
                .await?;
            let current = pricing::Period {
                start: s.period_start,
                end: s.period_end,
            };
            let metrics = plan.def.metrics();
            meters.insert(s.tenant_id.clone(), (s, plan, metrics, current));
        }
        let mut seen = BTreeSet::new();
        let mut duplicates = 0u64;
        let mut batch = Vec::with_capacity(valid.len());
        for (i, v) in valid {
            let Some((sub, plan, metrics, current)) = meters.get(&v.tenant_id) else {
                reject(
                    i,
                    &v.id,
                    Reject::UnknownTenant,
                    "unknown tenant (no live subscription)".into(),
                );
                continue;
            };
            if !metrics.contains(&v.metric) {
                reject(
                    i,
                    &v.id,
                    Reject::UnknownMetric,
                    format!("the tenant's plan has no metric {:?}", v.metric),
                );
                continue;
            }
            // Almost every record falls in the current period; only late ones need the search.
            let period = if current.contains(v.ts) {
                Some(*current)
            } else {
                // Usage stamped before the subscription began (clock skew, the grace window)
                // counts toward its first period rather than one it never had.
                period_containing(
                    sub.period_anchor,
                    plan.def.interval,
                    v.ts.max(sub.period_anchor),
                )
            };
            let Some(period) = period else {
                reject(i, &v.id, Reject::Invalid, "timestamp: out of range".into());
                continue;
            };
            if !seen.insert((v.tenant_id.clone(), v.id.clone())) {
                duplicates += 1;
                continue;
            }
            batch.push(Placed { record: v, period });
        }
        // The writers need connections of their own: waiting for one while holding one could
        // take the whole pool.
        drop(conn);
        let sent = batch.len() as u64;
        let stored = self.writer.store(batch).await?;
        let inserted = stored.accepted;
        let touched = stored.tenants;
        duplicates += sent - inserted;
        metrics::counter!("usage_records_ingested_total").increment(inserted);
        metrics::counter!("usage_records_duplicate_total").increment(duplicates);
        metrics::counter!("usage_records_rejected_total").increment(rejected.len() as u64);
        self.cache.invalidate_now(&touched).await;
        rejected.sort_by_key(|r| r.index);
        Ok(Ingested {
            accepted: inserted,
            duplicates,
            rejected,
        })
    }
}
