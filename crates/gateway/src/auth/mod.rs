//! Who is calling: bearer JWTs (and, with the user service, API keys), and what they may do.

pub mod jwt;
pub mod rbac;
