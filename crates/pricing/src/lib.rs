//! Money, currencies, billing periods and price models — pure, no I/O.
//!
//! Everything that decides an amount lives here so the subscription service (quotes, plan
//! changes) and the billing service (period charges) price identically.
//!
//! # Rounding rules
//!
//! - Unit prices and intermediate amounts are exact [`Decimal`]s in the currency's *minor unit*
//!   (so `0.04` is four hundredths of a cent). Nothing is rounded per unit or per tier.
//! - A line is rounded **once**, at the end, to whole minor units, half away from zero
//!   ([`round_minor`]). A minimum charge is applied after that rounding.
//! - Proration uses seconds: `fraction = overlap seconds / period seconds`, computed in
//!   `Decimal` (28 significant digits) and rounded with the line.

mod model;
mod money;
mod period;
mod proration;
#[cfg(feature = "wire")]
pub mod wire;

pub use model::{ChargeKind, LineAmount, Price, PriceModel, Tier, Timing};
pub use money::{Currency, Money, round_minor};
pub use period::{Interval, Period, period_containing};
pub use proration::{PlanChangeProration, SeatSegment, plan_change, seat_quantity};
pub use rust_decimal::Decimal;

/// Why an amount cannot be computed or a definition is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// The definition (tiers, package size, amounts, currency) is not valid; the message names
    /// the field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A quantity is negative.
    #[error("quantity must not be negative (got {0})")]
    NegativeQuantity(Decimal),
    /// An amount does not fit the representation (beyond ±9.2e18 minor units).
    #[error("amount overflows")]
    Overflow,
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {0} vs {1}")]
    CurrencyMismatch(Currency, Currency),
}

impl PricingError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        PricingError::Invalid {
            field,
            message: message.into(),
        }
    }
}
