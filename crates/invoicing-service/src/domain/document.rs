//! An invoice's (or credit note's) content: its lines with their tax, the tax summary, the
//! totals and the amount due, from a subscription period's charges and the buyer's tax
//! treatment (`tax.rs` has the rules).

use pricing::{Currency, Decimal};

use super::assembly::{Charge, PeriodCharges, PeriodKey};
use super::tax::{RateSummary, TaxError, TaxedLine, Treatment, tax_lines};

/// One line as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub charge_id: String,
    pub description: String,
    pub quantity: Decimal,
    /// Exact, in minor units, when the charge has one.
    pub unit_amount: Option<Decimal>,
    pub amount: TaxedLine,
}

/// What a document says, before it has a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub key: PeriodKey,
    pub currency: Currency,
    pub lines: Vec<Line>,
    pub summary: Vec<RateSummary>,
    pub totals: TaxedLine,
    /// What the buyer owes: the gross total (negative on a credit note).
    pub amount_due: i64,
    pub notice: Option<&'static str>,
}

/// The content of the document for `charges` (a period's, or those that arrived after its
/// invoice was finalized) under `treatment`.
pub fn content(
    key: PeriodKey,
    currency: Currency,
    charges: &[Charge],
    treatment: &Treatment,
) -> Result<Content, TaxError> {
    let amounts: Vec<i64> = charges.iter().map(|c| c.amount_minor).collect();
    let taxed = tax_lines(&amounts, currency, treatment)?;
    let lines = charges
        .iter()
        .zip(&taxed.lines)
        .map(|(c, t)| Line {
            charge_id: c.id.clone(),
            description: c.description.clone(),
            quantity: c.quantity,
            unit_amount: c.unit_amount,
            amount: *t,
        })
        .collect();
    Ok(Content {
        key,
        currency,
        lines,
        summary: taxed.summary,
        totals: taxed.totals,
        amount_due: taxed.totals.gross,
        notice: taxed.notice,
    })
}

/// The invoice of a whole period.
pub fn period_invoice(period: &PeriodCharges, treatment: &Treatment) -> Result<Content, TaxError> {
    content(
        period.key.clone(),
        period.currency,
        &period.charges,
        treatment,
    )
}

#[cfg(test)]
mod tests {
    use super::super::assembly::by_period;
    use super::super::tax::{REVERSE_CHARGE_NOTICE, TaxRate};
    use super::*;

    fn charges() -> Vec<Charge> {
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .to_utc();
        [
            ("chg_1", "advance", 4900),
            ("chg_2", "arrears", 1234),
            ("chg_3", "arrears", -1000),
        ]
        .into_iter()
        .map(|(id, part, amount)| Charge {
            id: id.into(),
            tenant_id: "ten_1".into(),
            subscription_id: "sub_1".into(),
            period_start: Some(start),
            period_end: None,
            part: part.into(),
            description: format!("{part} {id}"),
            quantity: Decimal::ONE,
            unit_amount: Some(Decimal::from(amount)),
            amount_minor: amount,
            currency: Currency::EUR,
        })
        .collect()
    }

    #[test]
    fn lines_keep_their_charges_and_totals_add_up() {
        let (periods, _) = by_period(charges()).unwrap();
        let vat = Treatment::Rate(TaxRate {
            id: "txr_de".into(),
            name: "VAT".into(),
            country: "DE".into(),
            region: None,
            percentage: Decimal::from(19),
            inclusive: false,
        });
        let c = period_invoice(&periods[0], &vat).unwrap();
        let ids: Vec<&str> = c.lines.iter().map(|l| l.charge_id.as_str()).collect();
        assert_eq!(ids, ["chg_1", "chg_2", "chg_3"]);
        // 931 + 234.46 (→ 234) − 190 = 975 of tax; each line rounded once.
        let taxes: Vec<i64> = c.lines.iter().map(|l| l.amount.tax).collect();
        assert_eq!(taxes, [931, 234, -190]);
        assert_eq!(
            c.totals,
            TaxedLine {
                net: 5134,
                tax: 975,
                gross: 6109
            }
        );
        assert_eq!(c.amount_due, 6109);
        assert_eq!((c.summary[0].net, c.summary[0].tax), (5134, 975));
        assert_eq!(c.notice, None);
    }

    #[test]
    fn reverse_charge_bills_net_with_the_notice() {
        let (periods, _) = by_period(charges()).unwrap();
        let c = period_invoice(&periods[0], &Treatment::ReverseCharge).unwrap();
        assert_eq!(c.amount_due, 5134);
        assert_eq!(c.totals.tax, 0);
        assert_eq!(c.notice, Some(REVERSE_CHARGE_NOTICE));
    }
}
