use super::*;
use proptest::prelude::*;

fn d(v: i64) -> Decimal {
    Decimal::from(v)
}

fn tiers(spec: &[(Option<i64>, i64, i64)]) -> Vec<Tier> {
    spec.iter()
        .map(|&(up_to, unit, flat)| Tier {
            up_to: up_to.map(d),
            unit_amount: d(unit),
            flat_amount: d(flat),
        })
        .collect()
}

fn metered(model: PriceModel) -> Price {
    Price {
        id: "p".into(),
        kind: ChargeKind::Metered,
        metric: Some("api_calls".into()),
        model,
        included_quantity: Decimal::ZERO,
        minimum_amount_minor: None,
        billing: None,
    }
}

/// Three tiers: 1..=10 at 100, 11..=50 at 80 (+500 flat), beyond at 50.
fn three() -> Vec<Tier> {
    tiers(&[(Some(10), 100, 0), (Some(50), 80, 500), (None, 50, 0)])
}

#[test]
fn graduated_at_and_around_boundaries() {
    let m = PriceModel::Graduated { tiers: three() };
    let at = |q: i64| m.exact_amount(d(q)).unwrap();
    assert_eq!(at(0), d(0));
    assert_eq!(at(1), d(100));
    assert_eq!(at(10), d(1000));
    assert_eq!(at(11), d(1000 + 80 + 500));
    assert_eq!(at(50), d(1000 + 40 * 80 + 500));
    assert_eq!(at(51), d(1000 + 40 * 80 + 500 + 50));
    // A fractional quantity past a bound touches the next tier.
    assert_eq!(
        m.exact_amount("10.5".parse().unwrap()).unwrap(),
        d(1000 + 40 + 500)
    );
}

#[test]
fn volume_at_and_around_boundaries() {
    let m = PriceModel::Volume { tiers: three() };
    let at = |q: i64| m.exact_amount(d(q)).unwrap();
    assert_eq!(at(0), d(0));
    assert_eq!(at(10), d(1000));
    assert_eq!(at(11), d(11 * 80 + 500));
    assert_eq!(at(50), d(50 * 80 + 500));
    assert_eq!(at(51), d(51 * 50));
}

#[test]
fn package_rounds_up_started_packages() {
    let m = PriceModel::Package {
        package_size: d(100),
        package_amount: d(500),
    };
    assert_eq!(m.exact_amount(d(0)).unwrap(), d(0));
    assert_eq!(m.exact_amount(d(1)).unwrap(), d(500));
    assert_eq!(m.exact_amount(d(100)).unwrap(), d(500));
    assert_eq!(m.exact_amount(d(101)).unwrap(), d(1000));
}

#[test]
fn included_then_round_then_minimum() {
    let mut p = metered(PriceModel::PerUnit {
        unit_amount: "0.25".parse().unwrap(),
    });
    p.included_quantity = d(1000);
    p.minimum_amount_minor = Some(100);
    // Within the included units: zero, raised to the minimum.
    let l = p.charge(d(900)).unwrap();
    assert_eq!(
        (l.billable_quantity, l.amount_minor, l.minimum_applied),
        (d(0), 100, true)
    );
    // 1,002 billable units × 0.25 = 250.5 → 251 (half away from zero).
    let l = p.charge(d(2002)).unwrap();
    assert_eq!(l.exact_minor, "250.50".parse().unwrap());
    assert_eq!((l.amount_minor, l.minimum_applied), (251, false));
    assert!(matches!(
        p.charge(d(-1)),
        Err(PricingError::NegativeQuantity(_))
    ));
}

#[test]
fn flat_ignores_quantity() {
    let p = Price {
        kind: ChargeKind::Flat,
        metric: None,
        ..metered(PriceModel::Flat { amount: d(4900) })
    };
    assert_eq!(p.charge(d(1)).unwrap().amount_minor, 4900);
    assert_eq!(p.charge(d(0)).unwrap().amount_minor, 4900);
}

