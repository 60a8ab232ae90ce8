//! End-to-end tests: the whole platform in-process against real Postgres, Redis and NATS,
//! driven through the gateway's public HTTP API.

mod billing;
mod compose;
mod docs;
mod fuzz;
mod hostile;
mod identity;
mod invoicing;
mod jwks;
mod kubernetes;
mod limits;
mod metering;
mod notifications;
mod openapi;
mod payments;
mod py;
mod scim;
mod security;
mod sql_dialect;
mod stack;
mod status;
