//! Which parts of which subscription periods a run bills, and pricing them.
//!
//! A run asks the subscription service for the periods that began or ended in its window
//! (`ListBillableSubscriptions` by period), keeps the parts due there that no run has billed
//! (a correction: the parts its original billed), and — in the transaction that completes the
//! run — claims them in `billed_periods` and prices them. The claim is what makes billing
//! exactly-once; the check before streaming only spares the work of reading usage twice.

use std::collections::{HashMap, HashSet};

use pricing::{Currency, Period, PricingError, SeatSegment};
use rpc::subscription::v1 as sub;
use sqlx::PgConnection;

use super::{RunError, Runner, as_operator, instant, period_pb};
use crate::domain::Part;
use crate::domain::charges::{Basis, Billable, Line, Phase, difference};
use crate::domain::cycles::{self, Charge, PartKey, SubPeriod};
use crate::store::billed::{self, Claim};
use crate::store::charges;
use crate::store::runs::RunRow;

/// A subscription period the run bills, and which of its parts.
#[derive(Debug, Clone)]
pub struct Due {
    pub period: SubPeriod,
    /// In order: advance before arrears.
    pub parts: Vec<Part>,
    /// The arrears part settles an advance part nobody billed: it is claimed with no lines.
    pub settles_advance: bool,
}

impl Runner {
    /// The parts the run bills (see the module's comment).
    pub(super) async fn due(&self, run: &RunRow) -> Result<Vec<Due>, RunError> {
        let window = Period::new(run.period_start, run.period_end)?;
        let mut dues = Vec::new();
        for b in self.billables(run).await? {
            let s = b.subscription.unwrap_or_default();
            for p in b.periods {
                let period = sub_period(&s, p)?;
                let parts = match run.corrects_run_id {
                    None => cycles::due(&window, period.period.start, period.ended_at),
                    Some(_) => vec![Part::Advance, Part::Arrears],
                };
                dues.push(Due {
                    period,
                    parts,
                    settles_advance: false,
                });
            }
        }
        let mut conn = self.pool.acquire().await?;
        let keys: Vec<PartKey> = dues
            .iter()
            .flat_map(|d| [d.period.key(Part::Advance), d.period.key(Part::Arrears)])
            .collect();
        let claimed = billed::claimed(&mut conn, &keys).await?;
        match &run.corrects_run_id {
            None => {
                for d in &mut dues {
                    d.parts.retain(|p| !claimed.contains(&d.period.key(*p)));
                    d.settles_advance = d.parts == [Part::Arrears]
                        && !claimed.contains(&d.period.key(Part::Advance));
                }
            }
            Some(original) => {
                let theirs: HashSet<PartKey> = billed::of_run(&mut conn, original)
                    .await?
                    .into_iter()
                    .collect();
                for d in &mut dues {
                    d.parts.retain(|p| theirs.contains(&d.period.key(*p)));
                    // Once the period's end is billed its true-up has settled the advance
                    // part; re-pricing that alone would bill the difference twice.
                    if claimed.contains(&d.period.key(Part::Arrears)) {
                        d.parts.retain(|p| *p == Part::Arrears);
                    }
                }
            }
        }
        dues.retain(|d| !d.parts.is_empty());
        Ok(dues)
    }

    /// The subscriptions with a period that began or ended in the run's window.
    async fn billables(&self, run: &RunRow) -> Result<Vec<sub::BillableSubscription>, RunError> {
        let req = as_operator(
            run,
            sub::ListBillableSubscriptionsRequest {
                period: Some(period_pb(run)),
                tenant_ids: run.tenant_ids.iter().map(|t| t.to_string()).collect(),
                by_period: true,
            },
        );
        let mut stream = self
            .usage
            .clone()
            .list_billable_subscriptions(req)
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(b) = stream.message().await? {
            out.push(b);
        }
        Ok(out)
    }
}

