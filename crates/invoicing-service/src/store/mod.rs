//! Postgres access, one module per aggregate.

pub mod invoices;
pub mod numbers;
pub mod profiles;
pub mod runs;
pub mod tax_rates;
