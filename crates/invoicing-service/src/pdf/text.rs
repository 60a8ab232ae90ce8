//! How amounts, dates and numbers read on a document: `1,234.56 EUR`, `2026-11-01`, `19%`.
//! Amounts are exact — minor units shifted by the currency's digits, never through floats.

use chrono::{DateTime, Utc};
use pricing::{Currency, Decimal};

pub(super) fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// Digits grouped by three with commas.
fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// An exact decimal with its integer part grouped; at least `min_scale` decimals.
fn decimal(d: Decimal, min_scale: u32) -> String {
    let mut d = d.normalize();
    if d.scale() < min_scale {
        d.rescale(min_scale);
    }
    let text = d.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let sign = if d.is_sign_negative() && !d.is_zero() {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{}", grouped(int))
    } else {
        format!("{sign}{}.{frac}", grouped(int))
    }
}

/// `amount` minor units of `currency`: `1,234.56 EUR`, `-3.000 KWD`, `500 JPY`.
pub(super) fn money(amount: i64, currency: Currency) -> String {
    let digits = currency.minor_unit_digits();
    let major = Decimal::from_i128_with_scale(i128::from(amount), digits);
    format!("{} {}", decimal(major, digits), currency.as_str())
}

/// A unit price given exactly in minor units (it may hold fractions of one).
pub(super) fn unit_price(minor: Decimal, currency: Currency) -> String {
    let digits = currency.minor_unit_digits();
    let mut major = minor;
    major.set_scale(minor.scale() + digits).unwrap_or_default();
    format!("{} {}", decimal(major, digits), currency.as_str())
}

pub(super) fn quantity(q: Decimal) -> String {
    decimal(q, 0)
}

pub(super) fn percent(p: Decimal) -> String {
    format!("{}%", p.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn amounts_read_exactly_in_every_currency() {
        assert_eq!(money(123_456, cur("EUR")), "1,234.56 EUR");
        assert_eq!(money(-5, cur("EUR")), "-0.05 EUR");
        assert_eq!(money(0, cur("USD")), "0.00 USD");
        assert_eq!(money(1_234_567, cur("JPY")), "1,234,567 JPY");
        assert_eq!(money(-3_000, cur("KWD")), "-3.000 KWD");
        assert_eq!(
            money(i64::MIN, cur("USD")),
            "-92,233,720,368,547,758.08 USD"
        );
    }

    #[test]
    fn unit_prices_keep_their_fractions_of_a_cent() {
        assert_eq!(unit_price(Decimal::new(5, 1), cur("USD")), "0.005 USD");
        assert_eq!(unit_price(Decimal::from(4900), cur("EUR")), "49.00 EUR");
        assert_eq!(unit_price(Decimal::from(120), cur("JPY")), "120 JPY");
    }

    #[test]
    fn quantities_and_rates() {
        assert_eq!(quantity(Decimal::new(1_234_500, 2)), "12,345");
        assert_eq!(quantity(Decimal::new(25, 1)), "2.5");
        assert_eq!(percent(Decimal::new(8875, 3)), "8.875%");
        assert_eq!(percent(Decimal::from(19)), "19%");
        assert_eq!(date(DateTime::from_timestamp(0, 0).unwrap()), "1970-01-01");
    }
}
