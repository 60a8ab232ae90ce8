//! Postgres access, one module per aggregate.

pub mod dunning;
pub mod intents;
pub mod methods;
pub mod psp_events;
pub mod refunds;