/// Claims the run's parts (unless it is a correction) and prices the ones it got, reading
/// the usage the run folded. Runs in the transaction that completes the run.
pub(super) async fn price(
    tx: &mut PgConnection,
    run: &RunRow,
    mut dues: Vec<Due>,
) -> Result<Vec<Charge>, RunError> {
    let correction = run.corrects_run_id.is_some();
    if !correction {
        let claims: Vec<Claim> = dues
            .iter()
            .flat_map(|d| {
                let settled = d.settles_advance.then_some(Part::Advance);
                d.parts.iter().copied().chain(settled).map(|p| Claim {
                    key: d.period.key(p),
                    tenant_id: d.period.billable.tenant_id.clone(),
                    period_end: d.period.period.end,
                })
            })
            .collect();
        // Parts another run claimed since `due` looked are that run's to bill.
        let got = billed::claim(tx, &run.id, &claims).await?;
        for d in &mut dues {
            d.parts.retain(|p| got.contains(&d.period.key(*p)));
        }
    }
    // What the parts billed so far: the advance parts (for true-ups) and, for a correction,
    // every part it re-prices.
    let keys: Vec<PartKey> = dues
        .iter()
        .flat_map(|d| [d.period.key(Part::Advance), d.period.key(Part::Arrears)])
        .collect();
    let billed = charges::billed(tx, &keys).await?;
    let usage = charges::usage(tx, &run.id).await?;
    let none = HashMap::new();
    let mut out = Vec::new();
    for d in dues {
        let p = &d.period;
        let (tenant, currency) = (p.billable.tenant_id.as_str(), p.billable.currency);
        let before = |part| billed.get(&p.key(part)).unwrap_or(&none);
        let mut advanced = before(Part::Advance).clone();
        let mut push = |part, lines: Vec<Line>| {
            let lines = if correction {
                difference(lines, before(part), tenant, currency, Basis::Adjustment)
            } else {
                lines
            };
            out.extend(lines.into_iter().map(|line| Charge {
                key: p.key(part),
                period_end: p.period.end,
                line,
            }));
        };
        if d.parts.contains(&Part::Advance) {
            let lines = p.advance()?;
            advanced = lines.iter().map(|l| (l.key(), l.amount_minor)).collect();
            push(Part::Advance, lines);
        }
        if d.parts.contains(&Part::Arrears) {
            let used = usage
                .get(&(tenant.to_string(), p.period.start))
                .cloned()
                .unwrap_or_default();
            push(Part::Arrears, p.arrears(&used, &advanced)?);
        }
    }
    Ok(out)
}

/// A period of a subscription as the subscription service sent it.
fn sub_period(s: &sub::Subscription, p: sub::BillablePeriod) -> Result<SubPeriod, RunError> {
    let bad = |what: &str| RunError::Record(format!("billable period of {}: {what}", s.id));
    let bounds = p.period.ok_or_else(|| bad("no period"))?;
    let (start, end) = (
        instant(bounds.start).ok_or_else(|| bad("no start"))?,
        instant(bounds.end).ok_or_else(|| bad("no end"))?,
    );
    let period = Period::new(start, end)?;
    let ended_at = instant(p.ended_at);
    let span = Period {
        start,
        end: ended_at.unwrap_or(end),
    };
    // The plan at the period's end bills it, in its currency.
    let currency = Currency::parse(
        p.phases
            .last()
            .and_then(|x| x.plan.as_ref())
            .map_or("", |plan| plan.currency.as_str()),
    )?;
    let phases: Vec<Phase> = p
        .phases
        .into_iter()
        .map(|x| phase(x, &span))
        .collect::<Result<_, _>>()?;
    Ok(SubPeriod {
        subscription_id: s.id.clone(),
        period,
        ended_at,
        billable: Billable {
            tenant_id: s.tenant_id.clone(),
            currency,
            phases,
            created_at: instant(s.created_at).unwrap_or(start),
            trial_end: s.trial_end.and_then(|t| instant(Some(t))),
            canceled_at: s.canceled_at.and_then(|t| instant(Some(t))),
            seats: p
                .seats
                .into_iter()
                .filter_map(|g| {
                    Some(SeatSegment {
                        from: instant(g.from)?,
                        to: g.to.and_then(|t| instant(Some(t))),
                        seats: g.seats,
                    })
                })
                .collect(),
        },
    })
}

/// A plan phase as pricing sees it; its bounds default to the span's.
fn phase(p: sub::PlanPhase, span: &Period) -> Result<Phase, PricingError> {
    let plan = p.plan.unwrap_or_default();
    Ok(Phase {
        prices: plan
            .prices
            .iter()
            .map(pricing::wire::price_from_pb)
            .collect::<Result<_, _>>()?,
        plan_id: plan.id,
        plan_version: plan.version,
        start: instant(p.start).unwrap_or(span.start),
        end: instant(p.end).unwrap_or(span.end),
    })
}
