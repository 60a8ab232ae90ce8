use super::*;
use chrono::TimeZone;
use pricing::round_minor;
use pricing::{PriceModel, Tier};
use std::collections::BTreeMap;

fn at(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, d, 0, 0, 0).unwrap()
}

fn april() -> Period {
    Period::new(at(1), Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()).unwrap()
}

fn p(id: &str, kind: ChargeKind, metric: Option<&str>, model: PriceModel) -> Price {
    Price {
        id: id.into(),
        kind,
        metric: metric.map(Into::into),
        model,
        included_quantity: Decimal::ZERO,
        minimum_amount_minor: None,
        billing: None,
    }
}

/// Plan `id` version 1 over `[start, end)`.
fn phase(id: &str, start: DateTime<Utc>, end: DateTime<Utc>, prices: Vec<Price>) -> Phase {
    Phase {
        plan_id: id.into(),
        plan_version: 1,
        prices,
        start,
        end,
    }
}

fn billable() -> Billable {
    Billable {
        tenant_id: "ten_a".into(),
        currency: Currency::USD,
        phases: vec![phase(
            "pro",
            april().start,
            april().end,
            vec![
                p(
                    "base",
                    ChargeKind::Flat,
                    None,
                    PriceModel::Flat {
                        amount: Decimal::from(3000),
                    },
                ),
                p(
                    "seats",
                    ChargeKind::Seat,
                    None,
                    PriceModel::PerUnit {
                        unit_amount: Decimal::from(1000),
                    },
                ),
                Price {
                    included_quantity: Decimal::from(100),
                    minimum_amount_minor: Some(500),
                    billing: None,
                    ..p(
                        "calls",
                        ChargeKind::Metered,
                        Some("api_calls"),
                        PriceModel::Graduated {
                            tiers: vec![
                                Tier {
                                    up_to: Some(Decimal::from(1000)),
                                    unit_amount: Decimal::ONE,
                                    flat_amount: Decimal::ZERO,
                                },
                                Tier {
                                    up_to: None,
                                    unit_amount: Decimal::new(5, 1),
                                    flat_amount: Decimal::ZERO,
                                },
                            ],
                        },
                    )
                },
            ],
        )],
        created_at: at(1) - chrono::Duration::days(40),
        trial_end: None,
        canceled_at: None,
        seats: vec![
            SeatSegment {
                from: at(1) - chrono::Duration::days(40),
                to: Some(at(16)),
                seats: 4,
            },
            SeatSegment {
                from: at(16),
                to: None,
                seats: 10,
            },
        ],
    }
}

fn amounts(lines: &[Line]) -> Vec<(String, i64)> {
    lines
        .iter()
        .map(|l| (l.price_id.clone(), l.amount_minor))
        .collect()
}

#[test]
fn a_full_period() {
    let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(2100))]);
    let lines = super::price(&billable(), &april(), &usage).unwrap();
    // Seats: 4 for 15 days, 10 for 15 days = 7 → 70.00; calls: 2,000 billable →
    // 1,000 × 1 + 1,000 × 0.5 = 1,500.
    assert_eq!(
        amounts(&lines),
        [
            ("base".into(), 3000),
            ("seats".into(), 7000),
            ("calls".into(), 1500)
        ]
    );
    assert_eq!(lines[1].quantity, Decimal::from(7));
}

#[test]
fn partial_periods_prorate_flat_and_seats_but_not_usage() {
    let mut b = billable();
    b.created_at = at(16);
    b.seats = vec![SeatSegment {
        from: at(16),
        to: None,
        seats: 10,
    }];
    let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(150))]);
    let lines = super::price(&b, &april(), &usage).unwrap();
    // Half the period: 15.00 base, 5 seats → 50.00; 50 billable calls = 0.50, raised to the
    // minimum 5.00 × ½ = 2.50.
    assert_eq!(
        amounts(&lines),
        [
            ("base".into(), 1500),
            ("seats".into(), 5000),
            ("calls".into(), 250)
        ]
    );
    assert!(lines[2].minimum_applied);
    // Canceled a third of the way in: a third of the base.
    let mut c = billable();
    c.canceled_at = Some(at(11));
    let lines = super::price(&c, &april(), &BTreeMap::new()).unwrap();
    assert_eq!(lines[0].amount_minor, 1000);
    assert_eq!(lines[1].quantity, Decimal::from(4) / Decimal::from(3));
}

