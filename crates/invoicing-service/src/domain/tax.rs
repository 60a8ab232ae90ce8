//! Tax on an invoice: which treatment a customer gets, and the tax of each line.
//!
//! # Rules (a finance person can check these)
//!
//! 1. **Treatment.** A tax-exempt customer pays no tax ("Tax exempt" on the invoice). Else,
//!    seller and buyer in two different EU member states with the buyer's VAT id on file: EU
//!    B2B **reverse charge**, 0 % and the legal notice. Else the operator's rate for the
//!    buyer's country and region; a country-wide rate when no rate names the region; no rate
//!    at all: no tax.
//! 2. **Per line.** Each line's tax is computed and rounded on its own, to the currency's
//!    minor unit, half away from zero (a credit's tax is the exact negative of the same
//!    charge's tax).
//!    - *Exclusive* rate: the line amount is the net; tax = round(net × rate); gross = net + tax.
//!    - *Inclusive* rate: the line amount is the gross; net = round(gross ÷ (1 + rate));
//!      tax = gross − net, so net + tax = gross exactly.
//! 3. **Summary.** Per rate, the sum of its lines' nets and taxes; the invoice's totals are
//!    the sums of its lines. Nothing is rounded twice.

use pricing::{Currency, Decimal, PricingError, round_minor};

/// An operator-configured tax rate (`/v1/tax_rates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxRate {
    pub id: String,
    /// As printed on the invoice ("VAT", "GST", "Sales tax").
    pub name: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    /// A region within the country (a state, a province), or none for the whole country.
    pub region: Option<String>,
    /// Percent: `19` is 19 %, `8.875` is 8.875 %. 0 to 100, at most four decimals.
    pub percentage: Decimal,
    /// Whether line amounts already include this tax.
    pub inclusive: bool,
}

/// What the invoice needs to know about its buyer and seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties<'a> {
    pub seller_country: &'a str,
    pub buyer_country: &'a str,
    pub buyer_region: Option<&'a str>,
    pub buyer_tax_id: Option<&'a str>,
    pub buyer_exempt: bool,
}

/// How an invoice's lines are taxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Treatment {
    Exempt,
    ReverseCharge,
    Rate(TaxRate),
    /// No rate configured where the buyer is.
    Untaxed,
}

/// The legal notice printed for an EU B2B reverse charge.
pub const REVERSE_CHARGE_NOTICE: &str = "Reverse charge: VAT to be accounted for by the \
     recipient (Article 196, Council Directive 2006/112/EC).";
/// The notice printed for a tax-exempt buyer.
pub const EXEMPT_NOTICE: &str = "Tax exempt.";

/// EU member states (ISO 3166-1 alpha-2; Greece is GR here, EL in VAT ids).
const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

pub fn in_eu(country: &str) -> bool {
    EU.contains(&country)
}

impl Treatment {
    /// The treatment `parties` get under `rates` (rule 1).
    pub fn of(parties: &Parties<'_>, rates: &[TaxRate]) -> Treatment {
        if parties.buyer_exempt {
            return Treatment::Exempt;
        }
        let has_vat_id = parties.buyer_tax_id.is_some_and(|t| !t.trim().is_empty());
        if in_eu(parties.seller_country)
            && in_eu(parties.buyer_country)
            && parties.seller_country != parties.buyer_country
            && has_vat_id
        {
            return Treatment::ReverseCharge;
        }
        let in_country = |r: &&TaxRate| r.country == parties.buyer_country;
        let regional = rates
            .iter()
            .filter(in_country)
            .find(|r| r.region.is_some() && r.region.as_deref() == parties.buyer_region);
        let national = || rates.iter().filter(in_country).find(|r| r.region.is_none());
        match regional.or_else(national) {
            Some(r) => Treatment::Rate(r.clone()),
            None => Treatment::Untaxed,
        }
    }

