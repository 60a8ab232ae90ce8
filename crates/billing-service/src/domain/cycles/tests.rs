use super::*;
use chrono::{Duration, TimeZone};
use pricing::{ChargeKind, Currency, Price, PriceModel, round_minor};
use std::collections::HashSet;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap()
}

const DAY: i64 = 86_400;
const LEN: i64 = 30 * DAY;

fn price(id: &str, kind: ChargeKind, amount: i64) -> Price {
    Price {
        id: id.into(),
        kind,
        metric: (kind == ChargeKind::Metered).then(|| "api_calls".to_string()),
        model: match kind {
            ChargeKind::Flat => PriceModel::Flat {
                amount: Decimal::from(amount),
            },
            _ => PriceModel::PerUnit {
                unit_amount: Decimal::from(amount),
            },
        },
        included_quantity: Decimal::ZERO,
        minimum_amount_minor: None,
        billing: None,
    }
}

/// A plan's id and prices.
type Plan = (String, Vec<Price>);

/// Plan `id`: a flat fee, a seat price (both in advance) and calls (in arrears).
fn plan(id: &str, flat: i64, seat: i64, call: i64) -> Plan {
    (
        id.to_string(),
        vec![
            price("base", ChargeKind::Flat, flat),
            price("seats", ChargeKind::Seat, seat),
            price("calls", ChargeKind::Metered, call),
        ],
    )
}

/// A subscription timeline: period k is `[t0 + k·LEN, t0 + (k+1)·LEN)`; the plan changes at
/// `changes` (time, plan); the seats at `seats` (time, count); it ends at `end` (canceled) or
/// runs on.
#[derive(Debug)]
struct Timeline {
    plans: Vec<(DateTime<Utc>, Plan)>,
    seats: Vec<(DateTime<Utc>, u32)>,
    periods: usize,
    canceled_at: Option<DateTime<Utc>>,
    usage: Vec<i64>,
}

impl Timeline {
    fn period(&self, k: usize) -> SubPeriod {
        let start = t0() + Duration::seconds(LEN * k as i64);
        let period = Period::new(start, start + Duration::seconds(LEN)).unwrap();
        let ended_at = match self.canceled_at {
            Some(c) if c < period.end => Some(c),
            _ => Some(period.end),
        };
        let end = ended_at.unwrap();
        let mut phases: Vec<Phase> = Vec::new();
        for (i, (at, (id, prices))) in self.plans.iter().enumerate() {
            let next = self.plans.get(i + 1).map_or(end, |n| n.0);
            let (s, e) = ((*at).max(start), next.min(end));
            if s < e || (phases.is_empty() && i + 1 == self.plans.len()) {
                phases.push(Phase {
                    plan_id: id.clone(),
                    plan_version: 1,
                    prices: prices.clone(),
                    start: s.min(e),
                    end: e,
                });
            }
        }
        let seats = self
            .seats
            .iter()
            .enumerate()
            .map(|(i, (at, n))| SeatSegment {
                from: *at,
                to: self.seats.get(i + 1).map(|s| s.0),
                seats: *n,
            })
            .collect();
        SubPeriod {
            subscription_id: "sub_1".into(),
            period,
            ended_at,
            billable: Billable {
                tenant_id: "ten_a".into(),
                currency: Currency::USD,
                phases,
                created_at: t0(),
                trial_end: None,
                canceled_at: self.canceled_at,
                seats,
            },
        }
    }

    /// What period k should cost, computed directly: each plan's flat fee and seats for the
    /// seconds it was in force, calls at the plan in force at the end; one rounding per line.
    fn expected(&self, k: usize) -> i64 {
        let p = self.period(k);
        let end = p.ended_at.unwrap();
        let secs = |a: DateTime<Utc>, z: DateTime<Utc>| (z - a).num_seconds().max(0);
        let mut total = 0;
        for (i, (at, (_, prices))) in self.plans.iter().enumerate() {
            let next = self.plans.get(i + 1).map_or(end, |n| n.0);
            let (s, e) = ((*at).max(p.period.start), next.min(end));
            if s >= e {
                continue;
            }
            let unit = |kind| match &prices.iter().find(|x| x.kind == kind).unwrap().model {
                PriceModel::Flat { amount } => *amount,
                PriceModel::PerUnit { unit_amount } => *unit_amount,
                _ => unreachable!(),
            };
            let flat = unit(ChargeKind::Flat) * Decimal::from(secs(s, e)) / Decimal::from(LEN);
            total += round_minor(flat).unwrap();
            let mut seat_secs = 0i64;
            for (j, (from, n)) in self.seats.iter().enumerate() {
                let to = self.seats.get(j + 1).map_or(e, |x| x.0);
                seat_secs += i64::from(*n) * secs((*from).max(s), to.min(e));
            }
            let seats = unit(ChargeKind::Seat) * Decimal::from(seat_secs) / Decimal::from(LEN);
            total += round_minor(seats).unwrap();
            if next >= end {
                total += i64::try_from(unit(ChargeKind::Metered)).unwrap() * self.usage[k];
            }
        }
        total
    }
}