#[test]
fn corrections_bill_only_the_difference() {
    let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(2100))]);
    let lines = super::price(&billable(), &april(), &usage).unwrap();
    // Billed before: base in full, seats 10.00 short, and a price the plan no longer has.
    let key = |price: &str| PriceKey {
        plan_id: "pro".into(),
        plan_version: 1,
        price_id: price.into(),
    };
    let billed = HashMap::from([(key("base"), 3000), (key("seats"), 6000), (key("old"), 700)]);
    let adj = difference(lines, &billed, "ten_a", Currency::USD, Basis::Adjustment);
    assert_eq!(
        amounts(&adj),
        [
            ("seats".into(), 1000),
            ("calls".into(), 1500),
            ("old".into(), -700)
        ]
    );
    assert!(adj.iter().all(|l| l.basis == Basis::Adjustment));
}

#[test]
fn a_plan_change_bills_each_plan_for_its_part_of_the_period() {
    let may = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    let mut b = billable();
    let pro = b.phases[0].prices.clone();
    let max = vec![
        p(
            "base",
            ChargeKind::Flat,
            None,
            PriceModel::Flat {
                amount: Decimal::from(6000),
            },
        ),
        p(
            "seats",
            ChargeKind::Seat,
            None,
            PriceModel::PerUnit {
                unit_amount: Decimal::from(2000),
            },
        ),
        p(
            "calls",
            ChargeKind::Metered,
            Some("api_calls"),
            PriceModel::PerUnit {
                unit_amount: Decimal::from(2),
            },
        ),
    ];
    // "pro" for 10 days, then "max" for 20.
    b.phases = vec![
        phase("pro", at(1), at(11), pro),
        phase("max", at(11), may, max),
    ];
    let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(2100))]);
    let lines = super::price(&b, &april(), &usage).unwrap();
    let got: Vec<_> = lines
        .iter()
        .map(|l| (l.plan_id.as_str(), l.price_id.as_str(), l.amount_minor))
        .collect();
    // pro: 30.00 × ⅓; 4 seats × ⅓ × 10.00 = 13.33. max: 60.00 × ⅔; seats 4 for 5 days and
    // 10 for 15 → 170/30 × 20.00 = 113.33; all 2,100 calls at max's 2 = 42.00 (the plan at
    // the period's end prices the usage; pro's calls are not billed).
    assert_eq!(
        got,
        [
            ("pro", "base", 1000),
            ("pro", "seats", 1333),
            ("max", "base", 4000),
            ("max", "seats", 11333),
            ("max", "calls", 4200)
        ]
    );
    assert_eq!(lines[0].span, Some((at(1), at(11))));
    assert_eq!(lines[3].span, Some((at(11), may)));
    assert_eq!(lines[4].span, Some((at(1), may)));
    // A correction after the change: what was billed under pro's version before is compared
    // with pro's lines, and a version no longer in the period is credited back.
    let billed = HashMap::from([
        (lines[0].key(), 3000),
        (
            PriceKey {
                plan_version: 2,
                ..lines[0].key()
            },
            500,
        ),
    ]);
    let adj = difference(lines, &billed, "ten_a", Currency::USD, Basis::Adjustment);
    let got: Vec<_> = adj
        .iter()
        .map(|l| {
            (
                l.plan_id.as_str(),
                l.plan_version,
                l.price_id.as_str(),
                l.amount_minor,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("pro", 1, "base", -2000),
            ("pro", 1, "seats", 1333),
            ("max", 1, "base", 4000),
            ("max", 1, "seats", 11333),
            ("max", 1, "calls", 4200),
            ("pro", 2, "base", -500)
        ]
    );
}

