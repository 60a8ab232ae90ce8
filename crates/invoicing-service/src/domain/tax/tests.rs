use super::*;
use proptest::prelude::*;

fn rate(country: &str, region: Option<&str>, pct: &str, inclusive: bool) -> TaxRate {
    TaxRate {
        id: format!("txr_{country}_{}", region.unwrap_or("all")),
        name: "VAT".into(),
        country: country.into(),
        region: region.map(Into::into),
        percentage: pct.parse().unwrap(),
        inclusive,
    }
}

fn parties<'a>(seller: &'a str, buyer: &'a str, tax_id: Option<&'a str>) -> Parties<'a> {
    Parties {
        seller_country: seller,
        buyer_country: buyer,
        buyer_region: None,
        buyer_tax_id: tax_id,
        buyer_exempt: false,
    }
}

#[test]
fn treatment_follows_the_rules_in_order() {
    let rates = [
        rate("DE", None, "19", false),
        rate("FR", None, "20", false),
        rate("US", Some("NY"), "8.875", false),
        rate("US", None, "0", false),
    ];
    let t = |p: &Parties<'_>| Treatment::of(p, &rates);
    // Exempt beats everything.
    let exempt = Parties {
        buyer_exempt: true,
        ..parties("DE", "FR", Some("FR123"))
    };
    assert_eq!(t(&exempt), Treatment::Exempt);
    assert_eq!(t(&exempt).notice(), Some(EXEMPT_NOTICE));
    // Two EU states and a VAT id: reverse charge with its notice.
    let rc = t(&parties("DE", "FR", Some("FR40303265045")));
    assert_eq!(rc, Treatment::ReverseCharge);
    assert_eq!(rc.notice(), Some(REVERSE_CHARGE_NOTICE));
    // Same state, no VAT id, a blank one, or a buyer outside the EU: the buyer's rate.
    assert_eq!(
        t(&parties("DE", "DE", Some("DE1"))),
        Treatment::Rate(rates[0].clone())
    );
    assert_eq!(
        t(&parties("DE", "FR", None)),
        Treatment::Rate(rates[1].clone())
    );
    assert_eq!(
        t(&parties("DE", "FR", Some("  "))),
        Treatment::Rate(rates[1].clone())
    );
    // A region's rate before the country's; an unknown region gets the country's.
    let ny = Parties {
        buyer_region: Some("NY"),
        ..parties("DE", "US", Some("12-3456789"))
    };
    assert_eq!(t(&ny), Treatment::Rate(rates[2].clone()));
    let tx = Parties {
        buyer_region: Some("TX"),
        ..ny.clone()
    };
    assert_eq!(t(&tx), Treatment::Rate(rates[3].clone()));
    // Nowhere configured: untaxed, no notice.
    assert_eq!(t(&parties("DE", "JP", None)), Treatment::Untaxed);
    assert_eq!(Treatment::Untaxed.notice(), None);
}

#[test]
fn lines_round_half_away_from_zero_once() {
    let vat = rate("DE", None, "19", false);
    assert_eq!(
        vat.line(1000).unwrap(),
        TaxedLine {
            net: 1000,
            tax: 190,
            gross: 1190
        }
    );
    let five = rate("DE", None, "5", false);
    assert_eq!(five.line(10).unwrap().tax, 1, "0.5 rounds up");
    assert_eq!(five.line(-10).unwrap().tax, -1, "-0.5 rounds down");
    assert_eq!(five.line(9).unwrap().tax, 0, "0.45 rounds to 0");
    let inclusive = rate("DE", None, "19", true);
    assert_eq!(
        inclusive.line(1190).unwrap(),
        TaxedLine {
            net: 1000,
            tax: 190,
            gross: 1190
        }
    );
    // 1 ÷ 1.19 = 0.84…: net 1, tax 0.
    assert_eq!(inclusive.line(1).unwrap().net, 1);
    for bad in ["-1", "100.5", "7.12345"] {
        let r = rate("DE", None, bad, false);
        assert_eq!(r.line(100), Err(TaxError::Percentage(r.id.clone())));
    }
}

