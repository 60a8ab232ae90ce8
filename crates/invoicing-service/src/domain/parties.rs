//! Who is on an invoice — the seller (the operator, from configuration) and the buyer (the
//! tenant's billing profile) — the checks a profile or tax rate passes before it is stored,
//! and what a finalized document keeps of them ([`Snapshot`]), so that a later change to a
//! profile or rate never alters an issued invoice.

use pricing::Decimal;
use serde::{Deserialize, Serialize};

use super::tax::{RateSummary, TaxRate};

/// A seller or buyer as printed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Party {
    pub name: String,
    pub address_lines: Vec<String>,
    /// ISO 3166-1 alpha-2, upper case; empty when unknown.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A tenant's billing profile: the buyer on its invoices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingProfile {
    pub party: Party,
    pub tax_exempt: bool,
}

/// A field that fails its check, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

/// Printable text of at most `max` characters (no control characters: they would corrupt the
/// PDF and the logs).
fn text(field: &'static str, v: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(invalid(field, format!("{min} to {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field, "control characters are not allowed"));
    }
    Ok(())
}

/// An ISO 3166-1 alpha-2 code, upper case.
pub fn check_country(field: &'static str, v: &str) -> Result<(), Invalid> {
    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(field, "an ISO 3166-1 alpha-2 code, e.g. DE"))
    }
}

fn optional(field: &'static str, v: &Option<String>, max: usize) -> Result<(), Invalid> {
    v.as_deref().map_or(Ok(()), |v| text(field, v, 1, max))
}

impl BillingProfile {
    /// Checks every field; the first failure is named.
    pub fn check(&self) -> Result<(), Invalid> {
        let p = &self.party;
        text("legal_name", &p.name, 1, 200)?;
        if p.address_lines.len() > 6 {
            return Err(invalid("address_lines", "at most 6 lines"));
        }
        for line in &p.address_lines {
            text("address_lines", line, 1, 200)?;
        }
        check_country("country", &p.country)?;
        optional("region", &p.region, 64)?;
        optional("tax_id", &p.tax_id, 64)?;
        if let Some(e) = &p.email {
            text("billing_email", e, 3, 254)?;
            let (local, domain) = e.split_once('@').unwrap_or_default();
            if local.is_empty() || domain.is_empty() || e.contains(char::is_whitespace) {
                return Err(invalid("billing_email", "an e-mail address"));
            }
        }
        Ok(())
    }
}

/// Checks a rate an operator submits.
pub fn check_rate(r: &TaxRate) -> Result<(), Invalid> {
    check_country("country", &r.country)?;
    optional("region", &r.region, 64)?;
    text("name", &r.name, 1, 64)?;
    r.check()
        .map_err(|_| invalid("percentage", "0 to 100 with at most four decimals"))
}

/// A rate as a finalized document keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateSnapshot {
    pub id: String,
    pub name: String,
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub percentage: Decimal,
    pub inclusive: bool,
}

/// One rate's share of a finalized document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummarySnapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSnapshot>,
    pub net: i64,
    pub tax: i64,
}

/// What a finalized document froze beside its lines and totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seller: Party,
    pub buyer: Party,
    pub tax_summary: Vec<SummarySnapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl Snapshot {
    pub fn new(seller: Party, buyer: Party, summary: &[RateSummary], notice: Option<&str>) -> Self {
        Snapshot {
            seller,
            buyer,
            tax_summary: summary
                .iter()
                .map(|s| SummarySnapshot {
                    rate: s.rate.as_ref().map(|r| RateSnapshot {
                        id: r.id.clone(),
                        name: r.name.clone(),
                        country: r.country.clone(),
                        region: r.region.clone(),
                        percentage: r.percentage,
                        inclusive: r.inclusive,
                    }),
                    net: s.net,
                    tax: s.tax,
                })
                .collect(),
            notice: notice.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> BillingProfile {
        BillingProfile {
            party: Party {
                name: "Łukasz Żółć GmbH".into(),
                address_lines: vec!["Hauptstraße 1".into(), "10115 Berlin".into()],
                country: "DE".into(),
                region: None,
                tax_id: Some("DE123456789".into()),
                email: Some("billing@example.com".into()),
            },
            tax_exempt: false,
        }
    }

    #[test]
    fn a_profile_names_the_field_it_fails_on() {
        assert_eq!(profile().check(), Ok(()));
        let mut p = profile();
        p.party.country = "de".into();
        assert_eq!(p.check().unwrap_err().field, "country");
        let mut p = profile();
        p.party.name = "Acme\u{0}".into();
        assert_eq!(p.check().unwrap_err().field, "legal_name");
        let mut p = profile();
        p.party.email = Some("not-an-address".into());
        assert_eq!(p.check().unwrap_err().field, "billing_email");
        let mut p = profile();
        p.party.address_lines = vec!["x".into(); 7];
        assert_eq!(p.check().unwrap_err().field, "address_lines");
    }

    #[test]
    fn a_rate_outside_0_to_100_is_refused() {
        let mut r = TaxRate {
            id: "txr_1".into(),
            name: "VAT".into(),
            country: "DE".into(),
            region: None,
            percentage: Decimal::from(19),
            inclusive: false,
        };
        assert_eq!(check_rate(&r), Ok(()));
        r.percentage = Decimal::from(101);
        assert_eq!(check_rate(&r).unwrap_err().field, "percentage");
    }

    #[test]
    fn a_snapshot_survives_json() {
        let s = Snapshot::new(Party::default(), profile().party, &[], Some("Tax exempt."));
        let back: Snapshot = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