#[test]
fn invalid_definitions_name_the_field() {
    let bad = [
        (PriceModel::Graduated { tiers: vec![] }, "tiers"),
        (
            PriceModel::Graduated {
                tiers: tiers(&[(Some(10), 1, 0), (Some(10), 1, 0), (None, 1, 0)]),
            },
            "tiers.up_to",
        ),
        (
            PriceModel::Volume {
                tiers: tiers(&[(Some(10), 1, 0)]),
            },
            "tiers.up_to",
        ),
        (
            PriceModel::Volume {
                tiers: tiers(&[(None, 1, 0), (None, 1, 0)]),
            },
            "tiers.up_to",
        ),
        (
            PriceModel::Volume {
                tiers: tiers(&[(None, -1, 0)]),
            },
            "tiers.unit_amount",
        ),
        (
            PriceModel::Package {
                package_size: d(0),
                package_amount: d(1),
            },
            "package_size",
        ),
        (PriceModel::Flat { amount: d(-5) }, "amount"),
    ];
    for (model, field) in bad {
        match model.validate() {
            Err(PricingError::Invalid { field: f, .. }) => assert_eq!(f, field, "{model:?}"),
            other => panic!("{model:?}: {other:?}"),
        }
    }
    let mut p = metered(PriceModel::PerUnit { unit_amount: d(1) });
    p.metric = None;
    assert!(p.validate().is_err());
    p.kind = ChargeKind::Seat;
    assert!(p.validate().is_ok());
}

#[test]
fn json_shape_is_stable() {
    let p = metered(PriceModel::Graduated {
        tiers: tiers(&[(Some(10), 100, 0), (None, 50, 0)]),
    });
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["model"]["type"], "graduated");
    assert_eq!(v["model"]["tiers"][0]["up_to"], "10");
    let back: Price = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
}

// ---- property tests against a unit-by-unit reference ----

/// Integer tier bounds, ascending, the last unbounded.
fn arb_tiers() -> impl Strategy<Value = Vec<Tier>> {
    prop::collection::vec((1i64..40, 0i64..1000, 0i64..300), 1..5).prop_map(|steps| {
        let mut bound = 0;
        let n = steps.len();
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (step, unit, flat))| {
                bound += step;
                Tier {
                    up_to: (i + 1 < n).then(|| d(bound)),
                    unit_amount: d(unit),
                    flat_amount: d(flat),
                }
            })
            .collect()
    })
}

/// The tier unit number `n` (1-based) or a total of `n` falls in.
fn tier_of(tiers: &[Tier], n: i64) -> usize {
    tiers
        .iter()
        .position(|t| t.up_to.is_none_or(|u| d(n) <= u))
        .unwrap()
}

fn reference_graduated(tiers: &[Tier], q: i64) -> Decimal {
    let mut total = Decimal::ZERO;
    let mut touched = vec![false; tiers.len()];
    for unit in 1..=q {
        let i = tier_of(tiers, unit);
        total += tiers[i].unit_amount;
        touched[i] = true;
    }
    for (i, t) in tiers.iter().enumerate() {
        if touched[i] {
            total += t.flat_amount;
        }
    }
    total
}

fn reference_volume(tiers: &[Tier], q: i64) -> Decimal {
    if q == 0 {
        return Decimal::ZERO;
    }
    let t = &tiers[tier_of(tiers, q)];
    t.unit_amount * d(q) + t.flat_amount
}

fn reference_package(size: i64, amount: i64, q: i64) -> Decimal {
    let (mut packages, mut left) = (0, q);
    while left > 0 {
        packages += 1;
        left -= size;
    }
    d(packages * amount)
}

