//! Pure rules: the intent state machine, callback signatures, dunning schedules, money checks.

pub mod dunning;
pub mod intent;
pub mod money;
pub mod provider;
pub mod signature;
