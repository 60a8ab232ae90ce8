//! The sample invoice: 20 lines, a German seller, a buyer with Latin, Greek and Cyrillic in its
//! name, VAT at 19 %. It is `docs/sample-invoice.pdf` (a test keeps that file equal to what
//! the renderer makes) and the document the invoicing benchmark renders.

use chrono::{DateTime, Utc};
use pricing::{Currency, Decimal};

use super::{Fonts, Rendered, Sheet, SheetLine, render};
use crate::domain::lifecycle::Kind;
use crate::domain::parties::{Party, RateSnapshot, SummarySnapshot};
use crate::domain::tax::{TaxRate, Treatment, tax_lines};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("a valid instant")
        .to_utc()
}

/// Renders the sample invoice.
pub fn sample_invoice(fonts: &Fonts) -> Rendered {
    let seller = Party {
        name: "Example SaaS GmbH".into(),
        address_lines: vec!["Friedrichstraße 123".into(), "10117 Berlin".into()],
        country: "DE".into(),
        tax_id: Some("DE123456789".into()),
        ..Party::default()
    };
    let buyer = Party {
        name: "Ωmega Analytics — ООО «Жар-птица» Köln".into(),
        address_lines: vec!["Domkloster 4".into(), "50667 Köln".into()],
        country: "DE".into(),
        email: Some("rechnungen@omega.example".into()),
        ..Party::default()
    };
    let rate = TaxRate {
        id: "txr_de".into(),
        name: "USt.".into(),
        country: "DE".into(),
        region: None,
        percentage: Decimal::from(19),
        inclusive: false,
    };
    let items: Vec<(String, Decimal, Decimal)> = (0..20)
        .map(|i| match i {
            0 => (
                "Pro plan — monthly fee".to_string(),
                Decimal::ONE,
                Decimal::from(9900),
            ),
            1 => (
                "Seats (12 × Pro)".to_string(),
                Decimal::from(12),
                Decimal::from(1500),
            ),
            _ => (
                format!("API calls, region {}", ["eu-1", "us-2", "ap-3"][i % 3]),
                Decimal::from(1000 + 37 * i as i64),
                Decimal::new(45, 1),
            ),
        })
        .collect();
    let amounts: Vec<i64> = items
        .iter()
        .map(|(_, q, u)| pricing::round_minor(q * u).expect("sample amounts fit"))
        .collect();
    let treatment = Treatment::Rate(rate.clone());
    let taxed = tax_lines(&amounts, Currency::EUR, &treatment).expect("sample tax");
    let summary = vec![SummarySnapshot {
        rate: Some(RateSnapshot {
            id: rate.id.clone(),
            name: rate.name.clone(),
            country: rate.country.clone(),
            region: None,
            percentage: rate.percentage,
            inclusive: false,
        }),
        net: taxed.totals.net,
        tax: taxed.totals.tax,
    }];
    let sheet = Sheet {
        kind: Kind::Invoice,
        number: "INV-2026-000123",
        issued_at: at("2026-12-01T09:00:00Z"),
        due_at: Some(at("2026-12-31T09:00:00Z")),
        period_start: at("2026-11-01T00:00:00Z"),
        period_end: Some(at("2026-12-01T00:00:00Z")),
        follows: None,
        seller: &seller,
        buyer: &buyer,
        currency: Currency::EUR,
        lines: items
            .iter()
            .zip(&taxed.lines)
            .map(|((d, q, u), t)| SheetLine {
                description: d,
                quantity: *q,
                unit_amount: Some(*u),
                net: t.net,
                tax: t.tax,
            })
            .collect(),
        summary: &summary,
        totals: taxed.totals,
        amount_due: taxed.totals.gross,
        paid: false,
        notice: None,
    };
    render(fonts, &sheet)
}
