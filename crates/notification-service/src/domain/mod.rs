//! Pure rules of delivery: Standard Webhooks signatures ([`signing`]), the retry schedule and
//! what each answer means ([`retry`]), and which addresses a tenant's URL may reach
//! ([`ssrf`]).

pub mod retry;
pub mod signing;
pub mod ssrf;
