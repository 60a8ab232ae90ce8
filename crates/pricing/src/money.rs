//! Currencies (ISO 4217) and money in integer minor units.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::PricingError;

/// An ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// Currencies whose minor unit is not 1/100. Everything else uses two decimals.
const MINOR_UNIT_EXCEPTIONS: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

impl Currency {
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");

    /// Three ASCII letters; lower case is accepted and normalised.
    pub fn parse(code: &str) -> Result<Currency, PricingError> {
        let b = code.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(PricingError::invalid(
                "currency",
                format!("{code:?} is not a three-letter ISO 4217 code"),
            ));
        }
        Ok(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a currency holds three ASCII letters by construction")
    }

    /// Decimal places of the minor unit (2 for USD, 0 for JPY, 3 for KWD).
    pub fn minor_unit_digits(&self) -> u32 {
        MINOR_UNIT_EXCEPTIONS
            .iter()
            .find(|(c, _)| *c == self.as_str())
            .map_or(2, |(_, d)| *d)
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = PricingError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}

/// An amount in a currency's minor unit (cents for USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Money {
        Money {
            amount_minor,
            currency,
        }
    }

    pub fn zero(currency: Currency) -> Money {
        Money::new(0, currency)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, PricingError> {
        if self.currency != other.currency {
            return Err(PricingError::CurrencyMismatch(
                self.currency,
                other.currency,
            ));
        }
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(PricingError::Overflow)?;
        Ok(Money::new(amount_minor, self.currency))
    }

    /// The amount in major units for display ("12.34").
    pub fn to_major_string(&self) -> String {
        let mut d = Decimal::from(self.amount_minor);
        d.set_scale(self.currency.minor_unit_digits())
            .expect("0..=3 is a valid decimal scale");
        d.to_string()
    }
}

/// Rounds an exact amount in minor units to a whole minor unit, half away from zero — the one
/// rounding step of every line.
pub fn round_minor(exact: Decimal) -> Result<i64, PricingError> {
    let r = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(r).map_err(|_| PricingError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert_eq!(Currency::parse("usd").unwrap(), Currency::USD);
        assert_eq!(Currency::parse("JPY").unwrap().minor_unit_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_unit_digits(), 3);
        assert_eq!(Currency::EUR.minor_unit_digits(), 2);
        for bad in ["", "US", "USDX", "U$D", "ÜSD"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?} accepted");
        }
        let json = serde_json::to_string(&Currency::USD).unwrap();
        assert_eq!(json, "\"USD\"");
        assert!(serde_json::from_str::<Currency>("\"12\"").is_err());
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(round_minor(d("0.5")).unwrap(), 1);
        assert_eq!(round_minor(d("1.5")).unwrap(), 2);
        assert_eq!(round_minor(d("2.5")).unwrap(), 3);
        assert_eq!(round_minor(d("2.4999")).unwrap(), 2);
        assert_eq!(round_minor(d("-0.5")).unwrap(), -1);
        assert_eq!(round_minor(d("-2.4")).unwrap(), -2);
        assert_eq!(
            round_minor(d("99999999999999999999")),
            Err(PricingError::Overflow)
        );
    }

    #[test]
    fn money_adds_within_one_currency() {
        let a = Money::new(150, Currency::USD);
        assert_eq!(a.checked_add(a).unwrap().amount_minor, 300);
        assert!(matches!(
            a.checked_add(Money::new(1, Currency::EUR)),
            Err(PricingError::CurrencyMismatch(..))
        ));
        assert_eq!(
            Money::new(i64::MAX, Currency::USD).checked_add(Money::new(1, Currency::USD)),
            Err(PricingError::Overflow)
        );
        assert_eq!(Money::new(-1234, Currency::USD).to_major_string(), "-12.34");
        assert_eq!(
            Money::new(1234, Currency::parse("JPY").unwrap()).to_major_string(),
            "1234"
        );
    }
}
