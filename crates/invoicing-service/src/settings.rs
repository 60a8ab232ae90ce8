//! Settings only the invoicing service reads, beside the shared `ServiceConfig`.

use std::time::Duration;

use platform::config::{ConfigError, num_var};

use crate::domain::lifecycle::Kind;
use crate::domain::numbers::NumberFormat;
use crate::domain::parties::{Party, check_country};

/// Variables only the invoicing service reads: name, default, meaning (the README lists them).
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    (
        "INVOICE_GRACE_SECS",
        "3600",
        "how long a new draft invoice waits for late charges of its period before it is finalized (0: at once)",
    ),
    (
        "INVOICE_PAYMENT_TERMS_DAYS",
        "30",
        "days from issue to the due date",
    ),
    (
        "INVOICE_NUMBER_FORMAT",
        "INV-{year}-{seq:6}",
        "invoice numbers: text, {year} and one {seq} or {seq:N} (zero-padded); gapless per year",
    ),
    (
        "CREDIT_NOTE_NUMBER_FORMAT",
        "CN-{year}-{seq:6}",
        "credit note numbers, a series of their own",
    ),
    (
        "SELLER_NAME",
        "(unset)",
        "the operator's legal name, printed as the seller",
    ),
    (
        "SELLER_ADDRESS",
        "(unset)",
        "the seller's address, its lines separated by vertical bars",
    ),
    (
        "SELLER_COUNTRY",
        "(unset)",
        "the seller's ISO 3166-1 alpha-2 country (decides EU reverse charge)",
    ),
    ("SELLER_TAX_ID", "(unset)", "the seller's VAT or tax id"),
    (
        "BLOB_STORE",
        "data/blobs",
        "where invoice PDFs are stored: a local directory, or s3://bucket/prefix (credentials and endpoint from AWS_* variables)",
    ),
    (
        "INVOICE_FONT_PATH",
        "(unset)",
        "a TrueType/OpenType font for PDFs instead of the embedded DejaVu Sans (for CJK names)",
    ),
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub grace: Duration,
    pub payment_terms: chrono::Duration,
    pub invoice_numbers: NumberFormat,
    pub credit_note_numbers: NumberFormat,
    pub seller: Party,
    pub blob_store: String,
    pub font_path: Option<String>,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| lookup(k).filter(|v| !v.trim().is_empty());
        let format = |var: &'static str, default: &str| {
            let v = get(var).unwrap_or_else(|| default.to_string());
            NumberFormat::parse(&v).map_err(|e| ConfigError {
                var,
                value: v.clone(),
                reason: e.message,
            })
        };
        let text = |k: &'static str| get(k).map(|v| v.trim().to_string());
        let country = text("SELLER_COUNTRY").unwrap_or_default();
        if !country.is_empty() {
            check_country("SELLER_COUNTRY", &country).map_err(|e| ConfigError {
                var: "SELLER_COUNTRY",
                value: country.clone(),
                reason: e.reason,
            })?;
        }
        Ok(Settings {
            grace: Duration::from_secs(
                num_var(&get, "INVOICE_GRACE_SECS", 3600, 0, 90 * 86_400)?.into(),
            ),
            payment_terms: chrono::Duration::days(
                num_var(&get, "INVOICE_PAYMENT_TERMS_DAYS", 30, 0, 365)?.into(),
            ),
            invoice_numbers: format("INVOICE_NUMBER_FORMAT", "INV-{year}-{seq:6}")?,
            credit_note_numbers: format("CREDIT_NOTE_NUMBER_FORMAT", "CN-{year}-{seq:6}")?,
            seller: Party {
                name: text("SELLER_NAME").unwrap_or_default(),
                address_lines: text("SELLER_ADDRESS")
                    .map(|a| a.split('|').map(|l| l.trim().to_string()).collect())
                    .unwrap_or_default(),
                country,
                region: None,
                tax_id: text("SELLER_TAX_ID"),
                email: None,
            },
            blob_store: text("BLOB_STORE").unwrap_or_else(|| "data/blobs".into()),
            font_path: text("INVOICE_FONT_PATH"),
        })
    }

    /// The number format of `kind`'s series.
    pub fn numbers(&self, kind: Kind) -> &NumberFormat {
        match kind {
            Kind::Invoice => &self.invoice_numbers,
            Kind::CreditNote => &self.credit_note_numbers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors_name_the_variable() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.grace, Duration::from_secs(3600));
        assert_eq!(s.payment_terms, chrono::Duration::days(30));
        assert_eq!(s.numbers(Kind::Invoice).render(2026, 7), "INV-2026-000007");
        assert_eq!(
            s.numbers(Kind::CreditNote).render(2026, 7),
            "CN-2026-000007"
        );
        let s = Settings::from_lookup(|k| {
            (k == "SELLER_ADDRESS").then(|| "Unter den Linden 1 | 10117 Berlin".into())
        })
        .unwrap();
        assert_eq!(
            s.seller.address_lines,
            ["Unter den Linden 1", "10117 Berlin"]
        );
        for (var, value) in [
            ("INVOICE_GRACE_SECS", "soon"),
            ("INVOICE_NUMBER_FORMAT", "INV-{year}"),
            ("SELLER_COUNTRY", "Germany"),
        ] {
            let e = Settings::from_lookup(|k| (k == var).then(|| value.into())).unwrap_err();
            assert_eq!(e.var, var, "{e}");
        }
    }
}
