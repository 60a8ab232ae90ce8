use test_support::pdftotext;

use super::*;
use crate::domain::parties::RateSnapshot;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn seller() -> Party {
    Party {
        name: "Operator GmbH".into(),
        address_lines: vec!["Unter den Linden 1".into(), "10117 Berlin".into()],
        country: "DE".into(),
        tax_id: Some("DE811111111".into()),
        ..Party::default()
    }
}

fn buyer() -> Party {
    Party {
        name: "Jürgen Łukasiewicz & Ωmega — ООО «Жар-птица»".into(),
        address_lines: vec!["Champs-Élysées 5".into()],
        country: "FR".into(),
        tax_id: Some("FR12345678901".into()),
        email: Some("ap@example.fr".into()),
        ..Party::default()
    }
}

fn summary() -> Vec<SummarySnapshot> {
    vec![SummarySnapshot {
        rate: Some(RateSnapshot {
            id: "txr_1".into(),
            name: "VAT".into(),
            country: "FR".into(),
            region: None,
            percentage: Decimal::from(20),
            inclusive: false,
        }),
        net: 0,
        tax: 0,
    }]
}

fn sheet<'a>(
    seller: &'a Party,
    buyer: &'a Party,
    summary: &'a [SummarySnapshot],
    n: usize,
) -> Sheet<'a> {
    let lines: Vec<SheetLine<'a>> = (0..n)
        .map(|i| SheetLine {
            description: if i % 2 == 0 {
                "Pro plan (monthly fee)"
            } else {
                "API calls — metered usage beyond the included allowance of the plan"
            },
            quantity: Decimal::from(i as i64 + 1),
            unit_amount: Some(Decimal::new(5, 1)),
            net: 1000 + i as i64,
            tax: 200,
        })
        .collect();
    Sheet {
        kind: Kind::Invoice,
        number: "INV-2026-000042",
        issued_at: at("2026-12-01T00:00:00Z"),
        due_at: Some(at("2026-12-31T00:00:00Z")),
        period_start: at("2026-11-01T00:00:00Z"),
        period_end: Some(at("2026-12-01T00:00:00Z")),
        follows: None,
        seller,
        buyer,
        currency: Currency::EUR,
        lines,
        summary,
        totals: TaxedLine {
            net: 1000,
            tax: 200,
            gross: 1200,
        },
        amount_due: 1200,
        paid: false,
        notice: Some(crate::domain::tax::REVERSE_CHARGE_NOTICE),
    }
}

#[test]
fn an_invoice_reads_back_with_its_names_numbers_and_totals() {
    let (s, b, sum) = (seller(), buyer(), summary());
    let pdf = render(&Fonts::embedded(), &sheet(&s, &b, &sum, 3));
    assert!(pdf.bytes.starts_with(b"%PDF-"));
    assert_eq!(pdf.pages, 1);
    let text = pdftotext(&pdf.bytes);
    // pdftotext -layout keeps each printed line; the long name wraps onto two.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "Invoice",
        "INV-2026-000042",
        "Operator GmbH",
        "Jürgen Łukasiewicz & Ωmega — ООО «Жар-птица»",
        "Champs-Élysées 5",
        "VAT / tax id: FR12345678901",
        "2026-12-31",
        "2026-11-01 – 2026-12-01",
        "Pro plan (monthly fee)",
        "0.005 EUR",
        "10.02 EUR",
        "Amount due",
        "12.00 EUR",
        "Payment due by 2026-12-31",
        "Reverse charge",
        "Page 1 of 1",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

#[test]
fn a_re_render_is_byte_identical() {
    let (s, b, sum) = (seller(), buyer(), summary());
    let fonts = Fonts::embedded();
    let one = render(&fonts, &sheet(&s, &b, &sum, 20));
    let two = render(&Fonts::embedded(), &sheet(&s, &b, &sum, 20));
    assert_eq!(one.sha256, two.sha256);
    assert!(one.bytes == two.bytes);
    let mut other = sheet(&s, &b, &sum, 20);
    other.number = "INV-2026-000043";
    assert_ne!(render(&fonts, &other).sha256, one.sha256);
}

#[test]
fn five_hundred_lines_break_across_pages_with_headers_and_page_numbers() {
    let (s, b, sum) = (seller(), buyer(), summary());
    let pdf = render(&Fonts::embedded(), &sheet(&s, &b, &sum, 500));
    assert!(pdf.pages >= 12, "{} pages", pdf.pages);
    let text = pdftotext(&pdf.bytes);
    let pages: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert_eq!(pages.len(), pdf.pages);
    for (i, page) in pages.iter().enumerate() {
        let footer = format!("Page {} of {}", i + 1, pdf.pages);
        assert!(page.contains(&footer), "page {}: {page}", i + 1);
        if page.contains("Pro plan") {
            assert!(
                page.contains("Description"),
                "page {} lacks the header",
                i + 1
            );
        }
    }
    // Every line is printed once: the amounts run 10.00 … 14.99.
    for i in [0, 1, 250, 499] {
        let amount = format!("{}.{:02} EUR", (1000 + i) / 100, (1000 + i) % 100);
        assert!(text.contains(&amount), "{amount}");
    }
    assert!(pages.last().unwrap().contains("Amount due"));
}

#[test]
fn pagination_keeps_rows_above_the_footer() {
    let first = capacity(FIRST_TABLE);
    let next = capacity(NEXT_TABLE);
    assert!(FIRST_TABLE - ROW - 1.5 - (first - 1) as f32 * ROW >= BOTTOM - 1.5);
    assert_eq!(paginate(0, 6, FIRST_TABLE), (vec![0], false));
    assert_eq!(paginate(first, 1, FIRST_TABLE), (vec![first], true));
    assert_eq!(paginate(first + 1, 1, FIRST_TABLE), (vec![first, 1], false));
    let (pages, _) = paginate(500, 6, FIRST_TABLE);
    assert_eq!(pages.iter().sum::<usize>(), 500);
    assert!(pages[1..pages.len() - 1].iter().all(|&p| p == next));
}

/// `docs/sample-invoice.pdf` is what the renderer makes today. After a deliberate layout
/// change: `cargo run -p invoicing-service --example sample_invoice`, and look at it.
#[test]
fn the_committed_sample_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sample-invoice.pdf");
    let committed = std::fs::read(path).expect("docs/sample-invoice.pdf is committed");
    let fresh = sample_invoice(&Fonts::embedded());
    assert!(
        committed == fresh.bytes,
        "docs/sample-invoice.pdf is stale: regenerate it with the sample_invoice example"
    );
    let text = pdftotext(&committed);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains("Ωmega Analytics — ООО «Жар-птица» Köln"),
        "{text}"
    );
}