#[test]
fn untaxed_treatments_pass_amounts_through_with_their_notice() {
    for t in [
        Treatment::Exempt,
        Treatment::ReverseCharge,
        Treatment::Untaxed,
    ] {
        let taxed = tax_lines(&[1000, -250], Currency::EUR, &t).unwrap();
        assert_eq!(
            taxed.totals,
            TaxedLine {
                net: 750,
                tax: 0,
                gross: 750
            }
        );
        assert_eq!(taxed.summary.len(), 1);
        assert_eq!(taxed.summary[0].rate, None);
        assert_eq!(taxed.notice, t.notice());
    }
}

/// The reference: the same rules in integer arithmetic only (no `Decimal`), the rate in
/// ten-thousandths of a percent.
fn reference(amount: i64, pct_e4: i64, inclusive: bool) -> TaxedLine {
    fn round_half_away(num: i128, den: i128) -> i64 {
        let (q, r) = (num / den, num % den);
        let q = if 2 * r.abs() >= den {
            q + num.signum()
        } else {
            q
        };
        i64::try_from(q).unwrap()
    }
    let a = i128::from(amount);
    if inclusive {
        let net = round_half_away(a * 1_000_000, 1_000_000 + i128::from(pct_e4));
        TaxedLine {
            net,
            tax: amount - net,
            gross: amount,
        }
    } else {
        let tax = round_half_away(a * i128::from(pct_e4), 1_000_000);
        TaxedLine {
            net: amount,
            tax,
            gross: amount + tax,
        }
    }
}

proptest! {
    #[test]
    fn lines_equal_the_integer_reference(
        amounts in proptest::collection::vec(-10_000_000_000i64..10_000_000_000, 1..40),
        pct_e4 in 0i64..=1_000_000,
        inclusive in any::<bool>(),
        currency in prop::sample::select(vec!["JPY", "EUR", "KWD"]),
    ) {
        let currency = Currency::parse(currency).unwrap();
        let r = TaxRate {
            percentage: Decimal::new(pct_e4, 4),
            ..rate("DE", None, "0", inclusive)
        };
        let taxed = tax_lines(&amounts, currency, &Treatment::Rate(r.clone())).unwrap();
        let mut sum = TaxedLine::default();
        for (line, &amount) in taxed.lines.iter().zip(&amounts) {
            let want = reference(amount, pct_e4, inclusive);
            prop_assert_eq!(*line, want, "amount {}", amount);
            prop_assert_eq!(line.net + line.tax, line.gross);
            // A credit is taxed as the exact negative of the charge.
            let neg = r.line(-amount).unwrap();
            prop_assert_eq!((neg.net, neg.tax, neg.gross), (-line.net, -line.tax, -line.gross));
            sum.net += line.net;
            sum.tax += line.tax;
            sum.gross += line.gross;
        }
        prop_assert_eq!(taxed.totals, sum);
        prop_assert_eq!(taxed.currency, currency);
        prop_assert_eq!(taxed.summary.len(), 1);
        prop_assert_eq!((taxed.summary[0].net, taxed.summary[0].tax), (sum.net, sum.tax));
        prop_assert_eq!(taxed.summary[0].rate.as_ref(), Some(&r));
    }
}

proptest! {
    /// Exact halves (rare among random amounts) round away from zero, both ways.
    #[test]
    fn halves_round_away_from_zero(k in -1_000_000i64..1_000_000) {
        let odd = 2 * k + 1;
        // 5 % of 10 × odd is odd / 2.
        let tax = rate("DE", None, "5", false).line(10 * odd).unwrap().tax;
        prop_assert_eq!(tax, odd / 2 + odd.signum());
        // 100 % inclusive: the net is half the gross.
        let line = rate("DE", None, "100", true).line(odd).unwrap();
        prop_assert_eq!(line.net, odd / 2 + odd.signum());
        prop_assert_eq!(line.net, reference(odd, 1_000_000, true).net);
    }
}