/// Bills `windows` in order the way runs do (claims per part, the arrears part settling the
/// advance part), returning every line with its period and part.
fn bill(tl: &Timeline, windows: &[Period]) -> Vec<(usize, Part, Line)> {
    let mut claimed: HashSet<(usize, Part)> = HashSet::new();
    let mut advanced: HashMap<usize, HashMap<PriceKey, i64>> = HashMap::new();
    let mut out = Vec::new();
    for w in windows {
        for k in 0..tl.periods {
            let p = tl.period(k);
            let parts = due(w, p.period.start, p.ended_at);
            if parts.contains(&Part::Arrears) && !parts.contains(&Part::Advance) {
                // Claimed with no lines if nobody billed it yet.
                claimed.insert((k, Part::Advance));
            }
            for part in parts {
                if !claimed.insert((k, part)) {
                    continue;
                }
                let lines = match part {
                    Part::Advance => p.advance().unwrap(),
                    Part::Arrears => {
                        let usage =
                            BTreeMap::from([("api_calls".to_string(), Decimal::from(tl.usage[k]))]);
                        p.arrears(&usage, advanced.get(&k).unwrap_or(&HashMap::new()))
                            .unwrap()
                    }
                };
                if part == Part::Advance {
                    let a = advanced.entry(k).or_default();
                    for l in &lines {
                        *a.entry(l.key()).or_default() += l.amount_minor;
                    }
                }
                out.extend(lines.into_iter().map(|l| (k, part, l)));
            }
        }
    }
    out
}

fn simple() -> Timeline {
    Timeline {
        plans: vec![(t0(), plan("pro", 3000, 1000, 2))],
        seats: vec![(t0(), 3)],
        periods: 3,
        canceled_at: None,
        usage: vec![10, 20, 30],
    }
}

fn window(from_day: i64, to_day: i64) -> Period {
    Period::new(
        t0() + Duration::seconds(from_day * DAY),
        t0() + Duration::seconds(to_day * DAY),
    )
    .unwrap()
}

#[test]
fn a_period_is_due_in_advance_when_it_begins_and_in_arrears_when_it_ends() {
    let (start, end) = (t0(), t0() + Duration::seconds(LEN));
    assert_eq!(due(&window(0, 1), start, Some(end)), [Part::Advance]);
    assert_eq!(due(&window(29, 30), start, Some(end)), [Part::Arrears]);
    assert_eq!(
        due(&window(-1, 31), start, Some(end)),
        [Part::Advance, Part::Arrears]
    );
    // A day in the middle: nothing.
    assert_eq!(due(&window(10, 11), start, Some(end)), []);
    // Still open: only its start can be due.
    assert_eq!(due(&window(29, 31), start, None), []);
    // Bounds: the window's start is in, its end out, for beginnings; the reverse for ends.
    assert_eq!(due(&window(30, 60), start, Some(end)), []);
    assert_eq!(due(&window(-30, 0), start, Some(end)), []);
}

#[test]
fn advance_fees_at_the_start_usage_at_the_end() {
    let tl = simple();
    let p = tl.period(0);
    let adv = p.advance().unwrap();
    let got: Vec<_> = adv
        .iter()
        .map(|l| (l.price_id.as_str(), l.amount_minor))
        .collect();
    assert_eq!(got, [("base", 3000), ("seats", 3000)]);
    let advanced: HashMap<_, _> = adv.iter().map(|l| (l.key(), l.amount_minor)).collect();
    let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(10))]);
    let arr = p.arrears(&usage, &advanced).unwrap();
    // Nothing changed: only the usage, no true-up lines.
    let got: Vec<_> = arr
        .iter()
        .map(|l| (l.price_id.as_str(), l.amount_minor))
        .collect();
    assert_eq!(got, [("calls", 20)]);
}

#[test]
fn a_downgrade_mid_period_credits_the_unused_part_and_bills_the_new_plan() {
    let half = t0() + Duration::seconds(LEN / 2);
    let tl = Timeline {
        plans: vec![
            (t0(), plan("pro", 3000, 1000, 2)),
            (half, plan("lite", 1000, 500, 1)),
        ],
        periods: 1,
        ..simple()
    };
    let lines = bill(&tl, &[window(0, 1), window(29, 30)]);
    let got: Vec<_> = lines
        .iter()
        .map(|(_, part, l)| {
            (
                *part,
                l.plan_id.as_str(),
                l.price_id.as_str(),
                l.amount_minor,
                l.basis,
            )
        })
        .collect();
    use Basis::*;
    assert_eq!(
        got,
        [
            (Part::Advance, "pro", "base", 3000, Priced),
            (Part::Advance, "pro", "seats", 3000, Priced),
            (Part::Arrears, "lite", "calls", 10, Priced),
            // Half of pro's fee and seats back; lite's for the half it was in force.
            (Part::Arrears, "pro", "base", -1500, Proration),
            (Part::Arrears, "pro", "seats", -1500, Proration),
            (Part::Arrears, "lite", "base", 500, Proration),
            (Part::Arrears, "lite", "seats", 750, Proration),
        ]
    );
    let total: i64 = lines.iter().map(|(_, _, l)| l.amount_minor).sum();
    assert_eq!(total, tl.expected(0));
}