proptest! {
    #[test]
    fn graduated_matches_reference(t in arb_tiers(), q in 0i64..200) {
        let m = PriceModel::Graduated { tiers: t.clone() };
        m.validate().unwrap();
        prop_assert_eq!(m.exact_amount(d(q)).unwrap(), reference_graduated(&t, q));
    }

    #[test]
    fn volume_matches_reference(t in arb_tiers(), q in 0i64..200) {
        let m = PriceModel::Volume { tiers: t.clone() };
        m.validate().unwrap();
        prop_assert_eq!(m.exact_amount(d(q)).unwrap(), reference_volume(&t, q));
    }

    #[test]
    fn package_matches_reference(size in 1i64..50, amount in 0i64..1000, q in 0i64..500) {
        let m = PriceModel::Package { package_size: d(size), package_amount: d(amount) };
        prop_assert_eq!(m.exact_amount(d(q)).unwrap(), reference_package(size, amount, q));
    }

    /// Graduated with non-negative prices never decreases as the quantity grows.
    #[test]
    fn graduated_is_monotonic(t in arb_tiers(), q in 0i64..200) {
        let m = PriceModel::Graduated { tiers: t };
        prop_assert!(m.exact_amount(d(q)).unwrap() <= m.exact_amount(d(q + 1)).unwrap());
    }

    /// Included units and the minimum behave as written: charge(q) prices max(0, q − incl),
    /// rounds once, and never goes below the minimum.
    #[test]
    fn included_and_minimum(
        t in arb_tiers(),
        q in 0i64..200,
        included in 0i64..60,
        min in prop::option::of(0i64..5000),
        unit_millis in 0i64..100_000,
    ) {
        for model in [
            PriceModel::Graduated { tiers: t.clone() },
            PriceModel::Volume { tiers: t.clone() },
            PriceModel::PerUnit { unit_amount: Decimal::new(unit_millis, 3) },
        ] {
            let p = Price {
                included_quantity: d(included),
                minimum_amount_minor: min,
                billing: None,
                ..metered(model.clone())
            };
            p.validate().unwrap();
            let l = p.charge(d(q)).unwrap();
            let billable = (q - included).max(0);
            let exact = match &model {
                PriceModel::Graduated { tiers } => reference_graduated(tiers, billable),
                PriceModel::Volume { tiers } => reference_volume(tiers, billable),
                _ => Decimal::new(unit_millis, 3) * d(billable),
            };
            prop_assert_eq!(l.exact_minor, exact);
            let rounded = round_minor(exact).unwrap();
            prop_assert!((Decimal::from(rounded) - exact).abs() <= Decimal::new(5, 1));
            prop_assert_eq!(l.amount_minor, rounded.max(min.unwrap_or(i64::MIN)));
            prop_assert_eq!(l.minimum_applied, min.is_some_and(|m| rounded < m));
        }
    }

    /// Huge inputs are an error, never a panic.
    #[test]
    fn overflow_is_an_error(unit in any::<i64>(), q in any::<i64>()) {
        let p = metered(PriceModel::PerUnit { unit_amount: d(unit.saturating_abs()) });
        match p.charge(d(q.saturating_abs())) {
            Ok(l) => prop_assert!(l.amount_minor >= 0),
            Err(e) => prop_assert_eq!(e, PricingError::Overflow),
        }
    }
}

#[test]
fn flat_and_seat_prices_bill_in_advance_and_metered_ones_in_arrears_by_default() {
    let mut p = metered(PriceModel::Flat {
        amount: Decimal::from(100),
    });
    p.kind = ChargeKind::Flat;
    p.metric = None;
    assert_eq!(p.timing(), crate::Timing::Advance);
    p.billing = Some(crate::Timing::Arrears);
    assert_eq!(p.timing(), crate::Timing::Arrears);
    let mut m = p.clone();
    m.kind = ChargeKind::Metered;
    m.metric = Some("api_calls".into());
    m.billing = None;
    assert_eq!(m.timing(), crate::Timing::Arrears);
    m.billing = Some(crate::Timing::Advance);
    let e = m.validate().unwrap_err();
    assert!(e.to_string().contains("billing"), "{e}");
}