#[test]
fn a_period_in_trial_costs_nothing() {
    let mut b = billable();
    b.trial_end = Some(Utc.with_ymd_and_hms(2026, 5, 3, 0, 0, 0).unwrap());
    let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(5000))]);
    assert!(super::price(&b, &april(), &usage).unwrap().is_empty());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Constant seats over a whole period bill exactly the model's price for them, and
        /// the flat fee in full: no proration drift.
        #[test]
        fn whole_periods_are_not_prorated(seats in 0u32..500, lead in 0i64..10_000_000) {
            let mut b = billable();
            b.created_at = at(1) - chrono::Duration::seconds(lead);
            b.seats = vec![SeatSegment { from: b.created_at, to: None, seats }];
            let lines = super::super::price(&b, &april(), &BTreeMap::new()).unwrap();
            prop_assert_eq!(lines[0].amount_minor, 3000);
            prop_assert_eq!(lines[1].quantity, Decimal::from(seats));
            prop_assert_eq!(lines[1].amount_minor, i64::from(seats) * 1000);
        }

        /// Splitting the period at a change to the same prices moves each recurring total by
        /// at most one minor unit (each phase's line is rounded once) and the usage not at all.
        #[test]
        fn a_change_to_the_same_prices_costs_the_same(split in 1i64..2_592_000, calls in 0i64..5000) {
            let period = april();
            let whole = billable();
            let mut split_b = billable();
            let at = period.start + chrono::Duration::seconds(split);
            let prices = whole.phases[0].prices.clone();
            split_b.phases = vec![
                phase("pro", period.start, at, prices.clone()),
                phase("pro2", at, period.end, prices),
            ];
            let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(calls))]);
            let sum = |b: &Billable, kind: ChargeKind| -> i64 {
                super::super::price(b, &period, &usage)
                    .unwrap()
                    .iter()
                    .filter(|l| l.kind == kind)
                    .map(|l| l.amount_minor)
                    .sum()
            };
            for kind in [ChargeKind::Flat, ChargeKind::Seat] {
                prop_assert!((sum(&whole, kind) - sum(&split_b, kind)).abs() <= 1, "{kind:?}");
            }
            prop_assert_eq!(sum(&whole, ChargeKind::Metered), sum(&split_b, ChargeKind::Metered));
        }

        /// A partial period bills the flat fee × the active fraction, rounded once, never
        /// more than the whole fee; metered usage is priced in full, only its minimum is scaled.
        #[test]
        fn partial_periods_prorate_flat_fees_only(start in 0i64..2_592_000, len in 1i64..2_592_000, calls in 0i64..5000) {
            let period = april();
            let mut b = billable();
            b.created_at = period.start + chrono::Duration::seconds(start);
            b.canceled_at = Some(b.created_at + chrono::Duration::seconds(len));
            b.seats = vec![];
            let usage = BTreeMap::from([("api_calls".to_string(), Decimal::from(calls))]);
            let lines = super::super::price(&b, &period, &usage).unwrap();
            let end = b.canceled_at.unwrap().min(period.end);
            // Fee × seconds first (exact), then one division: a quotient that is exactly
            // half a cent stays exact (dividing first rounded 965.5 down to 965.4999…).
            let active = Decimal::from((end - b.created_at).num_seconds());
            let want = round_minor(Decimal::from(3000) * active / Decimal::from(period.seconds())).unwrap();
            prop_assert_eq!(lines[0].amount_minor, want);
            prop_assert!((0..=3000).contains(&lines[0].amount_minor));
            prop_assert_eq!(lines[1].amount_minor, 0, "no seats held");
            // Calls: 100 included, then 1.00 each up to 1,000, 0.50 beyond; the 5.00
            // minimum is scaled by the active fraction.
            let billable_calls = (calls - 100).max(0);
            let exact = Decimal::from(billable_calls.min(1000))
                + Decimal::from((billable_calls - 1000).max(0)) * Decimal::new(5, 1);
            let minimum = round_minor(Decimal::from(500) * active / Decimal::from(period.seconds())).unwrap();
            prop_assert_eq!(lines[2].quantity, Decimal::from(calls));
            prop_assert_eq!(lines[2].amount_minor, round_minor(exact).unwrap().max(minimum));
        }
    }
}
