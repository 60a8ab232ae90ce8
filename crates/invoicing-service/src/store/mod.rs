//! Postgres access, one module per aggregate.

pub mod numbers;
