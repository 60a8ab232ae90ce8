//! Pure rules of notification: Standard Webhooks signatures ([`signing`]), the retry schedule
//! and what each answer means ([`retry`]), which addresses a tenant's URL may reach
//! ([`ssrf`]), which events a tenant hears of and how filters choose them ([`topics`]), what
//! e-mails and SMS say ([`templates`]) and which addresses are acceptable ([`address`]).

pub mod address;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod templates;
pub mod topics;
