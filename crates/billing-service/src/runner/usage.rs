//! A run's usage: the records counted in the periods whose arrears part it bills, streamed
//! from the subscription service (`StreamUsage` by period) through the pipeline into the
//! run's summaries, one row set per (tenant, period, user, metric).
//!
//! A tenant can have several periods in one run (a run over three months); the pipeline
//! folds by tenant, so the usage is read in passes, the k-th period of every tenant in pass
//! k. A run over one period per tenant — the usual case — is one pass.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use concurrency::ThroughputTracker;
use platform::grpc::timestamp;
use rpc::subscription::v1 as sub;
use tokio::sync::mpsc;

use super::periods::Due;
use super::{RunError, Runner, as_operator};
use crate::domain::Part;
use crate::domain::aggregate::Columns;
use crate::pipeline::{self, SummarySink};
use crate::store::runs::RunRow;
use crate::store::shards::ShardRow;

/// Records per `StreamUsage` message and per pipeline batch.
const BATCH: usize = 4096;
/// Periods per `StreamUsage` call (the subscription service takes at most 100,000).
const PERIODS_PER_CALL: usize = 50_000;

impl Runner {
    /// Folds the usage of every arrears part in `dues` into the run's summaries.
    pub(super) async fn aggregate(
        &self,
        run: &RunRow,
        shard: Option<&ShardRow>,
        dues: &[Due],
        tracker: Arc<ThroughputTracker>,
    ) -> Result<(), RunError> {
        let mut by_tenant: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        for d in dues.iter().filter(|d| d.parts.contains(&Part::Arrears)) {
            by_tenant
                .entry(d.period.billable.tenant_id.as_str())
                .or_default()
                .push(d.period.period.start);
        }
        let passes = by_tenant.values_mut().fold(0, |n, starts| {
            starts.sort();
            starts.dedup();
            n.max(starts.len())
        });
        for k in 0..passes {
            let pass: Vec<(String, DateTime<Utc>)> = by_tenant
                .iter()
                .filter_map(|(t, starts)| starts.get(k).map(|s| (t.to_string(), *s)))
                .collect();
            for chunk in pass.chunks(PERIODS_PER_CALL) {
                self.stream(run, shard, chunk, tracker.clone()).await?;
            }
        }
        Ok(())
    }

    /// One pass: the records of `periods` (at most one per tenant) through the pipeline.
    async fn stream(
        &self,
        run: &RunRow,
        shard: Option<&ShardRow>,
        periods: &[(String, DateTime<Utc>)],
        tracker: Arc<ThroughputTracker>,
    ) -> Result<(), RunError> {
        let (tx, rx) = mpsc::channel(self.limiter.max_workers() * 2);
        let sink = Arc::new(SummarySink {
            pool: self.pool.clone(),
            run_id: run.id.clone(),
            attempt: run.attempt,
            shard: shard.map(|s| (s.shard, s.attempt)),
            periods: Arc::new(periods.iter().cloned().collect::<HashMap<_, _>>()),
        });
        let req = as_operator(
            run,
            sub::StreamUsageRequest {
                tenant_ids: vec![],
                period: None,
                batch_size: BATCH as u32,
                columnar: true,
                periods: periods
                    .iter()
                    .map(|(tenant_id, start)| sub::TenantPeriod {
                        tenant_id: tenant_id.clone(),
                        period_start: Some(timestamp(*start)),
                    })
                    .collect(),
            },
        );
        let mut stream = self.usage.clone().stream_usage(req).await?.into_inner();
        let producer = async move {
            while let Some(batch) = stream.message().await? {
                let columns = columns(batch.columns.unwrap_or_default())?;
                if tx.send(columns).await.is_err() {
                    return Ok(());
                }
            }
            Ok::<(), RunError>(())
        };
        let consumer = async {
            pipeline::run(rx, &self.limiter, sink, tracker)
                .await
                .map_err(RunError::from)
        };
        tokio::try_join!(producer, consumer)?;
        Ok(())
    }
}

/// A streamed batch, checked: lengths agree, indexes in range, quantities well-formed.
fn columns(c: sub::UsageColumns) -> Result<Columns, RunError> {
    let bad = |m: String| RunError::Record(m);
    if c.units.len() != c.scale.len() {
        return Err(bad(format!(
            "{} units but {} scales",
            c.units.len(),
            c.scale.len()
        )));
    }
    let mut quantity = c
        .units
        .iter()
        .zip(&c.scale)
        .map(|(&u, &s)| {
            rust_decimal::Decimal::try_new(u, s).map_err(|_| bad(format!("quantity {u}e-{s}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (i, d) in c.wide {
        let v = d.value;
        let q = quantity
            .get_mut(i as usize)
            .ok_or_else(|| bad(format!("wide quantity for record {i} of a shorter batch")))?;
        *q = v.parse().map_err(|_| bad(format!("quantity {v:?}")))?;
    }
    Columns::new(c.strings, c.tenant, c.user, c.metric, quantity).map_err(bad)
}