    /// The notice the invoice prints for this treatment, if any.
    pub fn notice(&self) -> Option<&'static str> {
        match self {
            Treatment::Exempt => Some(EXEMPT_NOTICE),
            Treatment::ReverseCharge => Some(REVERSE_CHARGE_NOTICE),
            Treatment::Rate(_) | Treatment::Untaxed => None,
        }
    }
}

/// One line, taxed: amounts in the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaxedLine {
    pub net: i64,
    pub tax: i64,
    pub gross: i64,
}

/// A rate's part of the invoice (rule 3); `rate` is `None` for untaxed lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSummary {
    pub rate: Option<TaxRate>,
    pub net: i64,
    pub tax: i64,
}

/// The lines of an invoice, taxed, with the summary and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxed {
    pub currency: Currency,
    pub lines: Vec<TaxedLine>,
    pub summary: Vec<RateSummary>,
    pub totals: TaxedLine,
    pub notice: Option<&'static str>,
}

/// Why tax could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxError {
    #[error("tax rate {0}: the percentage must be 0 to 100 with at most four decimals")]
    Percentage(String),
    #[error("amounts beyond what an invoice can hold")]
    Overflow,
}

impl From<PricingError> for TaxError {
    fn from(_: PricingError) -> TaxError {
        TaxError::Overflow
    }
}

impl TaxRate {
    /// Checks the percentage (0–100, at most four decimals).
    pub fn check(&self) -> Result<(), TaxError> {
        let p = self.percentage;
        if p.is_sign_negative() || p > Decimal::ONE_HUNDRED || p.normalize().scale() > 4 {
            return Err(TaxError::Percentage(self.id.clone()));
        }
        Ok(())
    }

    /// Taxes one line amount, in minor units (rule 2): the arithmetic is the same in every
    /// currency, since amounts are already whole minor units.
    pub fn line(&self, amount: i64) -> Result<TaxedLine, TaxError> {
        self.check()?;
        let amount_d = Decimal::from(amount);
        let hundred = Decimal::ONE_HUNDRED;
        if self.inclusive {
            let exact_net = amount_d
                .checked_mul(hundred)
                .and_then(|x| x.checked_div(hundred + self.percentage))
                .ok_or(TaxError::Overflow)?;
            let net = round_minor(exact_net)?;
            Ok(TaxedLine {
                net,
                tax: amount.checked_sub(net).ok_or(TaxError::Overflow)?,
                gross: amount,
            })
        } else {
            let exact_tax = amount_d
                .checked_mul(self.percentage)
                .and_then(|x| x.checked_div(hundred))
                .ok_or(TaxError::Overflow)?;
            let tax = round_minor(exact_tax)?;
            Ok(TaxedLine {
                net: amount,
                tax,
                gross: amount.checked_add(tax).ok_or(TaxError::Overflow)?,
            })
        }
    }
}

/// Taxes every line of an invoice under `treatment` and sums them (rules 2 and 3).
pub fn tax_lines(
    amounts: &[i64],
    currency: Currency,
    treatment: &Treatment,
) -> Result<Taxed, TaxError> {
    let rate = match treatment {
        Treatment::Rate(r) => Some(r),
        _ => None,
    };
    let mut lines = Vec::with_capacity(amounts.len());
    let mut totals = TaxedLine::default();
    for &amount in amounts {
        let line = match rate {
            Some(r) => r.line(amount)?,
            None => TaxedLine {
                net: amount,
                tax: 0,
                gross: amount,
            },
        };
        let add = |a: i64, b: i64| a.checked_add(b).ok_or(TaxError::Overflow);
        totals = TaxedLine {
            net: add(totals.net, line.net)?,
            tax: add(totals.tax, line.tax)?,
            gross: add(totals.gross, line.gross)?,
        };
        lines.push(line);
    }
    let summary = vec![RateSummary {
        rate: rate.cloned(),
        net: totals.net,
        tax: totals.tax,
    }];
    Ok(Taxed {
        currency,
        lines,
        summary,
        totals,
        notice: treatment.notice(),
    })
}

#[cfg(test)]
mod tests;