#[test]
fn cancel_now_credits_the_rest_of_the_period() {
    let tl = Timeline {
        canceled_at: Some(t0() + Duration::seconds(LEN / 3)),
        periods: 1,
        ..simple()
    };
    let lines = bill(&tl, &[window(0, 1), window(9, 11)]);
    let credits: i64 = lines
        .iter()
        .filter(|(_, _, l)| l.basis == Basis::Proration)
        .map(|(_, _, l)| l.amount_minor)
        .sum();
    assert_eq!(credits, -4000, "⅔ of 30.00 and of 3 seats × 10.00");
    let total: i64 = lines.iter().map(|(_, _, l)| l.amount_minor).sum();
    assert_eq!(total, 1000 + 1000 + 20);
}

#[test]
fn an_arrears_part_billed_first_settles_the_period() {
    let tl = simple();
    // The period's start was never covered by a run: the end bills the fees in full...
    let lines = bill(&tl, &[window(29, 31), window(-5, 31)]);
    let period0: Vec<_> = lines
        .iter()
        .filter(|(k, _, _)| *k == 0)
        .map(|(_, part, l)| (*part, l.price_id.as_str(), l.amount_minor))
        .collect();
    // ...and a later run over the start bills nothing more for it.
    assert_eq!(
        period0,
        [
            (Part::Arrears, "calls", 20),
            (Part::Arrears, "base", 3000),
            (Part::Arrears, "seats", 3000)
        ]
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn timeline() -> impl Strategy<Value = (Timeline, Vec<(i64, i64)>)> {
        let plans = [
            plan("pro", 3000, 1000, 2),
            plan("lite", 999, 333, 1),
            plan("max", 7777, 1234, 3),
        ];
        (
            1usize..5,
            proptest::collection::vec((1i64..150 * DAY, 0usize..3), 0..3),
            proptest::collection::vec((1i64..150 * DAY, 0u32..50), 0..4),
            0u32..50,
            proptest::option::of(1i64..150 * DAY),
            proptest::collection::vec(0i64..10_000, 5),
            proptest::collection::vec((-40i64..160, 1i64..100), 0..6),
        )
            .prop_map(
                move |(periods, changes, seat_changes, seats0, cancel, usage, windows)| {
                    let mut changes = changes;
                    changes.sort();
                    let mut plan_at = vec![(t0(), plans[0].clone())];
                    for (at, i) in changes {
                        plan_at.push((t0() + Duration::seconds(at), plans[i].clone()));
                    }
                    plan_at.dedup_by_key(|p| p.0);
                    let mut seat_changes = seat_changes;
                    seat_changes.sort();
                    let mut seats = vec![(t0(), seats0)];
                    for (at, n) in seat_changes {
                        seats.push((t0() + Duration::seconds(at), n));
                    }
                    seats.dedup_by_key(|s| s.0);
                    let end = t0() + Duration::seconds(LEN * periods as i64);
                    let canceled_at = cancel
                        .map(|c| t0() + Duration::seconds(c))
                        .filter(|c| *c < end);
                    // Periods after a cancellation never existed.
                    let periods = canceled_at.map_or(periods, |c| {
                        ((c - t0()).num_seconds() / LEN + 1).min(periods as i64) as usize
                    });
                    let tl = Timeline {
                        plans: plan_at,
                        seats,
                        periods,
                        canceled_at,
                        usage,
                    };
                    (
                        tl,
                        windows.into_iter().map(|(a, len)| (a, a + len)).collect(),
                    )
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Whatever runs cover, each period costs exactly its own price once every period has
        /// ended and been covered, and no price is billed twice in one part of a period.
        #[test]
        fn every_period_is_billed_once_at_its_own_price((tl, windows) in timeline()) {
            let mut ws: Vec<Period> = windows.iter().map(|(a, z)| window(*a, *z)).collect();
            // Finally one run over everything, as the clock does over time.
            ws.push(window(-1, 200));
            let lines = bill(&tl, &ws);
            for k in 0..tl.periods {
                let got: i64 = lines.iter().filter(|(p, _, _)| *p == k).map(|(_, _, l)| l.amount_minor).sum();
                prop_assert_eq!(got, tl.expected(k), "period {}", k);
            }
            let mut priced = HashSet::new();
            for (k, part, l) in &lines {
                if l.basis == Basis::Priced {
                    // A plan left and returned to bills one line per span it was in force.
                    prop_assert!(priced.insert((*k, l.key(), l.span)), "{:?} {:?} billed twice in period {} ({:?})", l.key(), l.span, k, part);
                }
            }
        }
    }
}
